"""SDK path: the worker calling the emulator through the real SDK vs bare SDK calls at the same concurrency.

The emulator (no delay, no rate limit) runs in the bench process; both sides run as their own process so
neither shares an event loop with it: the worker is ``moderation-worker run`` (quota far above the rate,
``MAX_IN_FLIGHT`` = C), the baseline is ``python -m bench.sdk_path client`` with C concurrent
``analyze_from_url`` loops on the client the worker builds (``worker.analysis.azure.build_client``), so the
ratio is what the worker adds around the SDK. Both rates are counted at the emulator (analyze calls per
second, after a warm-up of 10 % of the calls, up to 90 %: the last records of a partition are not steady
state), with each side's CPU time per call over the same span. Best of the repeats.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass

import orjson

from bench.common import (
    BenchContext,
    BenchResult,
    EmulatorSample,
    bare_sdk_calls,
    best_of_ratio,
    process_cpu_s,
    route_topics,
    shared_input,
)
from tests.kafka_helpers import create_topics
from tests.pipeline_harness import worker_environment, worker_process
from worker.dev.emulator.server import Emulator, EmulatorConfig

NAME = "sdk_path"
TARGET = 0.85
KEY = "bench-key"
CALLS = 12_000
PARTITIONS = 6
CONCURRENCY = 64
REPEATS = 4
TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Steady:
    """One side's steady state: analyze calls/s at the emulator, and its process's CPU time per call."""

    calls_per_s: float
    cpu_us_per_call: float


async def _steady(emulator: Emulator, process: asyncio.subprocess.Process, calls: int = CALLS) -> Steady:
    """Calls/s at the emulator and ``process``'s CPU per call, between 10 % and 90 % of ``calls``."""
    done = asyncio.ensure_future(process.wait())
    async with asyncio.timeout(TIMEOUT_S):
        while emulator.stats.calls_total < calls // 10:
            if done.done():
                raise RuntimeError(f"the measured process ended early: {done.result()}")
            await asyncio.sleep(0.02)
        first, first_cpu_s = EmulatorSample.take(emulator), process_cpu_s(process.pid)
        while emulator.stats.calls_total < calls * 9 // 10:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.02)
        last, last_cpu_s = EmulatorSample.take(emulator), process_cpu_s(process.pid)
    calls_per_s, _, _ = last.rates_since(first)
    measured = max(last.calls_total - first.calls_total, 1)
    return Steady(calls_per_s, (last_cpu_s - first_cpu_s) / measured * 1e6)


async def measure_bare(emulator: Emulator, calls: int = CALLS) -> Steady:
    """Bare SDK calls on the worker's client, ``CONCURRENCY`` at a time, in a process of their own
    (``python -m bench.sdk_path client``) against ``emulator`` (its counters are reset first)."""
    emulator.reset()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sdk_path",
        "client",
        emulator.endpoint,
        KEY,
        str(CONCURRENCY),
        str(calls),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ) | {"NO_PROXY": "127.0.0.1,localhost"},  # as ``worker_process`` gives the worker
    )
    try:
        steady = await _steady(emulator, process, calls)
        await asyncio.wait_for(process.wait(), timeout=TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the bare SDK client exited with {process.returncode}")
    return steady


async def _measure_worker(ctx: BenchContext, emulator: Emulator, input_topic: str) -> Steady:
    emulator.reset()
    topics = ctx.topics(NAME)
    await create_topics(ctx.bootstrap, route_topics(topics), PARTITIONS)
    env = worker_environment(
        ctx.bootstrap,
        topics,
        ctx.group(NAME),
        emulator.endpoint,
        KEY,
        input_topic=input_topic,
        quota_calls_per_s="1000000",
        max_in_flight=str(CONCURRENCY),
        log_level="WARNING",
    )
    async with worker_process(env, ctx.workdir / f"{NAME}-worker.log") as process:
        return await _steady(emulator, process)


async def run(ctx: BenchContext) -> BenchResult:
    """Bare client and worker alternately, ``REPEATS`` times each; the ratio of their best call rates."""
    input_topic = await shared_input(ctx, NAME, PARTITIONS, CALLS)
    bare: list[Steady] = []
    worker: list[Steady] = []
    async with Emulator(EmulatorConfig(key=KEY), host="127.0.0.1", port=0) as emulator:
        for _ in range(REPEATS):
            bare.append(await measure_bare(emulator))
            worker.append(await _measure_worker(ctx, emulator, input_topic))
    cpu_per_call = {
        "worker_cpu_us_per_call_runs": ", ".join(f"{side.cpu_us_per_call:,.0f}" for side in worker),
        "bare_SDK_cpu_us_per_call_runs": ", ".join(f"{side.cpu_us_per_call:,.0f}" for side in bare),
    }
    return best_of_ratio(
        NAME,
        minimum=TARGET,
        worker_rates=[side.calls_per_s for side in worker],
        baseline_rates=[side.calls_per_s for side in bare],
        worker_label="worker",
        baseline_label="bare_SDK",
        unit="calls_per_s",
        figures={"calls": CALLS, "concurrency": CONCURRENCY, **cpu_per_call},
    )


async def _client(endpoint: str, key: str, concurrency: int, count: int) -> None:
    started = time.monotonic()
    calls = await bare_sdk_calls(endpoint, key, concurrency=concurrency, count=count)
    summary = {"ok": calls.ok, "rate_per_s": calls.rate_per_s, "seconds": time.monotonic() - started}
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    # python -m bench.sdk_path client ENDPOINT KEY CONCURRENCY COUNT: the baseline, in its own process.
    _, command, endpoint, key, concurrency, count = sys.argv
    if command != "client":
        raise SystemExit(
            f"usage: python -m bench.sdk_path client ENDPOINT KEY CONCURRENCY COUNT, not {command}"
        )
    asyncio.run(_client(endpoint, key, int(concurrency), int(count)))
