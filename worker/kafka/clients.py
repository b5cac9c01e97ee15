"""The worker's Kafka clients: a manual-commit consumer and an idempotent ``acks=all`` producer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.settings import Settings


@asynccontextmanager
async def kafka_clients(settings: Settings) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaProducer]]:
    """A manual-commit consumer and an idempotent ``acks=all`` producer, started and stopped together."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        client_id=f"moderation-worker-{os.getpid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.max_in_flight,
        fetch_max_bytes=16 * 1024 * 1024,
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
        compression_type=None,
    )
    # Both are stopped however start-up ends: stop() closes what the constructor or a failed start() opened.
    try:
        try:
            await producer.start()
            await consumer.start()
            yield consumer, producer
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
