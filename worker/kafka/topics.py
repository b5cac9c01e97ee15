"""``moderation-worker topics create``: the input, three result, dead-letter and control topics.

Idempotent: topics that exist are left as they are (their partition count is reported, never changed).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings


def topic_specs(settings: Settings) -> list[NewTopic]:
    """What to create: data topics keep ``result_retention_ms``; the control topic is compacted."""
    replication = settings.topic_replication
    retention = {"retention.ms": str(settings.result_retention_ms)}
    specs = [NewTopic(settings.input_topic, settings.topic_partitions, replication, topic_configs=retention)]
    specs += [
        NewTopic(name, settings.topic_partitions, replication, topic_configs=retention)
        for name in settings.output_topics
    ]
    specs.append(
        NewTopic(settings.control_topic, 1, replication, topic_configs={"cleanup.policy": "compact"})
    )
    return specs


async def create_topics(settings: Settings) -> dict[str, str]:
    """Create every topic that does not exist yet; returns ``{topic: "created" | "exists"}``.

    Connects as the worker does (``open_cluster``: waits for the cluster, raises ``KafkaConnectionFailed``).
    """
    async with open_cluster(settings) as options:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            client_id="moderation-topics",
            **options.client_kwargs(),
        )
        try:
            await start_explained(admin.start, settings.bootstrap_servers, settings.kafka_security(), options)
            return await _create_missing(admin, settings)
        finally:
            await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, settings: Settings) -> dict[str, str]:
    existing = set(await admin.list_topics())
    missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
    outcome = {spec.name: "exists" for spec in topic_specs(settings) if spec.name in existing}
    for spec in missing:
        try:
            await admin.create_topics([spec])
            outcome[spec.name] = "created"
        except TopicAlreadyExistsError:  # another replica's init container won the race
            outcome[spec.name] = "exists"
    return outcome
