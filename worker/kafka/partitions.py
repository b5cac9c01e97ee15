"""Partition bookkeeping of the Kafka loop: what each owned partition has in flight, which are held or paused
and why, their lag, and the rebalance callbacks that add and drop partitions.

Intake from a partition is *held* (left out of the next poll) while it is stalled or has
``max_in_flight_per_partition`` records in flight, or while the whole worker is at ``max_in_flight``. Only a
stalled partition is also *paused* at the consumer: aiokafka discards what it prefetched for a partition that
is paused when polled, and would fetch it again on resume, so pausing is kept for the partitions that will
not move for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

from worker.kafka.committer import Committer
from worker.kafka.offsets import OffsetTracker
from worker.records import Stall


class PartitionConsumer(Protocol):
    """The consumer calls partition bookkeeping makes (``AIOKafkaConsumer`` has them all)."""

    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def assignment(self) -> Collection[TopicPartition]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    async def committed(self, partition: TopicPartition) -> int | None: ...
    def partitions_for_topic(self, topic: str) -> Collection[int] | None: ...


class PartitionObserver(Protocol):
    """Metrics hooks about partitions."""

    def partitions(self, assigned: int, paused: int) -> None: ...
    def lag(self, tp: TopicPartition, records: int, seconds: float) -> None: ...
    def assigned(self, committed: Mapping[TopicPartition, int | None]) -> None: ...


@dataclass(slots=True)
class PartitionState:
    """One owned partition: its offsets in flight and why its intake may be held."""

    tracker: OffsetTracker
    started_any: bool = False
    stalled: int = 0
    """Records of this partition whose handler says they cannot progress."""
    revoking: bool = False
    """Set on revocation: start nothing more from this partition."""
    oldest_timestamp_ms: dict[int, int] = field(default_factory=dict)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever nothing of this partition is in flight."""
    resumed_at: int | None = None
    """The group's committed offset when the partition was assigned: where its lag counts from until a
    record of it finishes (``None``: the group never committed it)."""

    def start(self, offset: int, timestamp_ms: int) -> None:
        """A record is taken in flight (offsets in increasing order)."""
        if not self.started_any:
            # Where consumption resumed is already durable (committed, or the reset policy's choice):
            # committing it again would only create an offset the group never had.
            self.started_any = True
            self.tracker.mark_committed(offset)
        self.tracker.start(offset)
        self.oldest_timestamp_ms[offset] = timestamp_ms
        self.idle.clear()

    def finish(self, offset: int) -> None:
        """The record at ``offset`` is done: its result is acknowledged, so it may be committed."""
        self.tracker.finish(offset)
        self.oldest_timestamp_ms.pop(offset, None)
        if self.tracker.in_flight == 0:
            self.idle.set()


class RecordControl(Stall):
    """The ``Stall`` handed to a record's handler: its stall counts against its partition, at most once."""

    __slots__ = ("_stalled", "_state")

    def __init__(self, state: PartitionState) -> None:
        self._state = state
        self._stalled = False

    def stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            self._state.stalled += 1

    def unstall(self) -> None:
        if self._stalled:
            self._stalled = False
            self._state.stalled -= 1


