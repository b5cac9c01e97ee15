"""The outbox against a real broker: every record acknowledged once, in the partition its key gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerClosed

from tests.fixtures.kafka import NewTopics
from tests.kafka_helpers import produce_all, read_to_end
from worker.kafka.outbox import Acknowledged, Outbox

pytestmark = pytest.mark.integration

HEADERS = [("moderation-decision", b"approved"), ("content-type", b"application/json")]


class Reports:
    """Collects the outbox's reports, one list entry per call, and says when ``expected`` have arrived."""

    def __init__(self, expected: int) -> None:
        self.by_index: dict[int, list[BaseException | None]] = {}
        self._expected = expected
        self.complete = asyncio.Event()

    def for_record(self, index: int) -> Acknowledged:
        def acknowledged(error: BaseException | None) -> None:
            self.by_index.setdefault(index, []).append(error)
            if sum(map(len, self.by_index.values())) >= self._expected:
                self.complete.set()

        return acknowledged


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """The worker's producer settings, with 16 KiB batches so a few hundred records need several."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, max_batch_size=16 * 1024
    )
    await producer.start()
    yield producer
    await producer.stop()


async def test_each_record_is_acknowledged_once_in_its_keys_partition_in_send_order(
    kafka_bootstrap: str, new_topics: NewTopics, producer: AIOKafkaProducer
) -> None:
    """600 records of 1 KiB over 3 partitions (several batches each): all land, in the partition that
    ``AIOKafkaProducer.send`` picks for the same key, in the order they were queued, with their headers."""
    reference_topic, topic = await new_topics("reference", "outbox", partitions=3)
    records = [(f"img-{index:05d}".encode(), f"{index:05d}".encode() * 200) for index in range(600)]
    reference = await produce_all(kafka_bootstrap, reference_topic, records)
    reports = Reports(len(records))
    outbox = Outbox(producer)

    for index, (key, value) in enumerate(records):
        outbox.send(topic, key, value, HEADERS, reports.for_record(index))
    await asyncio.wait_for(reports.complete.wait(), 30)
    landed = await read_to_end(kafka_bootstrap, topic)

    assert {index: [None] for index in range(len(records))} == reports.by_index
    expected_partition = {key: ack.partition for (key, _), ack in zip(records, reference, strict=True)}
    assert expected_partition == {record.key: record.partition for record in landed}
    assert [record.value for record in sorted(landed, key=lambda r: r.key or b"")] == [v for _, v in records]
    for partition in range(3):
        keys = [record.key for record in landed if record.partition == partition]
        assert sorted(keys, key=lambda key: key or b"") == keys  # queued in key order, landed in it
    assert all(list(record.headers) == HEADERS for record in landed)


async def test_records_queued_for_several_topics_each_reach_their_own(
    kafka_bootstrap: str, new_topics: NewTopics, producer: AIOKafkaProducer
) -> None:
    """Interleaved records for two topics (one keyless, as a dead letter can be) are routed apart."""
    first, second = await new_topics("first", "second", partitions=2)
    reports = Reports(40)
    outbox = Outbox(producer)

    for index in range(40):
        topic, key = (first, f"k{index}".encode()) if index % 2 else (second, None)
        outbox.send(topic, key, f"v{index}".encode(), [], reports.for_record(index))
    await asyncio.wait_for(reports.complete.wait(), 30)

    assert {f"v{index}".encode() for index in range(1, 40, 2)} == {
        record.value for record in await read_to_end(kafka_bootstrap, first)
    }
    assert {f"v{index}".encode() for index in range(0, 40, 2)} == {
        record.value for record in await read_to_end(kafka_bootstrap, second)
    }


async def test_a_stopped_producer_fails_each_record_with_its_kafka_error(
    kafka_bootstrap: str, new_topics: NewTopics
) -> None:
    """The producer is gone: every record is reported once, with the ``KafkaError`` that lost it."""
    (topic,) = await new_topics("closed")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    await producer.partitions_for(topic)  # metadata known, so the failure is the closed producer's
    await producer.stop()
    reports = Reports(3)
    outbox = Outbox(producer)

    for index in range(3):
        outbox.send(topic, b"k", b"v", [], reports.for_record(index))
    await asyncio.wait_for(reports.complete.wait(), 30)

    assert [0, 1, 2] == sorted(reports.by_index)
    errors = [error for errors in reports.by_index.values() for error in errors]
    assert len(errors) == 3
    assert all(isinstance(error, ProducerClosed) and isinstance(error, KafkaError) for error in errors)


async def test_closing_reports_records_not_yet_handed_over_as_cancelled(
    new_topics: NewTopics, producer: AIOKafkaProducer
) -> None:
    """Records queued but not handed to the producer when the outbox closes are reported cancelled, once."""
    (topic,) = await new_topics("abandoned")
    reports = Reports(5)
    outbox = Outbox(producer)

    for index in range(5):
        outbox.send(topic, b"k", b"v", [], reports.for_record(index))
    await outbox.aclose()  # before the flusher ran even once

    assert [0, 1, 2, 3, 4] == sorted(reports.by_index)
    assert all(
        len(errors) == 1 and isinstance(errors[0], asyncio.CancelledError)
        for errors in reports.by_index.values()
    )


async def test_a_record_the_producer_refuses_is_reported_with_its_error_and_the_others_are_produced(
    kafka_bootstrap: str, new_topics: NewTopics, producer: AIOKafkaProducer
) -> None:
    """A record the producer refuses (a str value: a defect upstream) is reported once, with that error, so
    the pipeline stops for it; the records queued around it are still produced and acknowledged."""
    (topic,) = await new_topics("refused")
    reports = Reports(4)
    outbox = Outbox(producer)

    outbox.send(topic, b"k0", b"fine", [], reports.for_record(0))
    outbox.send(topic, b"k1", "not bytes", [], reports.for_record(1))  # type: ignore[arg-type]
    outbox.send(topic, b"k2", b"fine", [], reports.for_record(2))
    outbox.send(topic, b"k3", b"fine", [], reports.for_record(3))
    await asyncio.wait_for(reports.complete.wait(), 30)

    [refused] = reports.by_index[1]
    assert isinstance(refused, TypeError)
    assert {0: [None], 2: [None], 3: [None]} == {index: reports.by_index[index] for index in (0, 2, 3)}
    assert [b"k0", b"k2", b"k3"] == sorted(
        record.key or b"" for record in await read_to_end(kafka_bootstrap, topic)
    )


async def test_headers_of_any_sequence_type_are_produced(
    kafka_bootstrap: str, new_topics: NewTopics, producer: AIOKafkaProducer
) -> None:
    """A tuple of headers (as the moderator caches them) is produced like a list."""
    (topic,) = await new_topics("tuple-headers")
    reports = Reports(1)
    outbox = Outbox(producer)

    outbox.send(topic, b"k", b"v", tuple(HEADERS), reports.for_record(0))
    await asyncio.wait_for(reports.complete.wait(), 30)

    assert {0: [None]} == reports.by_index
    [landed] = await read_to_end(kafka_bootstrap, topic)
    assert HEADERS == list(landed.headers)
