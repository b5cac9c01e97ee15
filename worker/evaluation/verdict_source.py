"""Review decisions from Kafka: ``images.review-decisions`` read from its start to its end, then stop.

The end is the end offsets seen when reading starts, so a topic still being written still finishes. No
consumer group (nothing is committed; the console's own consumers are untouched). Connects as the worker
does (``worker.kafka.startup.open_cluster``: the MODERATION_KAFKA_* security settings, waiting for the
cluster, ``KafkaConnectionFailed`` naming the cause). A record that is not a usable verdict is skipped and
counted, never fatal: one bad producer must not hide every other reviewer's work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.errors import ConfigurationError
from worker.evaluation.verdicts import ReviewVerdict, VerdictError, parse_verdict
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings

log = logging.getLogger(__name__)
_POLL_MS = 500


@dataclass(frozen=True, slots=True)
class TopicVerdicts:
    """The verdicts read, in (partition, offset) order, and how many records were skipped as unusable."""

    verdicts: tuple[ReviewVerdict, ...]
    skipped: int


async def read_verdict_topic(settings: Settings, topic: str, *, timeout_s: float = 300.0) -> TopicVerdicts:
    """Every usable verdict on ``topic`` up to its end offsets at the start.

    Raises ``ConfigurationError`` when the topic does not exist, ``KafkaConnectionFailed`` when the
    cluster cannot be used, ``TimeoutError`` when the end is not reached within ``timeout_s``.
    """
    async with open_cluster(settings) as options:
        partitions = await _partitions(settings, options, topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options.client_kwargs(),
        )
        try:  # stop() also after a failed start(): it closes what start() opened
            await start_explained(
                consumer.start, settings.bootstrap_servers, settings.kafka_security(), options
            )
            async with asyncio.timeout(timeout_s):
                return await _read_to_end(consumer, topic, partitions)
        finally:
            await consumer.stop()


async def _partitions(settings: Settings, options: ConnectionOptions, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` from the cluster's metadata; ``ConfigurationError`` if it has none."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="moderation-calibrate",
        **options.client_kwargs(),
    )
    try:
        await start_explained(admin.start, settings.bootstrap_servers, settings.kafka_security(), options)
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(entry["partition"] for entry in described.get("partitions") or ())
    if described.get("error_code") or not numbers:
        raise ConfigurationError(f"topic {topic} does not exist: no review decision has been written yet")
    return [TopicPartition(topic, number) for number in numbers]


async def _read_to_end(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[TopicPartition]
) -> TopicVerdicts:
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    end = await consumer.end_offsets(partitions)
    records: list[ConsumerRecord[bytes, bytes]] = []
    while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        batch = await consumer.getmany(*partitions, timeout_ms=_POLL_MS)
        for tp, batch_records in batch.items():
            records.extend(record for record in batch_records if record.offset < end[tp])
    records.sort(key=lambda record: (record.partition, record.offset))
    verdicts, skipped = [], 0
    for record in records:
        where = f"{topic}/{record.partition}@{record.offset}"
        try:
            verdicts.append(parse_verdict(orjson.loads(record.value or b"null"), where))
        except (orjson.JSONDecodeError, VerdictError) as exc:
            skipped += 1
            log.warning("review_decision_unusable", extra={"where": where, "problem": str(exc)[:200]})
    return TopicVerdicts(tuple(verdicts), skipped)
