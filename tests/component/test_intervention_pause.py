"""Specification of ``pause`` in the Kafka loop, run against the in-memory consumer and producer: intake
stops on every partition, what is in flight finishes and commits, the member keeps polling (all partitions
paused) so it stays in the group, and resume picks up where it stopped."""

from __future__ import annotations

import asyncio

from tests.component.fake_consumer import Changes, FakeConsumer, tp
from tests.component.fake_producer import FakeProducer
from tests.component.scripted import RecordingObserver, ScriptedHandler
from worker.kafka.loop import Pipeline


class _Switch:
    """The ``intake_paused`` callable: a flag the test flips."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes
        self.paused = False

    def __call__(self) -> bool:
        return self.paused

    def flip(self, *, paused: bool) -> None:
        self.paused = paused
        self._changes.notify()


async def test_pause_finishes_in_flight_records_starts_none_and_resume_continues() -> None:
    """Paused with a record in flight: every partition is paused at the consumer, the record finishes and
    is committed, records arriving meanwhile are not started although the member keeps polling; resumed,
    they are routed and committed in order."""
    changes = Changes()
    consumer = FakeConsumer(changes, partitions=2)
    producer = FakeProducer(changes, auto_ack=True)
    handler = ScriptedHandler(changes)
    observer = RecordingObserver(changes)
    switch = _Switch(changes)
    pipeline = Pipeline(
        consumer,
        producer,
        handler,
        observer,
        input_topic="images.submitted",
        max_in_flight=64,
        max_in_flight_per_partition=64,
        drain_timeout_s=10.0,
        commit_interval_s=0.01,
        poll_keepalive_s=0.0,  # every wait polls: the test sees the member polling while paused
        intake_paused=switch,
    )
    consumer.subscribe(pipeline.listener())
    await consumer.rebalance([0, 1])
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        [gate] = handler.hold(0, 0).values()
        consumer.append(0, b"in flight")
        await changes.until(lambda: (0, 0) in handler.completing)

        switch.flip(paused=True)
        await changes.until(lambda: consumer.paused() == {tp(0), tp(1)})
        consumer.append(0, b"arrives while paused")
        consumer.append(1, b"arrives while paused too")
        gate.set()
        await changes.until(lambda: consumer.committed_offset(0) == 1)
        polls_before = len(consumer.polls)
        await changes.until(lambda: len(consumer.polls) >= polls_before + 3)  # keep-alive polls go on
        started_while_paused = set(handler.completing)
        paused_polls = consumer.polls[polls_before:]

        switch.flip(paused=False)
        await changes.until(lambda: consumer.group_offsets == {tp(0): 2, tp(1): 1})
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])

    assert {(0, 0)} == started_while_paused
    assert {(frozenset({tp(0), tp(1)}), 0)} == {(poll.paused, poll.returned) for poll in paused_polls}
    assert ([0, 1], [0]) == (observer.routed_offsets(0), observer.routed_offsets(1))
    assert set() == consumer.paused()
