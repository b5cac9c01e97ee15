"""The worker's Kafka clients: a manual-commit consumer and an idempotent ``acks=all`` producer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import start_explained
from worker.settings import Settings


def compression_codec(settings: Settings) -> str | None:
    """aiokafka's ``compression_type`` for ``MODERATION_KAFKA_COMPRESSION_TYPE`` (``none`` is None)."""
    codec = settings.kafka_compression_type
    return None if codec == "none" else codec


@asynccontextmanager
async def kafka_clients(
    settings: Settings, options: ConnectionOptions
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaProducer]]:
    """A manual-commit consumer and an idempotent ``acks=all`` producer, started and stopped together.

    Both connect with ``options`` (``worker.kafka.startup.open_cluster``). A failed start raises the
    classified ``KafkaConnectionFailed`` (``start_explained``).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        client_id=f"moderation-worker-{os.getpid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.max_in_flight,
        fetch_max_bytes=16 * 1024 * 1024,
        **options.client_kwargs(),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        # aiokafka wakes every sender waiting on a full batch when it drains and most of them find the next
        # one full again: at the 16 KiB default, a few hundred results in flight were woken ~7 times each
        # (docs/benchmarks.md). 512 KiB stays well under the broker's 1 MiB message limit.
        max_batch_size=512 * 1024,
        compression_type=compression_codec(settings),
        **options.client_kwargs(),
    )
    security = settings.kafka_security()
    # Both are stopped however start-up ends: stop() closes what the constructor or a failed start() opened.
    try:
        try:
            await start_explained(producer.start, settings.bootstrap_servers, security, options)
            await start_explained(consumer.start, settings.bootstrap_servers, security, options)
            yield consumer, producer
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
