"""A scripted ``RecordHandler[bytes]`` and a recording ``PipelineObserver`` for the loop's component tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka import TopicPartition

from tests.component.fake_consumer import TOPIC, Changes
from tests.component.fake_producer import RESULTS, SIDE
from worker.records import ConsumedRecord, Outcome, Routed, SideRecord, Stall


class ScriptedHandler:
    """A ``RecordHandler[bytes]``: routes each record's value to ``RESULTS``; the test scripts exceptions
    (``fail_at``), records it holds until released (``hold``) and stalls (``stall_until``)."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes
        self._holds: dict[tuple[int, int], asyncio.Event] = {}
        self._stalls: set[tuple[int, int]] = set()
        self._failures: dict[tuple[int, int], tuple[str, Exception]] = {}
        self._sides: set[tuple[int, int]] = set()
        self.completing: set[tuple[int, int]] = set()
        """(partition, offset) of records whose ``complete`` started."""
        self.cancelled: set[tuple[int, int]] = set()

    def hold(self, partition: int, *offsets: int) -> dict[int, asyncio.Event]:
        """Records at ``offsets`` wait in ``complete`` until their event is set."""
        events = {offset: asyncio.Event() for offset in offsets}
        self._holds.update({(partition, offset): event for offset, event in events.items()})
        return events

    def stall_until(self, partition: int, offset: int) -> asyncio.Event:
        """The record at ``offset`` stalls its partition and waits until the returned event is set."""
        self._stalls.add((partition, offset))
        return self.hold(partition, offset)[offset]

    def fail_at(self, partition: int, offset: int, error: Exception, *, step: str = "complete") -> None:
        """``step`` (prepare or complete) raises ``error`` for the record at ``offset``."""
        self._failures[(partition, offset)] = (step, error)

    def with_side_record(self, partition: int, offset: int) -> None:
        """The result of the record at ``offset`` carries one side record for ``SIDE`` (value ``side-``)."""
        self._sides.add((partition, offset))

    def prepare(self, record: ConsumedRecord) -> Routed | bytes:
        failure = self._failures.get((record.partition, record.offset))
        if failure is not None and failure[0] == "prepare":
            raise failure[1]
        assert record.value is not None
        return record.value

    async def complete(self, record: ConsumedRecord, work: bytes, control: Stall) -> Routed:
        where = (record.partition, record.offset)
        self.completing.add(where)
        self._changes.notify()
        failure = self._failures.get(where)
        if failure is not None and failure[0] == "complete":
            raise failure[1]
        if where in self._stalls:
            control.stall()
        if (hold := self._holds.get(where)) is not None:
            try:
                await hold.wait()
            except asyncio.CancelledError:
                self.cancelled.add(where)
                self._changes.notify()
                raise
        side = (SideRecord(SIDE, record.key, b"side-" + work, []),) if where in self._sides else ()
        return Routed(RESULTS, record.key, work, [], "approved", Outcome("approved", None), side)


class RecordingObserver:
    """A ``PipelineObserver`` that keeps everything the loop reports."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes
        self.consumed_total = 0
        self.routed_at: list[tuple[int, int]] = []
        """(partition, offset) of every record whose result was acknowledged, in that order."""
        self.routed_topics: set[str] = set()
        self.in_flight_counts: list[int] = []
        self.held: list[tuple[int, int]] = []
        """(assigned, held) partitions, at every intake."""
        self.reported_commits: list[dict[TopicPartition, int]] = []
        self.lags: dict[TopicPartition, tuple[int, float]] = {}
        self.assignments: list[dict[TopicPartition, int | None]] = []

    def consumed(self, topic: str, count: int) -> None:
        assert topic == TOPIC
        self.consumed_total += count

    def routed(self, routed: Routed, record: ConsumedRecord, processing_s: float) -> None:
        assert processing_s >= 0
        self.routed_topics.add(routed.topic)
        self.routed_at.append((record.partition, record.offset))
        self._changes.notify()

    def in_flight(self, count: int) -> None:
        self.in_flight_counts.append(count)

    def partitions(self, assigned: int, paused: int) -> None:
        self.held.append((assigned, paused))

    def committed(self, offsets: dict[TopicPartition, int], duration_s: float) -> None:
        assert duration_s >= 0
        self.reported_commits.append(dict(offsets))

    def lag(self, tp: TopicPartition, records: int, seconds: float) -> None:
        self.lags[tp] = (records, seconds)

    def assigned(self, committed: Mapping[TopicPartition, int | None]) -> None:
        self.assignments.append(dict(committed))
        self._changes.notify()

    def routed_offsets(self, partition: int) -> list[int]:
        """Offsets of ``partition`` whose results were acknowledged, in offset order."""
        return sorted(offset for part, offset in self.routed_at if part == partition)
