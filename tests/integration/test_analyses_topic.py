"""The opt-in analyses topic against the real broker and the emulator: one ``analysis.v1`` record per analyzed
image with every tag the analyzer reported, never on the four result topics; ``topics create`` gives the
topic a retention of its own."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import create_topics, produce_all, read_all
from tests.pipeline_harness import (
    EXPECTED_ROUTE,
    IMAGE_HOST,
    ROUTES,
    SCRIPTS,
    Topics,
    worker_environment,
    worker_settings,
)
from worker.contracts import Contracts, SchemaName
from worker.dev.emulator.server import Emulator
from worker.kafka.topics import create_topics as topics_create
from worker.runner import EXIT_OK, run_worker
from worker.settings import Settings

pytestmark = pytest.mark.integration

KINDS = ("approved", "rejected", "review", "broken")


async def test_each_analyzed_image_has_one_full_analysis_record_on_its_own_topic_only(
    kafka_bootstrap: str, topic_prefix: str, group_id: str, scripted_emulator: Emulator
) -> None:
    """Every tag with its confidence, the published decision, a redacted URL; the result topics still hold
    exactly one result per id and no analysis document; a refused image has no analysis."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=2)
    analyses_topic = topic_prefix + "analyses"
    await create_topics(kafka_bootstrap, [analyses_topic], 2)
    env = worker_environment(
        kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY, analyses_topic=analyses_topic
    )
    kinds = {f"{kind}-{index}": kind for kind in KINDS for index in range(2)}
    records = [
        (
            image_id.encode(),
            orjson.dumps({"id": image_id, "image": {"url": f"{IMAGE_HOST}/{kind}.jpg?sv=1&sig=SECRET"}}),
        )
        for image_id, kind in kinds.items()
    ]
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry()))
    await produce_all(kafka_bootstrap, topics.input, records)
    analyzed = [image_id for image_id, kind in kinds.items() if kind != "broken"]
    analyses = await read_all(kafka_bootstrap, analyses_topic, expected=len(analyzed), idle_s=30)
    results = {
        route: await read_all(kafka_bootstrap, topics.route(route), expected=None, idle_s=3)
        for route in ROUTES
    }
    stop.set()
    assert EXIT_OK == await worker

    contracts = Contracts.load()
    documents = {record.key: orjson.loads(record.value) for record in analyses}
    published = {
        orjson.loads(record.value)["id"]: orjson.loads(record.value)
        for route_records in results.values()
        for record in route_records
    }
    assert sorted(analyzed) == sorted(document["id"] for document in documents.values())
    assert len(analyses) == len(documents)
    for image_id in analyzed:
        document = documents[image_id.encode()]
        script = SCRIPTS[f"{IMAGE_HOST}/{kinds[image_id]}.jpg"]
        assert isinstance(script, dict)
        assert None is contracts.describe_violation(SchemaName.ANALYSIS, document)
        assert [list(tag) for tag in script["tags"]] == [
            [tag["name"], tag["confidence"]] for tag in document["tags"]
        ]
        assert published[image_id]["decision"] == document["decision"]
        assert f"{IMAGE_HOST}/{kinds[image_id]}.jpg?<redacted>" == document["image"]["url"]
    assert all(b"SECRET" not in record.value for record in analyses)
    assert {image_id: EXPECTED_ROUTE[kind] for image_id, kind in kinds.items()} == {
        orjson.loads(record.value)["id"]: route
        for route, route_records in results.items()
        for record in route_records
    }
    assert sum(len(route_records) for route_records in results.values()) == len(kinds)
    assert {"moderation-result.v1"} == {
        orjson.loads(record.value)["schema"] for route_records in results.values() for record in route_records
    }


async def test_topics_create_makes_the_analyses_topic_with_a_retention_of_its_own(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """On, the analyses topic keeps ``MODERATION_ANALYSES_RETENTION_MS``; shadow results keep the results'."""
    env = {
        "MODERATION_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MODERATION_TOPIC_PARTITIONS": "2",
        "MODERATION_RESULT_RETENTION_MS": "7200000",
        "MODERATION_ANALYSES_RETENTION_MS": "3600000",
        "MODERATION_ANALYSES_TOPIC": topic_prefix + "analyses",
        "MODERATION_SHADOW_TOPIC": topic_prefix + "shadow-results",
    }
    for name, suffix in (
        ("INPUT_TOPIC", "submitted"),
        ("APPROVED_TOPIC", "approved"),
        ("REVIEW_TOPIC", "needs-review"),
        ("REJECTED_TOPIC", "rejected"),
        ("DEAD_LETTER_TOPIC", "dead-letter"),
        ("CONTROL_TOPIC", "control"),
    ):
        env[f"MODERATION_{name}"] = topic_prefix + suffix
    settings = Settings.from_env(env, need_analyzer=False)

    outcome = await topics_create(settings)

    side = [topic_prefix + "shadow-results", topic_prefix + "analyses"]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in side]
        )
    finally:
        await admin.close()
    retention = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}["retention.ms"]
        for response in configs
        for resource in response.resources
    }
    assert dict.fromkeys(side, "created") == {name: outcome[name] for name in side}
    assert {side[0]: "7200000", side[1]: "3600000"} == retention
