"""Memory: 200,000 submissions queued ahead of a slow analyzer; the worker's resident memory stays flat.

All records are produced before the worker starts. The worker runs as its own process
(``moderation-worker run``) against the emulator with 500 ms latency per call, so it works through only a
few thousand records while the rest wait in Kafka; its RSS is read from ``/proc/PID/status`` every second.
Targets: peak RSS <= 300 MiB, and flat: after the warm-up RSS never rises more than ``MAX_GROWTH_MB`` above
its value at the end of the warm-up (holding the backlog, or a fetch buffer per queued record, would add
hundreds of MiB). The least-squares slope is reported too; a minute is too short to fit it against the
allocator's steps, so it is no target (docs/benchmarks.md has a 13-minute run).
"""

from __future__ import annotations

import asyncio
import time

from bench.common import (
    BenchContext,
    BenchResult,
    OffsetProbe,
    linear_slope,
    produce_fast,
    route_topics,
    rss_mb,
    valid_submissions,
    wait_for_calls,
)
from tests.pipeline_harness import worker_environment, worker_process
from worker.dev.emulator.server import Emulator, EmulatorConfig

NAME = "memory"
KEY = "bench-key"
QUEUED = 200_000
PARTITIONS = 6
LATENCY_MS = 500
MAX_RSS_MB = 300.0
MAX_GROWTH_MB = 10.0
WARMUP_S = 15.0
SAMPLE_EVERY_S = 1.0
RUN_S = 60.0


async def run(ctx: BenchContext) -> BenchResult:
    """Queue 200k submissions, run a slow worker, sample its RSS, fit a slope after the warm-up."""
    topics = ctx.topics(NAME)
    await topics.create(ctx.bootstrap, PARTITIONS)
    produce_s = await produce_fast(ctx.bootstrap, topics.input, valid_submissions(QUEUED))
    config = EmulatorConfig(key=KEY, latency_ms=LATENCY_MS)
    samples: list[tuple[float, float]] = []
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        env = worker_environment(
            ctx.bootstrap, topics, ctx.group(NAME), emulator.endpoint, KEY, log_level="WARNING"
        )
        async with (
            worker_process(env, ctx.workdir / f"{NAME}.log") as process,
            OffsetProbe(ctx.bootstrap, route_topics(topics), PARTITIONS) as probe,
        ):
            started = time.monotonic()
            await wait_for_calls(emulator, timeout_s=60)
            while (elapsed := time.monotonic() - started) < RUN_S:
                if process.returncode is not None:
                    raise RuntimeError(f"the worker exited early with {process.returncode}")
                samples.append((elapsed, rss_mb(process.pid)))
                await asyncio.sleep(SAMPLE_EVERY_S)
            routed = await probe.count()
    steady = [(at, mb) for at, mb in samples if at >= WARMUP_S]
    slope_mb_per_s = linear_slope(steady)
    peak_mb = max(mb for _, mb in samples)
    baseline_mb = steady[0][1]
    growth_mb = max(mb for _, mb in steady) - baseline_mb
    met = peak_mb <= MAX_RSS_MB and growth_mb <= MAX_GROWTH_MB
    every_5 = [f"{at:.0f}s:{mb:.1f}" for at, mb in samples[:: int(5 / SAMPLE_EVERY_S)]]
    return BenchResult(
        name=NAME,
        ratio=peak_mb / MAX_RSS_MB,
        target=f"peak <= {MAX_RSS_MB:.0f} MiB, growth <= {MAX_GROWTH_MB:.0f} MiB",
        met=met,
        baseline=f"RSS {baseline_mb:.1f} MiB after {WARMUP_S:.0f} s warm-up",
        measured=(
            f"peak {peak_mb:.1f} MiB, growth {growth_mb:+.1f} MiB, slope {slope_mb_per_s * 60:+.2f} MiB/min, "
            f"{QUEUED - routed:,} still queued"
        ),
        figures={
            "queued": QUEUED,
            "produce_s": round(produce_s, 1),
            "routed_during_run": routed,
            "emulator_latency_ms": LATENCY_MS,
            "rss_mib_every_5s": ", ".join(every_5),
        },
    )
