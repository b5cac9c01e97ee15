"""``moderation-worker topics create``: every topic with its configuration; running it twice is harmless.

The broker's CreateTopics answer, not its (possibly stale) topic list, decides "created" or "exists".
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from worker.errors import ConfigurationError
from worker.kafka.topics import create_topics
from worker.settings import Settings

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, prefix: str, *, replication: int = 1) -> Settings:
    env = {
        "MODERATION_BOOTSTRAP_SERVERS": bootstrap,
        "MODERATION_TOPIC_PARTITIONS": "3",
        "MODERATION_TOPIC_REPLICATION": str(replication),
        "MODERATION_RESULT_RETENTION_MS": "3600000",
    }
    for name, suffix in (
        ("INPUT_TOPIC", "submitted"),
        ("APPROVED_TOPIC", "approved"),
        ("REVIEW_TOPIC", "needs-review"),
        ("REJECTED_TOPIC", "rejected"),
        ("DEAD_LETTER_TOPIC", "dead-letter"),
        ("CONTROL_TOPIC", "control"),
    ):
        env[f"MODERATION_{name}"] = prefix + suffix
    return Settings.from_env(env, need_analyzer=False)


async def test_topics_are_created_once_with_their_configuration(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """First run creates six topics, the second finds them; partitions, retention and compaction are set."""
    settings = _settings(kafka_bootstrap, topic_prefix)
    first = await create_topics(settings)
    second = await create_topics(settings)

    names = [settings.input_topic, *settings.output_topics, settings.control_topic]
    assert dict.fromkeys(names, "created") == first
    assert dict.fromkeys(names, "exists") == second
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {topic["topic"]: len(topic["partitions"]) for topic in await admin.describe_topics(names)}
        configs = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name)
                for name in (settings.input_topic, settings.control_topic)
            ]
        )
    finally:
        await admin.close()
    values = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in configs
        for resource in response.resources
    }
    assert dict.fromkeys(names[:-1], 3) | {settings.control_topic: 1} == described
    assert "3600000" == values[settings.input_topic]["retention.ms"]
    assert "compact" == values[settings.control_topic]["cleanup.policy"]


async def test_concurrent_runs_report_each_topic_created_by_exactly_one_of_them(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Two replicas' init containers racing: whichever request the controller takes first creates a topic,
    the other is told it exists, whatever either run's topic list showed."""
    settings = _settings(kafka_bootstrap, topic_prefix)
    first, second = await asyncio.gather(create_topics(settings), create_topics(settings))

    names = [settings.input_topic, *settings.output_topics, settings.control_topic]
    assert dict.fromkeys(names, ("created", "exists")) == {
        name: tuple(sorted([first[name], second[name]])) for name in names
    }


async def test_a_topic_the_broker_refuses_is_a_configuration_error_naming_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """More replicas than the cluster has brokers: the error names each topic and the broker's cause."""
    settings = _settings(kafka_bootstrap, topic_prefix, replication=99)

    with pytest.raises(ConfigurationError) as raised:
        await create_topics(settings)

    assert f"{settings.control_topic}: INVALID_REPLICATION_FACTOR" in str(raised.value)
