"""An in-memory ``worker.kafka.outbox.Producer``: an ``acks=all`` producer whose acknowledgements the test
gives (``ack``, ``fail``), or that acknowledges at once (``auto_ack``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from tests.component.fake_consumer import Changes
from worker.kafka.outbox import BatchBuilder

RESULTS = "images.approved"
"""The one output topic the fake producer knows."""


@dataclass(slots=True)
class SentBatch:
    """One batch handed to the producer, and the future the producer resolves when the broker acks it."""

    topic: str
    partition: int
    records: list[tuple[bytes | None, bytes]]
    future: asyncio.Future[RecordMetadata]


class FakeBatch:
    """aiokafka's ``BatchBuilder``: takes records until ``capacity`` or until closed."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self.records: list[tuple[bytes | None, bytes]] = []
        self._closed = False

    def append(
        self, *, timestamp: int | None, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object | None:
        assert timestamp is None or isinstance(timestamp, int)
        assert isinstance(headers, list), "aiokafka's record builder takes a list of headers only"
        if self._closed or len(self.records) >= self._capacity:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self._closed = True


class FakeProducer:
    """An ``acks=all`` producer whose acknowledgements the test gives (``ack``/``fail``), or at once."""

    def __init__(self, changes: Changes, *, partitions: int = 3, auto_ack: bool = True, capacity: int = 100):
        self._changes = changes
        self._partitions = set(range(partitions))
        self._capacity = capacity
        self.auto_ack = auto_ack
        self.batches: list[SentBatch] = []
        self.acknowledged: list[tuple[str, int, bytes | None, bytes]] = []
        """Every record the broker acknowledged: topic, partition, key, value."""

    async def partitions_for(self, topic: str) -> set[int]:
        if topic != RESULTS:
            raise KafkaTimeoutError(f"no metadata for {topic}")
        return set(self._partitions)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self._capacity)

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        assert isinstance(batch, FakeBatch), "a batch from create_batch"
        assert partition in self._partitions
        sent = SentBatch(topic, partition, list(batch.records), asyncio.get_running_loop().create_future())
        self.batches.append(sent)
        if self.auto_ack:
            self.ack(sent)
        self._changes.notify()
        return sent.future

    def pending(self) -> list[SentBatch]:
        """Batches sent and not acknowledged (nor failed) yet."""
        return [sent for sent in self.batches if not sent.future.done()]

    def sent_values(self) -> list[bytes]:
        """Values of every record handed over, acknowledged or not."""
        return [value for sent in self.batches for _, value in sent.records]

    def ack_all(self) -> None:
        """The broker acknowledges everything sent so far."""
        for sent in self.pending():
            self.ack(sent)

    def fail_all(self, error: KafkaError) -> None:
        """The producer gives up on everything sent and not acknowledged so far."""
        for sent in self.pending():
            self.fail(sent, error)

    def ack(self, sent: SentBatch) -> None:
        base = sum(1 for record in self.acknowledged if record[:2] == (sent.topic, sent.partition))
        metadata = RecordMetadata(
            sent.topic, sent.partition, TopicPartition(sent.topic, sent.partition), base, None, 0, None
        )
        sent.future.set_result(metadata)
        self.acknowledged.extend((sent.topic, sent.partition, key, value) for key, value in sent.records)
        self._changes.notify()

    def fail(self, sent: SentBatch, error: KafkaError) -> None:
        """The producer gave up on ``sent`` (after its own retries)."""
        sent.future.set_exception(error)
        self._changes.notify()
