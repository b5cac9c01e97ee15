"""An in-memory ``worker.kafka.loop.Consumer``: one member of a consumer group, as faithful to aiokafka's
``AIOKafkaConsumer`` as the loop needs.

It delivers each assigned, unpaused partition's records in offset order from the group's committed offset
(``auto_offset_reset="earliest"`` without one), waits out a rebalance in ``getmany`` as aiokafka does, runs
the listener eagerly (everything revoked, then the new assignment), refuses commits for partitions it does
not own (``IllegalStateError``) and keeps every commit in the order commits complete. Every observable
change wakes ``Changes.until``, so tests wait on state, never on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from worker.records import ConsumedRecord

TOPIC = "images.submitted"


def tp(partition: int) -> TopicPartition:
    """Partition ``partition`` of the input topic."""
    return TopicPartition(TOPIC, partition)


class Changes:
    """Wakes the waiters of ``until`` whenever a fake's observable state changes."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
        """Return once ``predicate()`` holds; TimeoutError if it still does not after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record (``worker.records.ConsumedRecord``), as aiokafka's ``ConsumerRecord`` carries it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass(frozen=True, slots=True)
class Poll:
    """One ``getmany``: the partitions asked for (empty: all), those paused then, and what it returned."""

    asked: frozenset[TopicPartition]
    paused: frozenset[TopicPartition]
    assigned: frozenset[TopicPartition]
    returned: int


class FakeConsumer:
    """One group member on ``TOPIC`` with ``partitions`` partitions (``AIOKafkaConsumer``'s surface)."""

    def __init__(self, changes: Changes, partitions: int = 2) -> None:
        self._changes = changes
        self._partition_count = partitions
        self._log: dict[TopicPartition, list[Record]] = {tp(p): [] for p in range(partitions)}
        self._assignment: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._listener: ConsumerRebalanceListener | None = None
        self._settled = asyncio.Event()  # clear while a rebalance runs
        self._settled.set()
        self._arrived = asyncio.Event()  # records appended, a partition resumed or assigned
        self.group_offsets: dict[TopicPartition, int] = {}
        """The group's committed offsets (what a restarted member resumes from)."""
        self.commits: list[dict[TopicPartition, int]] = []
        """Every completed commit, in the order they completed."""
        self.polls: list[Poll] = []
        self._commit_holds: list[asyncio.Event] = []
        self._commit_failures: list[KafkaError] = []
        self._fenced: KafkaError | None = None
        self.commits_started = 0

    # -- what the test does --------------------------------------------------------------------------
    def subscribe(self, listener: ConsumerRebalanceListener) -> None:
        self._listener = listener

    def append(self, partition: int, *values: bytes) -> list[Record]:
        """Append records with ``values`` to ``partition`` (keys ``k<offset>``)."""
        log = self._log[tp(partition)]
        added = [
            Record(
                TOPIC, partition, len(log) + index, 1_700_000_000_000, f"k{len(log) + index}".encode(), value
            )
            for index, value in enumerate(values)
        ]
        log.extend(added)
        self._arrived.set()
        self._changes.notify()
        return added

    async def rebalance(self, assignment: Collection[int]) -> None:
        """An eager rebalance: revoke every owned partition, then assign ``assignment`` from the group's
        committed offsets (or the start: ``auto_offset_reset="earliest"``)."""
        assert self._listener is not None, "subscribe first"
        self._settled.clear()
        self._changes.notify()
        try:
            await self._listener.on_partitions_revoked(set(self._assignment))
            self._assignment = {tp(p) for p in assignment}
            self._paused.clear()  # a new assignment starts unpaused
            self._position = {part: self.group_offsets.get(part, 0) for part in self._assignment}
        finally:
            self._settled.set()
        self._arrived.set()
        self._changes.notify()
        await self._listener.on_partitions_assigned(set(self._assignment))
        self._changes.notify()

    def hold_next_commit(self) -> asyncio.Event:
        """The next commit waits (after its checks, before it lands) until the returned event is set."""
        hold = asyncio.Event()
        self._commit_holds.append(hold)
        return hold

    def fail_next_commit(self, error: KafkaError) -> None:
        """The next commit raises ``error`` and commits nothing."""
        self._commit_failures.append(error)

    def fail_commits(self, error: KafkaError) -> None:
        """Every commit from now on raises ``error`` (the member was fenced out of its group)."""
        self._fenced = error

    def accept_commits(self) -> None:
        """Commits land again (undoes ``fail_commits``)."""
        self._fenced = None
        self._changes.notify()

    def committed_offset(self, partition: int) -> int | None:
        """The group's committed offset of ``partition`` (None: never committed)."""
        return self.group_offsets.get(tp(partition))

    @property
    def rebalancing(self) -> bool:
        """True from the start of ``rebalance`` until the new assignment is in place."""
        return not self._settled.is_set()

    # -- the consumer surface ------------------------------------------------------------------------
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]:
        await self._settled.wait()  # as aiokafka: nothing of a partition that is being reassigned
        if timeout_ms and not self._has_records(partitions):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    while not self._has_records(partitions):
                        self._arrived.clear()
                        await self._arrived.wait()
            await self._settled.wait()
        batch = self._take(partitions, max_records or 500)
        self.polls.append(
            Poll(
                frozenset(partitions),
                frozenset(self._paused),
                frozenset(self._assignment),
                sum(map(len, batch.values())),
            )
        )
        self._changes.notify()
        return batch

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)
        self._changes.notify()

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)
        self._arrived.set()
        self._changes.notify()

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {partition: len(self._log[partition]) for partition in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self._log[partition]) if partition in self._assignment else None

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.group_offsets.get(partition)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self._partition_count)) if topic == TOPIC else None

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for part in offsets:
            if part not in self._assignment:
                raise IllegalStateError(f"Partition {part} is not assigned")
        self.commits_started += 1
        self._changes.notify()
        if self._commit_holds:
            await self._commit_holds.pop(0).wait()
        if self._commit_failures:
            raise self._commit_failures.pop(0)
        if self._fenced is not None:
            raise self._fenced
        self.group_offsets.update(offsets)
        self.commits.append(dict(offsets))
        self._changes.notify()

    # -- internals -----------------------------------------------------------------------------------
    def _fetchable(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        asked = partitions or sorted(self._assignment)
        return [part for part in asked if part in self._assignment and part not in self._paused]

    def _has_records(self, partitions: Sequence[TopicPartition]) -> bool:
        return any(self._position[part] < len(self._log[part]) for part in self._fetchable(partitions))

    def _take(self, partitions: Sequence[TopicPartition], limit: int) -> dict[TopicPartition, list[Record]]:
        batch: dict[TopicPartition, list[Record]] = {}
        for part in self._fetchable(partitions):
            start = self._position[part]
            if records := self._log[part][start : start + limit]:
                batch[part] = records
                self._position[part] = start + len(records)
                limit -= len(records)
            if not limit:
                break
        return batch
