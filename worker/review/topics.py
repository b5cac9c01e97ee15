"""``moderation-worker review --create-topics``: the console's own topics, created when missing.

The review-decision log, the leads' escalation queue and the audit queue, with the worker's partition count,
replication and retention (``MODERATION_TOPIC_*``, ``MODERATION_RESULT_RETENTION_MS``). Idempotent, and as
strict as ``topics create`` about the broker's answers (``worker.kafka.topics.creation_outcomes``).
"""

from __future__ import annotations

from aiokafka.admin import NewTopic

from worker.kafka.topics import create_missing
from worker.review.settings import ReviewSettings
from worker.settings import Settings


def review_topic_specs(settings: Settings, review: ReviewSettings) -> list[NewTopic]:
    """The decisions, escalation and audit topics, shaped like the worker's data topics."""
    retention = {"retention.ms": str(settings.result_retention_ms)}
    names = (review.decisions_topic, review.escalated_topic, review.audit_topic)
    return [
        NewTopic(name, settings.topic_partitions, settings.topic_replication, topic_configs=retention)
        for name in names
    ]


async def create_review_topics(settings: Settings, review: ReviewSettings) -> dict[str, str]:
    """Create the missing ones; ``{topic: "created" | "exists"}``. ``ConfigurationError`` when the broker
    refuses one; connects as every command does (``open_cluster``)."""
    specs = review_topic_specs(settings, review)
    return await create_missing(settings, specs, client_id="moderation-review-topics")
