"""``moderation-worker topics create``: the input, three result, dead-letter and control topics, and the
topics of the features that are on (audit, shadow results, analyses, hash banks, analysis cache).

Idempotent: topics that exist are reported and left as they are (never reconfigured).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from worker.errors import ConfigurationError
from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings

_NO_ERROR: Final = 0


def topic_specs(settings: Settings) -> list[NewTopic]:
    """What to create: data topics keep ``result_retention_ms``; the control topic, and the hash-bank and
    analysis-cache topics when they are on, are compacted; the audit, shadow-results and analyses topics
    only when their feature is on, analyses with their own retention."""
    replication = settings.topic_replication
    retention = {"retention.ms": str(settings.result_retention_ms)}
    specs = [NewTopic(settings.input_topic, settings.topic_partitions, replication, topic_configs=retention)]
    specs += [
        NewTopic(name, settings.topic_partitions, replication, topic_configs=retention)
        for name in settings.output_topics
    ]
    if settings.audit_approved_rate > 0 or settings.audit_rejected_rate > 0:  # audit sampling is on
        specs.append(
            NewTopic(settings.audit_topic, settings.topic_partitions, replication, topic_configs=retention)
        )
    compacted = {"cleanup.policy": "compact"}
    specs.append(NewTopic(settings.control_topic, 1, replication, topic_configs=compacted))
    if settings.shadow_topic is not None:  # shadow results live as long as the results they shadow
        specs.append(
            NewTopic(settings.shadow_topic, settings.topic_partitions, replication, topic_configs=retention)
        )
    if settings.analyses_topic is not None:  # full analyses: a retention of their own (docs/replay.md)
        kept = {"retention.ms": str(settings.analyses_retention_ms)}
        specs.append(
            NewTopic(settings.analyses_topic, settings.topic_partitions, replication, topic_configs=kept)
        )
    if settings.hash_banks_from_topic:  # known content (docs/known-content.md): read whole by every replica
        specs.append(NewTopic(settings.hash_banks_topic, 1, replication, topic_configs=compacted))
    if settings.analysis_cache_shared:  # entries older than the TTL are of no use: deleted as well
        cache = {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(settings.analysis_cache_ttl_s * 1000)),
        }
        specs.append(
            NewTopic(
                settings.analysis_cache_topic, settings.topic_partitions, replication, topic_configs=cache
            )
        )
    return specs


async def create_topics(settings: Settings) -> dict[str, str]:
    """Create every topic that does not exist yet; returns ``{topic: "created" | "exists"}`` in spec order.

    The topic list only spares the request when every topic is listed; for the rest the broker's CreateTopics
    answer decides (``creation_outcomes``), because the list can miss a topic that exists: a broker's metadata
    lags what its controller has committed, and another replica may be creating the same topics right now.
    Raises ``ConfigurationError`` when the broker refuses a topic for any other reason.
    Connects as the worker does (``open_cluster``: waits for the cluster, raises ``KafkaConnectionFailed``).
    """
    return await create_missing(settings, topic_specs(settings), client_id="moderation-topics")


async def create_missing(settings: Settings, specs: list[NewTopic], *, client_id: str) -> dict[str, str]:
    """Create those of ``specs`` that do not exist yet, as ``create_topics`` describes; every command that
    creates topics (``topics create``, ``review --create-topics``) goes through here."""
    async with open_cluster(settings) as options:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            **options.client_kwargs(),
        )
        try:
            await start_explained(admin.start, settings.bootstrap_servers, settings.kafka_security(), options)
            listed = set(await admin.list_topics())
            missing = [spec for spec in specs if spec.name not in listed]
            answers: dict[str, tuple[int, str | None]] = {}
            if missing:
                response = await admin.create_topics(missing)
                # entries are (topic, error_code, error_message); version 0 of the response has no message
                answers = {
                    entry[0]: (entry[1], entry[2] if len(entry) > 2 else None)
                    for entry in response.topic_errors
                }
        finally:
            await admin.close()
    return creation_outcomes([spec.name for spec in specs], listed, answers)


def creation_outcomes(
    names: Sequence[str], listed: Collection[str], answers: Mapping[str, tuple[int, str | None]]
) -> dict[str, str]:
    """``{name: "created" | "exists"}`` from the topic list and the broker's ``(code, message)`` answers.

    A listed topic exists. For the others, code 0 means this request created the topic and
    ``TOPIC_ALREADY_EXISTS`` that it exists (created earlier, or by a concurrent request). Any other code,
    or no answer for a topic, raises ``ConfigurationError`` naming every refused topic with its Kafka error
    and the broker's message. The command is idempotent: after fixing the cause, or for a retriable error
    such as ``REQUEST_TIMED_OUT``, running it again is safe.
    """
    outcomes: dict[str, str] = {}
    refused: list[str] = []
    for name in names:
        if name in listed:
            outcomes[name] = "exists"
        elif name not in answers:
            refused.append(f"{name}: the broker's answer does not mention it")
        elif (code := answers[name][0]) == _NO_ERROR:
            outcomes[name] = "created"
        elif code == TopicAlreadyExistsError.errno:
            outcomes[name] = "exists"
        else:
            refused.append(f"{name}: {for_code(code).message} ({answers[name][1] or 'no message'})")
    if refused:
        raise ConfigurationError("the broker refused to create topics: " + "; ".join(refused))
    return outcomes
