"""The analysis cache at work: concurrent arrivals of one new image cost one call, a repeat costs none,
and an analysis made on one replica decides on another through the cache topic of a real broker - every
call counted at the vision emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import NewTopics
from tests.integration.content_harness import fetch_mode_moderator, image_store, jpeg, moderate
from worker.content.bank_source import follow_compacted_topic
from worker.content.cache import AnalysisCache
from worker.dev.emulator.server import Emulator
from worker.dev.tlsfiles import Certificate, HttpsFileServer
from worker.kafka.security import ConnectionOptions
from worker.kafka_settings import SecurityProtocol

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
VERSION = "azure:tags"


class ObservedCache(AnalysisCache):
    """An ``AnalysisCache`` whose ``apply`` sets ``received`` once a record was kept."""

    def __init__(self) -> None:
        super().__init__(max_entries=100, ttl_s=3600.0, version=VERSION)
        self.received = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        kept = super().apply(key, value)
        if kept:
            self.received.set()
        return kept


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[HttpsFileServer, Certificate]]:
    """The image store, with one photo-sized image."""
    async with image_store(tmp_path, {"product.jpg": jpeg((30, 120, 200), (640, 480))}) as served:
        yield served


async def test_concurrent_arrivals_of_a_new_image_make_one_call(
    emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """Eight submissions of the same new image at once, then one more: one analyzer call in all."""
    server, certificate = store
    cache = AnalysisCache(max_entries=100, ttl_s=3600.0, version=VERSION)
    async with fetch_mode_moderator(emulator.endpoint, certificate, cache=cache) as moderator:
        url = server.url_for("product.jpg")
        first = await asyncio.gather(*(moderate(moderator, url, offset) for offset in range(8)))
        _, later = await moderate(moderator, url, 8)
    sources = sorted(document["analysis_source"] for _, document in first)
    assert (1, ["analyzer"] + ["cache"] * 7, "cache") == (
        emulator.stats.calls_total,
        sources,
        later["analysis_source"],
    )
    assert len({routed.topic for routed, _ in first}) == 1


async def test_an_analysis_made_on_one_replica_decides_on_another(
    emulator: Emulator,
    store: tuple[HttpsFileServer, Certificate],
    kafka_bootstrap: str,
    new_topics: NewTopics,
) -> None:
    """Replica A analyzes the image and sends the analysis with its result to the cache topic (as the
    outbox sends side records); replica B, following the topic, decides the same image with no call."""
    server, certificate = store
    [topic] = await new_topics("analysis-cache")
    url = server.url_for("product.jpg")
    receiver = ObservedCache()
    follower = asyncio.create_task(
        follow_compacted_topic(
            kafka_bootstrap, topic, receiver, options=ConnectionOptions(SecurityProtocol.PLAINTEXT)
        )
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sender = AnalysisCache(max_entries=100, ttl_s=3600.0, version=VERSION)
        async with fetch_mode_moderator(
            emulator.endpoint, certificate, cache=sender, cache_topic=topic
        ) as replica_a:
            routed_a, document_a = await moderate(replica_a, url, 0)
        for side in routed_a.side:
            await producer.send_and_wait(side.topic, side.value, key=side.key, headers=list(side.headers))
        async with asyncio.timeout(DEADLINE_S):
            await receiver.received.wait()
        async with fetch_mode_moderator(
            emulator.endpoint, certificate, cache=receiver, cache_topic=topic
        ) as replica_b:
            routed_b, document_b = await moderate(replica_b, url, 1)
    finally:
        await producer.stop()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert ([topic], "analyzer", "cache", 1) == (
        [side.topic for side in routed_a.side],
        document_a["analysis_source"],
        document_b["analysis_source"],
        emulator.stats.calls_total,
    )
    assert (routed_a.topic, document_a["model_version"], routed_b.side) == (
        routed_b.topic,
        document_b["model_version"],
        (),
    )
