"""Group share: three replicas in one consumer group, each configured with the whole quota R, share it.

Each replica paces at ``R * assigned / total`` partitions, so together they must call the emulator at R,
not 3R. The emulator enforces R (429 + Retry-After above it). The three ``moderation-worker run`` processes
start together; once the group is stable with all three members, a settling pause follows, then the calls
per second at the emulator (admitted and throttled alike) are measured over a steady window. Target: within
2 % of R. The baseline is what a single flooding bare SDK client gets admitted: R, measured.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

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

NAME = "group_share"
KEY = "bench-key"
QUOTA_PER_S = 60
REPLICAS = 3
PARTITIONS = 6
TOLERANCE = 0.02
SETTLE_S = 10.0
WINDOW_S = 20.0
FLOOD_S = 3.0


async def group_members(bootstrap: str, group_id: str) -> tuple[str, list[int]]:
    """The group's state and the number of partitions assigned to each member (sorted)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    _, _, state, _, _, members, *_ = response.groups[0]
    counts = []
    for member in members:
        assignment = member[-1]
        partitions = ConsumerProtocolMemberAssignment.decode(assignment).partitions() if assignment else []
        counts.append(len(partitions))
    return str(state), sorted(counts)


async def _wait_until_stable(bootstrap: str, group_id: str, *, timeout_s: float) -> list[int]:
    async with asyncio.timeout(timeout_s):
        while True:
            state, counts = await group_members(bootstrap, group_id)
            if state == "Stable" and len(counts) == REPLICAS and sum(counts) == PARTITIONS:
                return counts
            await asyncio.sleep(0.5)


async def run(ctx: BenchContext) -> BenchResult:
    """Flood baseline, then three replicas; calls/s at the emulator over a window once the group is stable."""
    topics = ctx.topics(NAME)
    await topics.create(ctx.bootstrap, PARTITIONS)
    await produce_fast(
        ctx.bootstrap, topics.input, valid_submissions(int(QUOTA_PER_S * (SETTLE_S + WINDOW_S + 40)))
    )
    group_id = ctx.group(NAME)
    config = EmulatorConfig(key=KEY, rate_limit_per_s=QUOTA_PER_S)
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        await bare_sdk_calls(emulator.endpoint, KEY, concurrency=8, duration_s=1.0)
        before = EmulatorSample.take(emulator)
        await bare_sdk_calls(emulator.endpoint, KEY, concurrency=8, duration_s=FLOOD_S)
        _, flood_per_s, _ = EmulatorSample.take(emulator).rates_since(before)
        emulator.reset()
        env = worker_environment(
            ctx.bootstrap,
            topics,
            group_id,
            emulator.endpoint,
            KEY,
            quota_calls_per_s=str(QUOTA_PER_S),
            log_level="WARNING",
        )
        async with AsyncExitStack() as stack:
            processes = [
                await stack.enter_async_context(worker_process(env, ctx.workdir / f"{NAME}-{index}.log"))
                for index in range(REPLICAS)
            ]
            await wait_for_calls(emulator, timeout_s=60)
            start = EmulatorSample.take(emulator)
            assignment = await _wait_until_stable(ctx.bootstrap, group_id, timeout_s=60)
            stable_after_s = EmulatorSample.take(emulator).at_s - start.at_s
            _, settle_steps = await emulator_timeline(emulator, SETTLE_S)
            window, steps = await emulator_timeline(emulator, WINDOW_S)
            first, last = window[0], window[-1]
            state, assignment_after = await group_members(ctx.bootstrap, group_id)
            if exited := [process.returncode for process in processes if process.returncode is not None]:
                raise RuntimeError(f"a replica exited early with {exited}")
    calls_per_s, admitted_per_s, throttled_share = last.rates_since(first)
    ratio = calls_per_s / QUOTA_PER_S
    return BenchResult(
        name=NAME,
        ratio=ratio,
        target=f"within {TOLERANCE:.0%} of R = {QUOTA_PER_S}/s",
        met=abs(ratio - 1.0) <= TOLERANCE,
        baseline=f"emulator admits {flood_per_s:.1f}/s to a flooding bare SDK client",
        measured=(
            f"{REPLICAS} replicas together {calls_per_s:.2f} calls/s ({admitted_per_s:.2f} admitted, "
            f"{throttled_share:.2%} throttled) over {WINDOW_S:.0f} s"
        ),
        figures={
            "partitions_per_replica": str(assignment),
            "group_state_after_window": f"{state} {assignment_after}",
            "calls_per_s": calls_per_s,
            "admitted_per_s": admitted_per_s,
            "throttled_share": throttled_share,
            "stable_after_first_call_s": round(stable_after_s, 1),
            "throttled_since_first_call": last.throttled_total - start.throttled_total,
            "admitted_per_s_every_5s_from_stable": ", ".join(f"{r:.1f}" for r in settle_steps + steps),
            "flood_admitted_per_s": flood_per_s,
        },
    )
