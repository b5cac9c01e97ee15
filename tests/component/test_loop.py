"""Specification of the Kafka loop, run for real against in-memory fakes of the consumer and the producer.

What is committed is the contract: only offsets whose record and every record before it were acknowledged,
never backwards, through rebalances, stalls, shutdown and fatal errors (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiokafka.errors import CommitFailedError, NotEnoughReplicasError, UnknownMemberIdError

from tests.component.fake_consumer import Changes, FakeConsumer, tp
from tests.component.fake_producer import RESULTS, SIDE, FakeProducer
from tests.component.scripted import RecordingObserver, ScriptedHandler
from worker.kafka.loop import Pipeline, WorkerStopped


@dataclass
class Loop:
    """A running ``Pipeline`` and the fakes around it."""

    changes: Changes
    consumer: FakeConsumer
    producer: FakeProducer
    handler: ScriptedHandler
    observer: RecordingObserver
    pipeline: Pipeline[bytes]
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (TimeoutError after 10 s)."""
        await self.changes.until(predicate)

    async def stopped(self) -> None:
        """Stop the loop and wait for it: it drains, commits and returns."""
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@asynccontextmanager
async def running_loop(
    *,
    partitions: tuple[int, ...] = (0,),
    auto_ack: bool = True,
    max_in_flight: int = 64,
    max_in_flight_per_partition: int = 64,
    drain_timeout_s: float = 10.0,
    poll_keepalive_s: float = 5.0,
) -> AsyncIterator[Loop]:
    """A pipeline on fakes, assigned ``partitions``, committing every 10 ms; cancelled if a test leaves it."""
    changes = Changes()
    consumer = FakeConsumer(changes, partitions=max(partitions) + 1)
    producer = FakeProducer(changes, auto_ack=auto_ack)
    handler = ScriptedHandler(changes)
    observer = RecordingObserver(changes)
    pipeline = Pipeline(
        consumer,
        producer,
        handler,
        observer,
        input_topic="images.submitted",
        max_in_flight=max_in_flight,
        max_in_flight_per_partition=max_in_flight_per_partition,
        drain_timeout_s=drain_timeout_s,
        commit_interval_s=0.01,
        poll_keepalive_s=poll_keepalive_s,
    )
    consumer.subscribe(pipeline.listener())
    await consumer.rebalance(partitions)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    loop = Loop(changes, consumer, producer, handler, observer, pipeline, stop, task)
    try:
        yield loop
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


