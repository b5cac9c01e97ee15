"""Quota precision: the emulator admits R = 50 calls/s (429 + Retry-After above); the worker at R, then 2R.

Each phase runs a fresh ``moderation-worker run`` process on a fresh topic against the emulator (in the bench
process, counters reset). At R the admitted rate is measured over a window after a short warm-up and the
throttled share over the whole phase; at 2R the rate is measured over the window that starts 30 s after the
first call (it must have settled by then). The baseline is what the emulator admits to a bare SDK client
that floods it: R itself, measured.
"""

from __future__ import annotations

from bench.common import (
    BenchContext,
    BenchResult,
    EmulatorSample,
    bare_sdk_calls,
    emulator_timeline,
    produce_fast,
    valid_submissions,
    wait_for_calls,
)
from tests.pipeline_harness import worker_environment, worker_process
from worker.dev.emulator.server import Emulator, EmulatorConfig

NAME = "quota"
KEY = "bench-key"
LIMIT_PER_S = 50
PARTITIONS = 6
TARGET_AT_R = 0.97
MAX_THROTTLED_SHARE = 0.01
TARGET_AT_2R = 0.9
WARMUP_AT_R_S = 5.0
WINDOW_AT_R_S = 25.0
SETTLE_AT_2R_S = 30.0
WINDOW_AT_2R_S = 20.0
FLOOD_S = 4.0


async def _flood_baseline(emulator: Emulator) -> float:
    """Admitted calls/s of a bare SDK client that calls as fast as it can (8 in flight)."""
    emulator.reset()
    await bare_sdk_calls(emulator.endpoint, KEY, concurrency=8, duration_s=1.0)  # fills the window
    before = EmulatorSample.take(emulator)
    await bare_sdk_calls(emulator.endpoint, KEY, concurrency=8, duration_s=FLOOD_S)
    _, admitted_per_s, _ = EmulatorSample.take(emulator).rates_since(before)
    return admitted_per_s


async def _phase(
    ctx: BenchContext, emulator: Emulator, configured_per_s: int, skip_s: float, window_s: float
) -> dict[str, float | str]:
    """Run a worker at ``configured_per_s``; measure ``window_s`` after ``skip_s`` from its first call."""
    emulator.reset()
    topics = ctx.topics(f"{NAME}{configured_per_s}")
    await topics.create(ctx.bootstrap, PARTITIONS)
    expected_calls = int(LIMIT_PER_S * (skip_s + window_s) * 1.5)
    await produce_fast(ctx.bootstrap, topics.input, valid_submissions(expected_calls))
    env = worker_environment(
        ctx.bootstrap,
        topics,
        ctx.group(NAME),
        emulator.endpoint,
        KEY,
        quota_calls_per_s=str(configured_per_s),
        log_level="WARNING",
    )
    async with worker_process(env, ctx.workdir / f"{NAME}-{configured_per_s}.log") as process:
        await wait_for_calls(emulator, timeout_s=60)
        start = EmulatorSample.take(emulator)
        _, before_steps = await emulator_timeline(emulator, skip_s)
        window, steps = await emulator_timeline(emulator, window_s)
        if process.returncode is not None:
            raise RuntimeError(f"the worker exited early with {process.returncode}")
    calls_per_s, admitted_per_s, throttled_share = window[-1].rates_since(window[0])
    _, _, phase_throttled_share = window[-1].rates_since(start)
    return {
        "configured_per_s": configured_per_s,
        "admitted_per_s": admitted_per_s,
        "calls_per_s": calls_per_s,
        "throttled_share_window": throttled_share,
        "throttled_share_phase": phase_throttled_share,
        "throttled_total": window[-1].throttled_total,
        "admitted_per_s_every_5s": ", ".join(f"{rate:.1f}" for rate in before_steps + steps),
    }


async def run(ctx: BenchContext) -> list[BenchResult]:
    """Baseline flood, then the worker at R and at 2R; one result per phase."""
    config = EmulatorConfig(key=KEY, rate_limit_per_s=LIMIT_PER_S)
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        flood_per_s = await _flood_baseline(emulator)
        at_r = await _phase(ctx, emulator, LIMIT_PER_S, WARMUP_AT_R_S, WINDOW_AT_R_S)
        at_2r = await _phase(ctx, emulator, 2 * LIMIT_PER_S, SETTLE_AT_2R_S, WINDOW_AT_2R_S)
    baseline = f"emulator admits {flood_per_s:.1f}/s to a flooding bare SDK client (R = {LIMIT_PER_S}/s)"
    ratio_r = float(at_r["admitted_per_s"]) / LIMIT_PER_S
    throttled_r = float(at_r["throttled_share_phase"])
    ratio_2r = float(at_2r["admitted_per_s"]) / LIMIT_PER_S
    return [
        BenchResult(
            name=f"{NAME}@R",
            ratio=ratio_r,
            target=f">= {TARGET_AT_R} R, <= {MAX_THROTTLED_SHARE:.0%} throttled",
            met=ratio_r >= TARGET_AT_R and throttled_r <= MAX_THROTTLED_SHARE,
            baseline=baseline,
            measured=(
                f"{float(at_r['admitted_per_s']):.2f}/s admitted over {WINDOW_AT_R_S:.0f} s, "
                f"{throttled_r:.2%} throttled"
            ),
            figures={"flood_admitted_per_s": flood_per_s, **at_r},
        ),
        BenchResult(
            name=f"{NAME}@2R",
            ratio=ratio_2r,
            target=f">= {TARGET_AT_2R} R within {SETTLE_AT_2R_S:.0f} s",
            met=ratio_2r >= TARGET_AT_2R,
            baseline=baseline,
            measured=(
                f"{float(at_2r['admitted_per_s']):.2f}/s admitted over {WINDOW_AT_2R_S:.0f} s from "
                f"{SETTLE_AT_2R_S:.0f} s, {float(at_2r['throttled_share_window']):.2%} throttled in it"
            ),
            figures=at_2r,
        ),
    ]
