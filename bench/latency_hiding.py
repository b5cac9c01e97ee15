"""Latency hiding: every emulator call takes 400 ms; the worker's quota is R = 200/s; it must route >= 0.95 R.

Reaching R needs R x latency = 80 calls in flight: the worker gets ``MAX_IN_FLIGHT`` = 128 (bounded, with
headroom for Kafka acks and jitter). The emulator has no rate limit here, so the quota limiter alone paces.
The rate is routed records per second (output-topic end offsets) over a window after a warm-up; the calls
per second at the emulator are reported too. The baseline is the latency a bare SDK call sees (measured),
from which the in-flight need R x latency follows.
"""

from __future__ import annotations

import asyncio

from bench.common import (
    BenchContext,
    BenchResult,
    EmulatorSample,
    OffsetProbe,
    bare_sdk_calls,
    produce_fast,
    route_topics,
    valid_submissions,
    wait_for_calls,
)
from tests.pipeline_harness import worker_environment, worker_process
from worker.dev.emulator.server import Emulator, EmulatorConfig

NAME = "latency_hiding"
KEY = "bench-key"
LATENCY_MS = 400
QUOTA_PER_S = 200
MAX_IN_FLIGHT = 128
PARTITIONS = 6
TARGET = 0.95
WARMUP_S = 6.0
WINDOW_S = 20.0


async def run(ctx: BenchContext) -> BenchResult:
    """Measure a bare call's latency, then the worker's routed rate at the quota."""
    topics = ctx.topics(NAME)
    await topics.create(ctx.bootstrap, PARTITIONS)
    await produce_fast(
        ctx.bootstrap, topics.input, valid_submissions(int(QUOTA_PER_S * (WARMUP_S + WINDOW_S + 10)))
    )
    config = EmulatorConfig(key=KEY, latency_ms=LATENCY_MS)
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        bare = await bare_sdk_calls(emulator.endpoint, KEY, concurrency=4, count=20)
        emulator.reset()
        env = worker_environment(
            ctx.bootstrap,
            topics,
            ctx.group(NAME),
            emulator.endpoint,
            KEY,
            quota_calls_per_s=str(QUOTA_PER_S),
            max_in_flight=str(MAX_IN_FLIGHT),
            log_level="WARNING",
        )
        async with (
            worker_process(env, ctx.workdir / f"{NAME}.log") as process,
            OffsetProbe(ctx.bootstrap, route_topics(topics), PARTITIONS) as probe,
        ):
            await wait_for_calls(emulator, timeout_s=60)
            await asyncio.sleep(WARMUP_S)
            routed_before, calls_before = await probe.count(), EmulatorSample.take(emulator)
            await asyncio.sleep(WINDOW_S)
            routed_after, calls_after = await probe.count(), EmulatorSample.take(emulator)
            if process.returncode is not None:
                raise RuntimeError(f"the worker exited early with {process.returncode}")
    seconds = calls_after.at_s - calls_before.at_s
    routed_per_s = (routed_after - routed_before) / seconds
    calls_per_s, _, _ = calls_after.rates_since(calls_before)
    ratio = routed_per_s / QUOTA_PER_S
    return BenchResult(
        name=NAME,
        ratio=ratio,
        target=f">= {TARGET} R",
        met=ratio >= TARGET,
        baseline=(
            f"bare SDK call latency {bare.mean_latency_s * 1000:.0f} ms -> R x latency = "
            f"{QUOTA_PER_S * bare.mean_latency_s:.0f} in flight needed (R = {QUOTA_PER_S}/s)"
        ),
        measured=f"{routed_per_s:.1f} routed/s over {WINDOW_S:.0f} s ({calls_per_s:.1f} calls/s)",
        figures={
            "emulator_latency_ms": LATENCY_MS,
            "bare_call_latency_ms": round(bare.mean_latency_s * 1000, 1),
            "max_in_flight": MAX_IN_FLIGHT,
            "routed_per_s": routed_per_s,
            "calls_per_s": calls_per_s,
        },
    )
