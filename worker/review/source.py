"""Fills the review queue from Kafka and commits an item's offset once its verdict is acknowledged.

Every console instance joins one consumer group (``MODERATION_REVIEW_GROUP_ID``) on the needs-review, audit
and escalation topics, so instances share the work by partition. Offsets are committed manually, as a
watermark plus the decided offsets above it in the commit metadata (``worker.review.progress``): a restart
or a rebalance loses no pending item and offers no decided one again. On revocation the partition's items
leave this console's queue (their leases end) and its progress is committed first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from worker.records import SourceCoordinates
from worker.review.items import ItemKind, NotReviewable, ReviewItem, parse_item
from worker.review.progress import PartitionProgress
from worker.review.queue import ReviewQueue

log = logging.getLogger(__name__)
POLL_MS = 200


class OffsetReader(Protocol):
    """The admin client's ``list_consumer_group_offsets``: committed offsets with their metadata."""

    async def list_consumer_group_offsets(
        self,
        group_id: str,
        group_coordinator_id: int | None = None,
        partitions: list[TopicPartition] | None = None,
    ) -> Mapping[TopicPartition, object]: ...


class ReviewSource:
    """Consumes ``kinds`` (topic -> queue) into ``queue`` with ``consumer`` (subscribed by ``run``)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        admin: OffsetReader,
        queue: ReviewQueue,
        *,
        group_id: str,
        kinds: Mapping[str, ItemKind],
    ) -> None:
        self._consumer = consumer
        self._admin = admin
        self._queue = queue
        self._group_id = group_id
        self._kinds = dict(kinds)
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._keys: dict[TopicPartition, set[str]] = {}
        self._commit_lock = asyncio.Lock()
        self._assigned = asyncio.Event()

    @property
    def assigned(self) -> asyncio.Event:
        """Set once the group gave this console its first partitions (for tests and readiness)."""
        return self._assigned

    async def run(self) -> None:
        """Subscribe and fill the queue until cancelled."""
        consumer = self._consumer
        consumer.subscribe(topics=sorted(self._kinds), listener=_Listener(self))
        while True:
            batch = await consumer.getmany(timeout_ms=POLL_MS)
            for tp, records in batch.items():
                self._take(tp, records)
            await self._pause_saturated()

    async def settle(self, item: ReviewItem) -> bool:
        """Record that ``item``'s verdict is acknowledged and commit its partition; False when this console
        no longer owns the partition (the new owner will offer the item again)."""
        tp = TopicPartition(item.record.topic, item.record.partition)
        progress = self._progress.get(tp)
        if progress is None:
            log.warning("review_settle_unowned", extra={"item": item.key})
            return False
        progress.decide(item.record.offset)
        self._keys.get(tp, set()).discard(item.key)
        await self._commit([tp])
        return True

    def _take(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        progress = self._progress.get(tp)
        if progress is None:  # records fetched before a revocation finished arriving
            return
        kind = self._kinds[tp.topic]
        for record in records:
            offset = record.offset
            if not progress.offer(offset):
                continue
            coordinates = SourceCoordinates(tp.topic, tp.partition, offset, record.timestamp)
            try:
                item = parse_item(kind, record.value, coordinates, record.headers)
            except NotReviewable as exc:
                log.warning(
                    "review_record_skipped",
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": offset, "error": str(exc)},
                )
                progress.decide(offset)
                continue
            if self._queue.add(item):
                self._keys.setdefault(tp, set()).add(item.key)

    async def _pause_saturated(self) -> None:
        consumer = self._consumer
        saturated = [tp for tp, progress in self._progress.items() if progress.saturated]
        if saturated:
            consumer.pause(*saturated)
        resumed = [tp for tp, progress in self._progress.items() if not progress.saturated]
        if resumed:
            consumer.resume(*resumed)

    async def _commit(self, partitions: Sequence[TopicPartition]) -> None:
        offsets = {
            tp: (self._progress[tp].watermark, self._progress[tp].metadata())
            for tp in partitions
            if tp in self._progress
        }
        if not offsets:
            return
        async with self._commit_lock:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # The progress is cumulative: the next commit carries this one's offsets too.
                log.warning("review_commit_failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def assigned_partitions(self, partitions: Sequence[TopicPartition]) -> None:
        """Resume each partition's progress from its committed offset and metadata."""
        wanted = [tp for tp in partitions if tp not in self._progress]
        if wanted:
            committed = await self._admin.list_consumer_group_offsets(self._group_id, partitions=wanted)
            for tp in wanted:
                entry = committed.get(tp)
                offset = getattr(entry, "offset", None)
                metadata = getattr(entry, "metadata", "") or ""
                self._progress[tp] = PartitionProgress.resume(offset, str(metadata))
        self._assigned.set()

    async def revoked_partitions(self, partitions: Sequence[TopicPartition]) -> None:
        """Commit the partitions' progress, then forget them and their queued items."""
        await self._commit(list(partitions))
        for tp in partitions:
            self._progress.pop(tp, None)
            self._queue.drop(self._keys.pop(tp, set()))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: ReviewSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._source.revoked_partitions(list(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._source.assigned_partitions(list(assigned))