async def let_ready_tasks_run(turns: int = 50) -> None:
    """Give every task that can proceed ``turns`` turns of the event loop (no time passes for anyone)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def values(count: int, prefix: str = "v") -> list[bytes]:
    return [f"{prefix}{index}".encode() for index in range(count)]


async def test_out_of_order_completion_commits_only_the_contiguous_acknowledged_prefix() -> None:
    """Records 2-4 finish before 0 and 1: nothing moves until 0 is done, then the commit stops at 1, the
    first record still in flight, and reaches the end only when every record is done."""
    async with running_loop() as loop:
        gates = loop.handler.hold(0, 0, 1, 2, 3, 4, 5)
        loop.consumer.append(0, *values(6))
        await loop.until(lambda: len(loop.handler.completing) == 6)

        for offset in (2, 4, 3):
            gates[offset].set()
        await loop.until(lambda: loop.observer.routed_offsets(0) == [2, 3, 4])
        assert [] == loop.consumer.commits
        gates[0].set()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 1)
        gates[1].set()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 5)
        gates[5].set()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 6)
        await loop.stopped()

    assert [{tp(0): 1}, {tp(0): 5}, {tp(0): 6}] == loop.consumer.commits
    assert [0, 1, 2, 3, 4, 5] == loop.observer.routed_offsets(0)


async def test_a_revoked_partition_is_drained_committed_and_forgotten() -> None:
    """A rebalance while results are unacknowledged: the revocation waits for their acks, commits them,
    and the loop forgets the partitions it lost; records of a kept partition resume where it committed."""
    async with running_loop(partitions=(0, 1), auto_ack=False) as loop:
        loop.consumer.append(0, *values(3))
        loop.consumer.append(1, *values(4))
        await loop.until(lambda: len(loop.producer.sent_values()) == 7)

        rebalance = asyncio.create_task(loop.consumer.rebalance([1]))
        await loop.until(lambda: loop.consumer.rebalancing)
        assert [] == loop.consumer.commits  # nothing acknowledged: nothing to commit yet
        loop.producer.ack_all()
        await asyncio.wait_for(rebalance, 10)

        assert {tp(0): 3, tp(1): 4} == loop.consumer.group_offsets
        assert {tp(1)} == set(loop.pipeline.assigned)
        loop.producer.auto_ack = True
        loop.consumer.append(0, b"not ours any more")
        loop.consumer.append(1, b"after the rebalance")
        await loop.until(lambda: loop.consumer.committed_offset(1) == 5)
        await loop.stopped()

    assert [0, 1, 2] == loop.observer.routed_offsets(0)
    assert [0, 1, 2, 3, 4] == loop.observer.routed_offsets(1)
    assert 3 == loop.consumer.committed_offset(0)


async def test_a_commit_in_flight_while_its_partition_is_revoked_neither_crashes_nor_moves_back() -> None:
    """A periodic commit is still awaiting the broker when its partition is revoked: the revocation's own
    commit waits for it, so the group's offset only moves forward (6, then 10), nothing acknowledged is left
    uncommitted, and the loop keeps running (the partition comes back later) and stops cleanly."""
    async with running_loop() as loop:
        gates = loop.handler.hold(0, 5, 6, 7, 8, 9)
        loop.consumer.append(0, *values(10))
        await loop.until(lambda: loop.consumer.committed_offset(0) == 5)
        slow_commit = loop.consumer.hold_next_commit()
        gates[5].set()
        await loop.until(lambda: loop.consumer.commits_started == 2)  # {0: 6}, held at the broker

        revoked = asyncio.create_task(loop.consumer.rebalance([]))
        for offset in (6, 7, 8, 9):
            gates[offset].set()
        await loop.until(lambda: loop.observer.routed_offsets(0) == list(range(10)))
        await let_ready_tasks_run()  # the revocation goes as far as it can before the broker answers
        slow_commit.set()
        await asyncio.wait_for(revoked, 10)
        assert set() == set(loop.pipeline.assigned)
        await loop.consumer.rebalance([0])
        loop.consumer.append(0, b"after the rebalance")
        await loop.until(lambda: loop.consumer.committed_offset(0) == 11)
        await loop.stopped()

    assert [{tp(0): 5}, {tp(0): 6}, {tp(0): 10}, {tp(0): 11}] == loop.consumer.commits
    assert list(range(11)) == loop.observer.routed_offsets(0)


async def test_a_stalled_partition_is_paused_while_others_flow_and_resumed_when_it_progresses() -> None:
    """The handler stalls a record of partition 0 (retry budget spent): partition 0 is paused at the
    consumer and nothing more is taken from it, partition 1 keeps flowing; once the record progresses,
    partition 0 is resumed and its later records are routed."""
    async with running_loop(partitions=(0, 1)) as loop:
        progressed = loop.handler.stall_until(0, 0)
        loop.consumer.append(0, b"stalled")
        await loop.until(lambda: loop.consumer.paused() == {tp(0)})
        loop.consumer.append(0, b"waits behind it")
        loop.consumer.append(1, *values(3))
        await loop.until(lambda: loop.observer.routed_offsets(1) == [0, 1, 2])
        assert (0, 1) not in loop.handler.completing
        assert (2, 1) == loop.observer.held[-1]  # two assigned, the stalled one held

        progressed.set()
        await loop.until(lambda: loop.observer.routed_offsets(0) == [0, 1])
        assert set() == loop.consumer.paused()
        await loop.until(lambda: loop.consumer.group_offsets == {tp(0): 2, tp(1): 3})
        await loop.stopped()


async def test_stop_drains_in_flight_records_and_commits_only_the_acknowledged_prefix() -> None:
    """On stop, intake ends and records in flight get ``drain_timeout_s`` to finish: those that do are
    committed; the one still stuck at the deadline is cancelled and it and everything after it stay
    uncommitted (read again after a restart)."""
    async with running_loop(drain_timeout_s=0.5) as loop:
        gates = loop.handler.hold(0, 5, 6, 7, 8, 9)
        loop.consumer.append(0, *values(10))
        await loop.until(lambda: len(loop.handler.completing) == 10)
        await loop.until(lambda: loop.consumer.committed_offset(0) == 5)

        loop.stop.set()
        for offset in (5, 6, 8, 9):  # 7 never finishes
            gates[offset].set()
        await asyncio.wait_for(loop.task, 30)

    assert [0, 1, 2, 3, 4, 5, 6, 8, 9] == loop.observer.routed_offsets(0)
    assert {(0, 7)} == loop.handler.cancelled
    assert 7 == loop.consumer.committed_offset(0)


async def test_a_failed_produce_stops_the_loop_with_nothing_committed_past_it() -> None:
    """The producer gives up on three results (after its own retries): the loop stops with ``WorkerStopped``
    carrying that error, and the commit stays before the first lost record."""
    async with running_loop(auto_ack=False) as loop:
        loop.consumer.append(0, *values(3))
        await loop.until(lambda: len(loop.producer.sent_values()) == 3)
        loop.producer.ack_all()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 3)
        loop.consumer.append(0, *values(3, prefix="lost"))
        await loop.until(lambda: len(loop.producer.sent_values()) == 6)

        error = NotEnoughReplicasError("the in-sync replicas are too few")
        loop.producer.fail_all(error)
        with pytest.raises(WorkerStopped) as stopped:
            await asyncio.wait_for(loop.task, 30)

    assert error is stopped.value.cause
    assert 3 == loop.consumer.committed_offset(0)
    assert [0, 1, 2] == loop.observer.routed_offsets(0)


async def test_a_result_with_a_side_record_is_committed_only_once_both_are_acknowledged() -> None:
    """A result that carries a side record (an audit copy, say): its offset stays uncommitted while either
    record is unacknowledged, and moves once the broker has acknowledged both."""
    async with running_loop(auto_ack=False) as loop:
        loop.handler.with_side_record(0, 0)
        loop.consumer.append(0, *values(1))
        await loop.until(lambda: len(loop.producer.pending()) == 2)
        result, side = loop.producer.pending()
        assert (RESULTS, b"v0", SIDE, b"side-v0") == (result.topic, result.value, side.topic, side.value)

        loop.producer.ack(result)
        await let_ready_tasks_run()  # an acknowledgement is reported within a few turns of the event loop
        assert ([], []) == (loop.observer.routed_offsets(0), loop.consumer.commits)
        loop.producer.ack(side)
        await loop.until(lambda: loop.consumer.committed_offset(0) == 1)
        await loop.stopped()

    assert [0] == loop.observer.routed_offsets(0)


async def test_a_lost_side_record_stops_the_loop_with_nothing_committed_past_its_input() -> None:
    """The result is acknowledged but its side record is lost: the input counts as not produced, the loop
    stops with that error and the commit stays before it, so a restart routes it again."""
    async with running_loop(auto_ack=False) as loop:
        loop.handler.with_side_record(0, 1)
        loop.consumer.append(0, *values(2))
        await loop.until(lambda: len(loop.producer.pending()) == 3)
        first, result, side = loop.producer.pending()
        loop.producer.ack(first)
        loop.producer.ack(result)
        await loop.until(lambda: loop.consumer.committed_offset(0) == 1)

        error = NotEnoughReplicasError("the in-sync replicas are too few")
        loop.producer.fail(side, error)
        with pytest.raises(WorkerStopped) as stopped:
            await asyncio.wait_for(loop.task, 30)

    assert error is stopped.value.cause
    assert 1 == loop.consumer.committed_offset(0)
    assert [0] == loop.observer.routed_offsets(0)


async def test_lag_counts_from_the_committed_offset_while_commits_fail() -> None:
    """Every result is acknowledged but the group refuses the commits: the reported lag stays at the five
    records not committed (a crash now would route them again), not 0; once commits land it drops to 0."""
    async with running_loop() as loop:
        loop.consumer.fail_commits(UnknownMemberIdError("the member was fenced out of its group"))
        loop.consumer.append(0, *values(5))
        await loop.until(lambda: loop.observer.routed_offsets(0) == [0, 1, 2, 3, 4])
        await loop.until(lambda: loop.observer.lags.get(tp(0), (None, 0.0))[0] == 5)
        assert loop.consumer.committed_offset(0) is None

        loop.consumer.accept_commits()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 5)
        await loop.until(lambda: loop.observer.lags.get(tp(0), (None, 0.0))[0] == 0)
        await loop.stopped()


@pytest.mark.parametrize("step", ["prepare", "complete"])
async def test_a_defect_in_the_handler_stops_the_loop_without_committing_past_its_record(step: str) -> None:
    """An unexpected exception for record 3 (in ``prepare`` or ``complete``): ``WorkerStopped`` with that
    exception, records 0-2 committed, record 3 neither routed nor committed."""
    async with running_loop() as loop:
        defect = RuntimeError("a defect, not a service error")
        loop.handler.fail_at(0, 3, defect, step=step)
        loop.consumer.append(0, *values(6))
        with pytest.raises(WorkerStopped) as stopped:
            await asyncio.wait_for(loop.task, 30)

    assert defect is stopped.value.cause
    assert 3 == loop.consumer.committed_offset(0)
    assert 3 not in loop.observer.routed_offsets(0)


async def test_with_every_slot_waiting_a_keepalive_poll_runs_with_every_partition_paused() -> None:
    """All of ``max_in_flight`` wait on the analyzer: after ``poll_keepalive_s`` without a regular poll the
    loop polls with every partition paused (to stay in the group without taking records), then resumes
    them, and intake goes on once slots free up."""
    async with running_loop(partitions=(0, 1), max_in_flight=2, poll_keepalive_s=0.0) as loop:
        gates = loop.handler.hold(0, 0, 1)
        loop.consumer.append(0, *values(3))
        await loop.until(lambda: len(loop.handler.completing) == 2)
        await loop.until(
            lambda: any(poll.paused == {tp(0), tp(1)} and not poll.asked for poll in loop.consumer.polls)
        )
        await loop.until(lambda: loop.consumer.paused() == set())

        for gate in gates.values():
            gate.set()
        await loop.until(lambda: loop.consumer.committed_offset(0) == 3)
        await loop.stopped()

    assert all(poll.returned == 0 for poll in loop.consumer.polls if poll.paused == {tp(0), tp(1)})


async def test_a_failed_periodic_commit_is_carried_by_the_next_one(caplog: pytest.LogCaptureFixture) -> None:
    """A periodic commit fails (the group was rebalancing): it is logged, the loop goes on, and a later
    commit carries the offsets; nothing is lost and the loop stops cleanly."""
    async with running_loop() as loop:
        loop.consumer.fail_next_commit(CommitFailedError("the group has already rebalanced"))
        loop.consumer.append(0, *values(4))
        await loop.until(lambda: loop.consumer.committed_offset(0) == 4)
        await loop.stopped()

    assert loop.consumer.commits_started - 1 == len(loop.consumer.commits)  # exactly one failed
    assert {tp(0): 4} == loop.consumer.commits[-1]
    assert {"commit_failed"} == {r.message for r in caplog.records if r.name == "worker.kafka.committer"}
    assert {RESULTS} == loop.observer.routed_topics


async def test_a_failed_final_commit_is_logged_and_the_loop_still_stops_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The commit at stop fails (the group rebalanced meanwhile): the stop still returns normally, the
    failure is logged, and the offsets stay where the group had them, so the next owner reads the rest."""
    async with running_loop() as loop:
        gates = loop.handler.hold(0, 2)
        loop.consumer.append(0, *values(3))
        await loop.until(lambda: loop.consumer.committed_offset(0) == 2)
        loop.consumer.fail_commits(CommitFailedError("the group has already rebalanced"))
        loop.stop.set()
        gates[2].set()
        await asyncio.wait_for(loop.task, 30)

    assert 2 == loop.consumer.committed_offset(0)
    assert [0, 1, 2] == loop.observer.routed_offsets(0)
    assert {"commit_failed"} == {r.message for r in caplog.records if r.name == "worker.kafka.committer"}
