"""Kafka helpers for tests: create topics, produce many records, read a topic back to its end or till idle."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

POLL_MS = 100


async def create_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create ``names`` and return once every partition has a leader, so the first produce does not retry.

    Raises ``RuntimeError`` naming the topics the broker refused (including ones that already exist).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(timeout_s):
            new_topics = [
                NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))
                for name in names
            ]
            response = await admin.create_topics(new_topics)
            refused = {entry[0]: entry[1] for entry in response.topic_errors if entry[1] != 0}
            if refused:
                raise RuntimeError(f"the broker refused to create topics (name: Kafka error code): {refused}")
            # Polling: the broker offers no notification when a new partition gets its leader.
            while True:
                if _all_led(await admin.describe_topics(list(names)), partitions):
                    return
                await asyncio.sleep(POLL_MS / 1000)
    finally:
        await admin.close()


def _all_led(described: list[dict[str, Any]], partitions: int) -> bool:
    return all(
        topic["error_code"] == 0
        and len(topic["partitions"]) == partitions
        and all(partition["leader"] >= 0 for partition in topic["partitions"])
        for topic in described
    )


async def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], *, partition: int | None = None
) -> list[RecordMetadata]:
    """Send ``(key, value)`` records with ``acks=all`` and idempotence; return the broker's acknowledgements.

    Every returned ``RecordMetadata`` is a record the broker acknowledged, in the order of ``records``.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key, partition=partition) for key, value in records]
        return list(await asyncio.gather(*pending))
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None,
    idle_s: float,
    timeout_s: float = 60.0,
    isolation_level: str = "read_uncommitted",
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from its start, with no group, until ``expected`` records or ``idle_s`` of silence.

    For output that is still being produced. Stops at ``timeout_s`` in any case and returns what it has, so a
    test compares counts rather than hanging; pass ``expected=None`` to also see records beyond a count.
    Records come back ordered by (partition, offset).
    """
    consumer = await _start_reader(bootstrap, topic, isolation_level)
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last_record_at = loop.time()
    try:
        while loop.time() < deadline and loop.time() - last_record_at < idle_s:
            batch = await consumer.getmany(timeout_ms=POLL_MS)
            for partition_records in batch.values():
                records.extend(partition_records)
                last_record_at = loop.time()
            if expected is not None and len(records) >= expected:
                break
    finally:
        await consumer.stop()
    return sorted(records, key=lambda record: (record.partition, record.offset))


async def read_to_end(
    bootstrap: str, topic: str, *, timeout_s: float = 60.0, isolation_level: str = "read_uncommitted"
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every record of ``topic`` up to the end offsets seen at the start; ordered by (partition, offset).

    For topics nobody writes to any more: it needs no idle wait. With ``read_committed`` the end is the last
    stable offset. Raises ``TimeoutError`` when the end is not reached within ``timeout_s``.
    """
    consumer = await _start_reader(bootstrap, topic, isolation_level)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            partitions = sorted(consumer.assignment())
            end_offsets = await consumer.end_offsets(partitions)
            while any([await consumer.position(tp) < end_offsets[tp] for tp in partitions]):
                batch = await consumer.getmany(timeout_ms=POLL_MS)
                for partition_records in batch.values():
                    records.extend(partition_records)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda record: (record.partition, record.offset))


async def _start_reader(bootstrap: str, topic: str, isolation_level: str) -> AIOKafkaConsumer:
    """A group-less consumer assigned every partition of ``topic``, positioned at the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    try:
        partition_ids = await _partitions_of(bootstrap, topic)
        partitions = [TopicPartition(topic, partition) for partition in sorted(partition_ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _partitions_of(bootstrap: str, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise RuntimeError(f"cannot read topic {topic!r}: Kafka error code {described['error_code']}")
    return {partition["partition"] for partition in described["partitions"]}
