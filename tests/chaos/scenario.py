"""One scenario of the chaos run: replicas start, submissions flow, faults strike, the ledger judges.

Order: own topics and group; the flaky images' scripts merged into the emulator; the replicas started and
ready; then, together, the paced producer and the fault injector; once both are done, wait until the group
has committed every input record (group lag 0); stop the replicas with SIGTERM; read every topic back.
Times are seconds since the first submission.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from tests.chaos.faults import SIGTERM_TIMEOUT_S, FaultInjector, FaultRecord
from tests.chaos.ledger import Exit, ExitRow, Tally, Target, exit_rows, tally, targets
from tests.chaos.plan import ScenarioPlan
from tests.chaos.reader import group_lag, group_state, input_keys, outputs
from tests.chaos.replicas import ReplicaSet
from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import produce_all
from tests.pipeline_harness import Topics, worker_environment
from worker.dev.broker import EmbeddedKafka
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator

PRODUCE_INTERVAL_S = 0.25
READY_TIMEOUT_S = 120.0
LAG_POLL_S = 0.5
#: a flaky image's hang step costs this analyzer timeout
ANALYZER_TIMEOUT_S = "2"


@dataclass(frozen=True)
class ScenarioResult:
    """What one scenario did and what the ledger found."""

    name: str
    submissions: int
    malformed: int
    flaky: int
    ledger: Tally
    exits: tuple[Exit, ...]
    exit_rows: tuple[ExitRow, ...]
    faults: tuple[FaultRecord, ...]
    targets: tuple[Target, ...]
    produced_s: float
    drained: bool
    lag_when_given_up: dict[int, int]
    drain_s_after_last_fault: float
    committed_s_after_last_fault: float | None
    elapsed_s: float
    analyzer_answers: dict[str, int]

    @property
    def passed(self) -> bool:
        """True when every target was met."""
        return all(target.met for target in self.targets)


async def produce_paced(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], *, over_s: float, gate: asyncio.Lock
) -> float:
    """Produce ``records`` in equal chunks every ``PRODUCE_INTERVAL_S`` spread over ``over_s``; each chunk
    is acknowledged (``acks=all``) before the gate is released. Returns the seconds it took."""
    started = time.monotonic()
    chunks = max(int(over_s / PRODUCE_INTERVAL_S), 1)
    size = -(-len(records) // chunks)
    for index in range(chunks):
        chunk = records[index * size : (index + 1) * size]
        await asyncio.sleep(max(started + index * PRODUCE_INTERVAL_S - time.monotonic(), 0.0))
        if chunk:
            async with gate:
                await produce_all(bootstrap, topic, chunk)
    return time.monotonic() - started


async def wait_drained(
    bootstrap: str, group_id: str, topics: Topics, partitions: int, timeout_s: float
) -> dict[int, int] | None:
    """Poll the group's lag until every input record is committed (all zeros) or ``timeout_s`` passed;
    returns the last lag seen per partition (None: the broker never told)."""
    deadline = time.monotonic() + timeout_s
    lag: dict[int, int] | None = None
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(30):
                lag = await group_lag(bootstrap, group_id, topics.input, partitions) or lag
        except TimeoutError:
            pass
        if lag is not None and not any(lag.values()):
            break
        await asyncio.sleep(LAG_POLL_S)
    return lag


async def wait_stable(bootstrap: str, group_id: str, members: int, timeout_s: float) -> None:
    """Return once the group is Stable with ``members`` members, so that no start-up rebalance is running
    when the first submission arrives (raises TimeoutError)."""
    async with asyncio.timeout(timeout_s):
        while await group_state(bootstrap, group_id) != ("Stable", members):  # noqa: ASYNC110 - polling the broker
            await asyncio.sleep(LAG_POLL_S)


async def run_scenario(
    plan: ScenarioPlan,
    *,
    broker: EmbeddedKafka,
    emulator: Emulator,
    work_dir: Path,
    replicas: int,
    partitions: int,
) -> ScenarioResult:
    """Run ``plan`` against ``broker`` and ``emulator``; replica logs go to ``work_dir/<name>/``."""
    bootstrap = broker.bootstrap_servers
    tag = secrets.token_hex(3)
    topics, group_id = Topics(f"chaos-{plan.name}-{tag}-"), f"chaos-{plan.name}-{tag}"
    await topics.create(bootstrap, partitions)
    emulator.load_fixtures(parse_fixtures(plan.work.scripts), merge=True)
    answers_before = emulator.stats.by_status
    env = worker_environment(
        bootstrap, topics, group_id, emulator.endpoint, TEST_KEY, analyzer_timeout_s=ANALYZER_TIMEOUT_S
    )
    gate = asyncio.Lock()
    replica_set = ReplicaSet(
        replicas, env, work_dir / plan.name, started_at=time.monotonic(), ready_timeout_s=READY_TIMEOUT_S
    )
    async with replica_set:
        await replica_set.wait_all_ready()
        await wait_stable(bootstrap, group_id, replicas, READY_TIMEOUT_S)
        started = replica_set.started_at = time.monotonic()
        injector = FaultInjector(
            replica_set, broker, emulator, storm=plan.storm, input_gate=gate, started_at=started
        )
        producing = asyncio.create_task(
            produce_paced(
                bootstrap, topics.input, plan.work.submissions.records, over_s=plan.produce_s, gate=gate
            )
        )
        fault_records = await injector.run(plan.faults)
        faults_done, faults_done_wall_s = time.monotonic(), time.time()
        produced_s = await producing
        final_lag = await wait_drained(bootstrap, group_id, topics, partitions, plan.drain_timeout_s)
        drained = final_lag is not None and not any(final_lag.values())
        drained_at = time.monotonic()
        await replica_set.stop(timeout_s=SIGTERM_TIMEOUT_S)
    elapsed_s = time.monotonic() - started
    routed = await outputs(bootstrap, topics)
    ledger = tally(plan.work.submissions.expected, await input_keys(bootstrap, topics), routed.seen)
    exits = tuple(replica_set.exits)
    rows = tuple(exit_rows(exits))
    answers_after = emulator.stats.by_status
    expected = plan.work.submissions.expected
    return ScenarioResult(
        name=plan.name,
        submissions=len(expected),
        malformed=plan.work.submissions.expected_counts()["dead-letter"],
        flaky=plan.work.flaky,
        ledger=ledger,
        exits=exits,
        exit_rows=rows,
        faults=tuple(fault_records),
        targets=tuple(
            targets(
                ledger,
                rows,
                expected_ids=len(expected),
                duplicates_must_be_zero=plan.duplicates_must_be_zero,
                drained=drained,
            )
        ),
        produced_s=round(produced_s, 2),
        drained=drained,
        lag_when_given_up={} if drained or final_lag is None else final_lag,
        # Record timestamps are the replicas' clocks, the same machine's wall clock as ``faults_done_wall_s``.
        drain_s_after_last_fault=round(max(routed.complete_ms / 1000 - faults_done_wall_s, 0.0), 2),
        committed_s_after_last_fault=round(drained_at - faults_done, 2) if drained else None,
        elapsed_s=round(elapsed_s, 2),
        analyzer_answers={
            str(status): after - answers_before.get(status, 0)
            for status, after in sorted(answers_after.items())
            if after != answers_before.get(status, 0)
        },
    )