class Partitions:
    """The partitions this replica owns, kept in step with the group by ``on_assigned``/``on_revoked``."""

    def __init__(
        self,
        consumer: PartitionConsumer,
        committer: Committer,
        observer: PartitionObserver,
        *,
        input_topic: str,
        max_in_flight_per_partition: int,
        drain_timeout_s: float,
        lag_report_interval_s: float = 0.5,
        on_assignment: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``on_assignment(assigned, total)`` after each assignment (the quota share); ``clock``: wall-clock
        seconds, compared with record timestamps for the lag in seconds."""
        self._consumer = consumer
        self._committer = committer
        self._observer = observer
        self._input_topic = input_topic
        self._max_per_partition = max_in_flight_per_partition
        self._drain_timeout_s = drain_timeout_s
        # Lag is scraped every few seconds; computing it after every poll (hundreds a second) is wasted.
        self._lag_report_interval_s = lag_report_interval_s
        self._lag_reported_at = -math.inf
        self._on_assignment = on_assignment
        self._clock = clock
        self._states: dict[TopicPartition, PartitionState] = {}
        self._paused: set[TopicPartition] = set()

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener that calls ``on_revoked`` and ``on_assigned``."""
        return _Rebalance(self)

    @property
    def assigned(self) -> Collection[TopicPartition]:
        """Partitions this replica owns right now."""
        return self._states.keys()

    def get(self, tp: TopicPartition) -> PartitionState | None:
        """The state of ``tp``, or ``None`` if this replica does not own it (any more)."""
        return self._states.get(tp)

    def hold(self, *, intake_full: bool, intake_paused: bool = False) -> set[TopicPartition]:
        """Pause stalled partitions at the consumer (resume unstalled ones); return every held partition.

        Held: stalled, at ``max_in_flight_per_partition``, or all of them when ``intake_full``. While
        ``intake_paused`` (``moderation-worker pause``) every partition is held and paused at the consumer:
        it will not move until ``resume``, and the group membership stays.
        """
        stalled = {tp for tp, state in self._states.items() if state.stalled or intake_paused}
        held = {
            tp
            for tp, state in self._states.items()
            if intake_full or tp in stalled or state.tracker.in_flight >= self._max_per_partition
        }
        if to_pause := stalled - self._paused:
            self._consumer.pause(*to_pause)
        if to_resume := (self._paused - stalled) & self._states.keys():
            self._consumer.resume(*to_resume)
        self._paused = stalled
        self._observer.partitions(len(self._states), len(held))
        return held

    @contextlib.contextmanager
    def all_paused(self) -> Iterator[None]:
        """Pause every partition for the duration (a keep-alive poll); then resume those still assigned."""
        active = [tp for tp in self._states if tp not in self._paused]
        if active:
            self._consumer.pause(*active)
        try:
            yield
        finally:
            if still_assigned := [tp for tp in active if tp in self._consumer.assignment()]:
                self._consumer.resume(*still_assigned)

    def lag_due(self, at: float) -> bool:
        """Whether ``polled(at)`` would report lag (one report every ``lag_report_interval_s``)."""
        return at - self._lag_reported_at >= self._lag_report_interval_s

    def polled(self, at: float, ends: Mapping[TopicPartition, int] | None = None) -> None:
        """A poll happened at ``at`` (seconds, any monotonic clock): report lag every few seconds of those.

        ``ends``: end offsets asked of the broker, for partitions the consumer does not fetch (paused),
        whose own high watermark stands still; the consumer's are used otherwise.
        """
        if not self.lag_due(at):
            return
        self._lag_reported_at = at
        now_ms = self._clock() * 1000
        for tp, state in self._states.items():
            highwater = self._consumer.highwater(tp) if ends is None else ends.get(tp)
            # From the group's committed offset, not from what is done: while commits fail (a fenced
            # member, a moving coordinator) the done records would be read again after a crash. Before
            # this replica committed anything, from where the group's offset stood at assignment.
            committed = state.tracker.committed
            if committed is None:
                committed = state.resumed_at
            if highwater is None or committed is None:
                continue
            records = max(highwater - committed, 0)
            oldest = min(state.oldest_timestamp_ms.values(), default=None)
            seconds = max(now_ms - oldest, 0.0) / 1000 if oldest is not None and records else 0.0
            self._observer.lag(tp, records, seconds)

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Finish what is in flight for the revoked partitions (bounded), commit it, forget them."""
        mine = [state for tp in revoked if (state := self._states.get(tp)) is not None]
        for state in mine:
            state.revoking = True
        if mine:
            waits = [asyncio.ensure_future(state.idle.wait()) for state in mine if state.tracker.in_flight]
            if waits:
                _, pending = await asyncio.wait(waits, timeout=self._drain_timeout_s)
                for waiter in pending:
                    waiter.cancel()
            await self._committer.try_commit(only=revoked)
        for tp in revoked:
            self._states.pop(tp, None)
            self._paused.discard(tp)
        self._committer.forget(revoked)

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Start tracking newly assigned partitions at their committed position; re-share the quota."""
        new = [tp for tp in assigned if tp not in self._states]
        for tp in new:
            self._states[tp] = PartitionState(self._committer.track(tp))
        committed = {tp: await self._consumer.committed(tp) for tp in self._states}
        for tp in new:
            self._states[tp].resumed_at = committed[tp]
        self._observer.assigned(committed)
        total = len(self._consumer.partitions_for_topic(self._input_topic) or ())
        if self._on_assignment is not None:
            self._on_assignment(len(self._states), max(total, len(self._states)))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, partitions: Partitions) -> None:
        self._partitions = partitions

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._partitions.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._partitions.on_assigned(assigned)
