"""The demo's traffic: the sample submissions it publishes as a producer would, and the outputs it reads back.

The worker under demonstration sees nothing special: https URLs, keyed records, the usual topics.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from worker.dev.demo.report import ROUTES, Outcome, outcome_from_record
from worker.settings import Settings

SUBMISSION_SOURCE = "demo"
CONSENT_PURPOSE = "content_moderation"


@dataclass(frozen=True, slots=True)
class DemoSample:
    """One published submission: its id, the file, its sha256 (to find the tags the model gave it)."""

    image_id: str
    filename: str
    sha256: str
    expected: str | None


def write_demo_samples(directory: Path) -> list[DemoSample]:
    """Write the bundled sample set into ``directory``; one ``DemoSample`` per image, id ``demo-<stem>``."""
    from worker.dev.demo.samples import write_sample_set  # noqa: PLC0415 - needs Pillow (model extra)

    samples = []
    for sample in write_sample_set(directory):
        digest = hashlib.sha256((directory / sample.filename).read_bytes()).hexdigest()
        expected = str(sample.expected) if sample.expected is not None else None
        samples.append(DemoSample(f"demo-{Path(sample.filename).stem}", sample.filename, digest, expected))
    return samples


def repeated(samples: Sequence[DemoSample], times: int) -> list[DemoSample]:
    """Each sample ``times`` times, round after round; later copies get ids ending ``-r2``, ``-r3``..."""
    return [
        replace(sample, image_id=sample.image_id if round_ == 1 else f"{sample.image_id}-r{round_}")
        for round_ in range(1, times + 1)
        for sample in samples
    ]


def submission(sample: DemoSample, url: str, now: datetime) -> bytes:
    """The ``image-submitted.v1`` value a producer would send for ``sample`` at ``now``."""
    stamp = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    document = {
        "id": sample.image_id,
        "image": {"url": url},
        "submitted_at": stamp,
        "source": SUBMISSION_SOURCE,
        "metadata": {"file": sample.filename},
        "consent": {"granted": True, "purposes": [CONSENT_PURPOSE], "granted_at": stamp},
    }
    return orjson.dumps(document)


async def publish_submissions(
    settings: Settings, samples: Sequence[DemoSample], url_for: Callable[[str], str]
) -> None:
    """Produce one submission per sample to the input topic, keyed by id, and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        now = datetime.now(UTC)
        sent = [
            await producer.send(
                settings.input_topic,
                submission(sample, url_for(sample.filename), now),
                key=sample.image_id.encode(),
            )
            for sample in samples
        ]
        await asyncio.gather(*sent)  # every record acknowledged by the broker
    finally:
        await producer.stop()


async def watch_outputs(
    settings: Settings, expected_ids: set[str], outcomes: dict[str, Outcome], show: Callable[[], None]
) -> None:
    """Read the four output topics from the start into ``outcomes`` until every expected id is there."""
    route_of = dict(zip(settings.output_topics, ROUTES, strict=True))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in settings.output_topics
            for partition in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not expected_ids <= outcomes.keys():
            batches = await consumer.getmany(timeout_ms=100)
            for topic_partition, records in batches.items():
                for record in records:
                    outcome = outcome_from_record(route_of[topic_partition.topic], record.key, record.value)
                    outcomes[outcome.image_id] = outcome
            show()
    finally:
        await consumer.stop()


async def scrape_results(metrics_url: str) -> str:
    """The worker's ``moderation_results_total`` lines, read over HTTP as Prometheus would."""
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(metrics_url) as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"could not read {metrics_url}: {type(exc).__name__}"
    lines = [line for line in text.splitlines() if line.startswith("moderation_results_total{")]
    return f"scraped {metrics_url}:\n  " + "\n  ".join(lines)
