"""An in-memory ``worker.kafka.outbox.Producer``: an ``acks=all`` producer whose acknowledgements the test
gives (``ack``, ``fail``), or that acknowledges at once (``auto_ack``).

As ``AIOKafkaProducer.send``: the partition comes from aiokafka's ``DefaultPartitioner`` over the topic's
partitions, an unknown topic fails with ``KafkaTimeoutError`` (no metadata), and the returned future
resolves when the broker acknowledges the record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from tests.component.fake_consumer import Changes

RESULTS = "images.approved"
"""The result topic the fake producer knows."""
SIDE = "images.review-audit"
"""The side-record topic it knows (records produced alongside a result)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One record handed to the producer, and the future the producer resolves when the broker acks it."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    future: asyncio.Future[RecordMetadata]


class FakeProducer:
    """Takes records for ``RESULTS`` and ``SIDE`` (``partitions`` partitions each); acknowledges them as the
    test says."""

    def __init__(self, changes: Changes, *, partitions: int = 3, auto_ack: bool = True) -> None:
        self._changes = changes
        self._partitions = list(range(partitions))
        self._partitioner = DefaultPartitioner()
        self.auto_ack = auto_ack
        self.sent: list[Sent] = []
        """Every record handed over, in that order."""
        self.acknowledged: list[Sent] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        assert value is not None or key is not None, "Need at least one: key or value"
        assert headers is None or isinstance(headers, list), "the record builder takes a list of headers"
        if topic not in (RESULTS, SIDE):
            raise KafkaTimeoutError(f"no metadata for {topic} within request_timeout_ms")
        partition: int = self._partitioner(key, self._partitions, self._partitions)
        sent = Sent(topic, partition, key, value, asyncio.get_running_loop().create_future())
        self.sent.append(sent)
        if self.auto_ack:
            self.ack(sent)
        self._changes.notify()
        return sent.future

    def pending(self) -> list[Sent]:
        """Records handed over and neither acknowledged nor failed yet."""
        return [sent for sent in self.sent if not sent.future.done()]

    def sent_values(self) -> list[bytes | None]:
        """Values of every record handed over, acknowledged or not."""
        return [sent.value for sent in self.sent]

    def ack(self, sent: Sent) -> None:
        """The broker acknowledges ``sent``."""
        offset = sum(1 for done in self.acknowledged if done.partition == sent.partition)
        tp = TopicPartition(sent.topic, sent.partition)
        sent.future.set_result(RecordMetadata(sent.topic, sent.partition, tp, offset, None, 0, None))
        self.acknowledged.append(sent)
        self._changes.notify()

    def fail(self, sent: Sent, error: KafkaError) -> None:
        """The producer gives up on ``sent`` (after its own retries)."""
        sent.future.set_exception(error)
        self._changes.notify()

    def ack_all(self) -> None:
        """The broker acknowledges everything handed over so far."""
        for sent in self.pending():
            self.ack(sent)

    def fail_all(self, error: KafkaError) -> None:
        """The producer gives up on everything handed over and not acknowledged so far."""
        for sent in self.pending():
            self.fail(sent, error)
