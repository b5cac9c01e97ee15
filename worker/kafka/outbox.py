"""Produce routed records in whole batches, one per output partition; report each record's acknowledgement.

``AIOKafkaProducer.send`` costs a coroutine, a partition lookup that copies the topic's partition sets, and a
future per record whose resolution wakes the record's task: the largest single cost of the worker at
thousands of records a second (docs/benchmarks.md). The outbox queues records, picks each one's partition with
the producer's own default partitioner (aiokafka's ``DefaultPartitioner``: murmur2 of the key, so a key keeps
its partition), appends them to a closed batch per partition and hands that batch to the producer: one future
per batch, whose callback reports every record in it. Records queue while the previous batch of their
partition is being sent, which is where they gather into the next batch, so no linger is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

log = logging.getLogger(__name__)

Acknowledged = Callable[[BaseException | None], None]
"""Called once per record: ``None`` once the broker acknowledged it, else the error that lost it
(``asyncio.CancelledError``: the outbox was closed before the record was handed to the producer)."""


_Entry = tuple[bytes | None, bytes, Sequence[tuple[str, bytes]], Acknowledged]
"""Key, value, headers, and whom to tell (a plain tuple: one is built per record)."""
_Batch = tuple[str, int, list[_Entry]]
"""Topic, partition, and the records for it not yet handed to the producer."""


class BatchBuilder(Protocol):
    """A batch being filled (aiokafka's ``BatchBuilder``)."""

    def append(
        self, *, timestamp: int | None, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object | None:
        """Add one record; ``None`` when the batch is full (a new batch always takes its first record)."""

    def close(self) -> None:
        """Take no more records: the producer sends the batch as it is, without waiting out ``linger_ms``."""


class Producer(Protocol):
    """The producer calls the outbox makes (``AIOKafkaProducer`` has them all)."""

    async def partitions_for(self, topic: str) -> Collection[int]:
        """Every partition of ``topic`` (waits for its metadata; KafkaTimeoutError if it never comes)."""

    def create_batch(self) -> BatchBuilder: ...

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        """Queue ``batch`` for ``partition``; the future resolves once the broker acknowledged it."""


Partitioner = Callable[[bytes | None, list[int], list[int]], int]
"""``(key, all_partitions, available_partitions) -> partition``: how aiokafka calls a partitioner."""


class Outbox:
    """Queue records for their topics; ``acknowledged`` says when each is durable (producer ``acks``)."""

    def __init__(self, producer: Producer, *, partitioner: Partitioner | None = None) -> None:
        """``partitioner``: where a record goes by its key; by default aiokafka's own ``DefaultPartitioner``,
        so a key lands where ``AIOKafkaProducer.send`` would put it."""
        self._producer = producer
        self._partitioner: Partitioner = DefaultPartitioner() if partitioner is None else partitioner
        self._queued: dict[str, list[_Entry]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        acknowledged: Acknowledged,
    ) -> None:
        """Queue one record; never raises. ``acknowledged`` runs later, on the event loop, exactly once."""
        entries = self._queued.get(topic)
        if entries is None:
            entries = self._queued[topic] = []
        entries.append((key, value, headers, acknowledged))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="outbox-flush")

    async def aclose(self) -> None:
        """Stop handing records to the producer; those not handed over yet are reported ``CancelledError``.

        Records already handed over are acknowledged (or failed) when the producer sends them or stops.
        """
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        queued, self._queued = self._queued, {}
        for entries in queued.values():
            _report(entries, asyncio.CancelledError())

    async def _flush(self) -> None:
        work: deque[_Batch] = deque()  # taken from the queue, not handed to the producer yet
        try:
            while self._queued or work:
                if not work:
                    work.extend(await self._partition_queued())
                    continue
                topic, partition, entries = work[0]
                rest = await self._send_batch(topic, partition, entries)
                work[0] = (topic, partition, rest)
                if not rest:
                    work.popleft()
        except asyncio.CancelledError:
            self._abandon(work, asyncio.CancelledError())
            raise
        # Whatever stops the flusher must reach every record it strands: the pipeline waits for each one.
        except Exception as exc:
            log.exception("outbox_failed", extra={"error_class": type(exc).__name__})
            self._abandon(work, exc)
        finally:
            self._flusher = None

    def _abandon(self, work: deque[_Batch], error: BaseException) -> None:
        for _, _, entries in work:
            _report(entries, error)
        queued, self._queued = self._queued, {}
        for entries in queued.values():
            _report(entries, error)

    async def _partition_queued(self) -> list[_Batch]:
        """Take the queued records, grouped by the partition the partitioner gives their key."""
        partitions: dict[str, list[int]] = {}
        for topic in list(self._queued):
            try:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            except KafkaError as exc:  # e.g. the topic does not exist (KafkaTimeoutError after the wait)
                _fail(self._queued.pop(topic, []), exc)
        groups: dict[tuple[str, int], list[_Entry]] = {}
        partitioner = self._partitioner
        for topic, known in partitions.items():  # topics first queued while metadata was awaited wait a round
            for entry in self._queued[topic]:
                # Every partition counts as available: the producer waits for a leader itself.
                groups.setdefault((topic, partitioner(entry[0], known, known)), []).append(entry)
        for topic in partitions:
            del self._queued[topic]
        return [(topic, partition, entries) for (topic, partition), entries in groups.items()]

    async def _send_batch(self, topic: str, partition: int, entries: list[_Entry]) -> list[_Entry]:
        """Send as many of ``entries`` as fit one batch; return the rest."""
        batch = self._producer.create_batch()
        taken = 0
        for key, value, headers, _ in entries:
            # The record builder takes a list only. A batch always takes its first record, so every round
            # sends at least one.
            listed = headers if type(headers) is list else list(headers)
            if batch.append(key=key, value=value, timestamp=None, headers=listed) is None:
                break
            taken += 1
        batch.close()  # closed: the producer sends it as it is, without waiting out linger_ms
        sent, rest = entries[:taken], entries[taken:]
        try:
            future = await self._producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:  # closed producer, or no room in its queue within request_timeout_ms
            _fail(sent, exc)
        else:
            future.add_done_callback(lambda done: _batch_done(sent, done))
        return rest


def _batch_done(entries: list[_Entry], done: asyncio.Future[RecordMetadata]) -> None:
    _report(entries, asyncio.CancelledError() if done.cancelled() else done.exception())


def _fail(entries: list[_Entry], error: KafkaError) -> None:
    if entries:
        log.error("produce_failed", extra={"records": len(entries), "error_class": type(error).__name__})
    _report(entries, error)


def _report(entries: list[_Entry], error: BaseException | None) -> None:
    for *_, acknowledged in entries:
        acknowledged(error)
