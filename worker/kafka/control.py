"""Run-time control through the compacted ``moderation.control`` topic: following it, reading it, writing it.

Every replica reads the whole control topic (no consumer group, from the beginning) and folds each valid
``control.v1`` record into its ``worker.intervention.ControlState``: hold, pause/resume and the applied
policy take effect on all replicas within a fetch (well under a second). ``follow_control`` sets its
``caught_up`` event once it has read everything that was on the topic when it started, so a replica decides
its first record under the applied policy, not its file policy. ``read_control`` is the command line's
snapshot of the topic; ``publish_control`` writes one record and waits for the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from worker.contracts import Contracts, SchemaName
from worker.errors import ConfigurationError
from worker.intervention import HOLD_KEY, ControlState, hold_command
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings

__all__ = [
    "ControlState",
    "follow_control",
    "hold_command",
    "publish_control",
    "publish_hold",
    "read_control",
]

log = logging.getLogger(__name__)

_POLL_MS = 200
"""How long one poll of the control topic waits for records: bounds how late ``caught_up`` is set."""

_MISSING_TOPIC_RECHECK_S = 5.0
"""How often a replica looks again for a control topic that did not exist when it started."""

ControlDocument = Mapping[str, object]


def _document(record: ConsumerRecord[bytes, bytes], contracts: Contracts) -> ControlDocument | None:
    """The record's valid ``control.v1`` document; ``None`` (logged) for an invalid one or a tombstone."""
    if record.value is None:  # a replica's status removed at its clean stop
        return None
    try:
        document = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        document = None
    problem = contracts.describe_violation(SchemaName.CONTROL, document)
    if problem is not None or not isinstance(document, dict):
        log.warning("control_record_invalid", extra={"offset": record.offset, "problem": problem})
        return None
    return document


async def _assign_all(
    consumer: AIOKafkaConsumer, bootstrap_servers: str, options: ConnectionOptions, topic: str
) -> dict[TopicPartition, int]:
    """Assign every partition of ``topic`` from the beginning; returns their end offsets right now.

    The partitions come from the cluster (a describe request): the consumer's own metadata knows only the
    topics it subscribed to. A topic that does not exist has none: ``{}``.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options.client_kwargs())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:  # unknown topic (or not authorised to see it)
        return {}
    partitions = [TopicPartition(topic, entry["partition"]) for entry in described["partitions"]]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return ends


async def _assign_when_reachable(
    consumer: AIOKafkaConsumer, bootstrap_servers: str, options: ConnectionOptions, topic: str
) -> dict[TopicPartition, int]:
    """``_assign_all``, except that a cluster that does not answer (an outage) counts as "no topic yet":
    the caller looks again later, as it does for a topic not created yet."""
    try:
        return await _assign_all(consumer, bootstrap_servers, options, topic)
    except KafkaError as exc:
        log.info("control_topic_unreachable", extra={"topic": topic, "error_class": type(exc).__name__})
        return {}


async def _reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def follow_control(
    bootstrap_servers: str,
    topic: str,
    state: ControlState,
    contracts: Contracts,
    *,
    options: ConnectionOptions,
    on_change: Callable[[ControlState], None],
    caught_up: asyncio.Event | None = None,
) -> None:
    """Read ``topic`` from the start forever, applying each valid command; skip (and log) invalid ones.

    ``on_change(state)`` after every command that changed the state. ``caught_up`` is set once every record
    that was on the topic at the start has been applied (at once for a topic that does not exist yet; it
    is looked for again every few seconds and followed once it exists). Connects with ``options``, the
    worker's own (``open_cluster``).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options.client_kwargs(),
    )
    await consumer.start()
    try:
        ends = await _assign_all(consumer, bootstrap_servers, options, topic)
        if not ends:  # nothing to catch up with; follow the topic once `topics create` made it
            log.warning("control_topic_missing", extra={"topic": topic})
            if caught_up is not None:
                caught_up.set()
        while not ends:
            await asyncio.sleep(_MISSING_TOPIC_RECHECK_S)
            ends = await _assign_when_reachable(consumer, bootstrap_servers, options, topic)
        while True:
            batch = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batch.values():
                for record in records:
                    _follow(record, state, contracts, on_change)
            if caught_up is not None and not caught_up.is_set() and await _reached(consumer, ends):
                caught_up.set()
    finally:
        await consumer.stop()


def _follow(
    record: ConsumerRecord[bytes, bytes],
    state: ControlState,
    contracts: Contracts,
    on_change: Callable[[ControlState], None],
) -> None:
    document = _document(record, contracts)
    if document is None:
        return
    try:
        changed = state.apply(document)
    except ConfigurationError as exc:  # an applied policy this worker cannot use: keep the current one
        log.warning("control_policy_refused", extra={"offset": record.offset, "problem": str(exc)})
        return
    if changed:
        log.warning(
            "control_changed",
            extra={
                "command": document.get("command"),
                "hold": state.hold,
                "paused": state.paused,
                "reason": document.get("reason"),
                "policy_version": state.policy_version,
                "issued_by": document.get("issued_by"),
            },
        )
        on_change(state)


async def read_control(settings: Settings) -> dict[bytes, ControlDocument | None]:
    """The latest valid document per key on the control topic (``None`` for a removed key), read to its end.

    Connects as the worker does (``open_cluster``: waits for the cluster, raises ``KafkaConnectionFailed``).
    """
    contracts = Contracts.load()
    latest: dict[bytes, ControlDocument | None] = {}
    async with open_cluster(settings) as options:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **options.client_kwargs(),
        )
        try:  # stop() also after a failed start(): it closes what start() opened
            security = settings.kafka_security()
            await start_explained(consumer.start, settings.bootstrap_servers, security, options)
            ends = await _assign_all(consumer, settings.bootstrap_servers, options, settings.control_topic)
            while not await _reached(consumer, ends):
                batch = await consumer.getmany(timeout_ms=_POLL_MS)
                for records in batch.values():
                    for record in records:
                        if record.key is not None:
                            latest[record.key] = _document(record, contracts)
        finally:
            await consumer.stop()
    return latest


async def publish_control(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Publish ``(key, value)`` records to the control topic, in order, each acknowledged (``acks=all``).

    Connects as the worker does (``open_cluster``: waits for the cluster, raises ``KafkaConnectionFailed``).
    """
    async with open_cluster(settings) as options:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            **options.client_kwargs(),
        )
        try:  # stop() also after a failed start(): it closes what start() opened
            security = settings.kafka_security()
            await start_explained(producer.start, settings.bootstrap_servers, security, options)
            for key, value in records:
                await producer.send_and_wait(settings.control_topic, value, key=key)
        finally:
            await producer.stop()


async def publish_hold(
    settings: Settings, *, active: bool, reason: str | None, issued_by: str | None
) -> None:
    """Publish a hold command and wait for the broker's acknowledgement (``publish_control``)."""
    value = hold_command(active=active, reason=reason, issued_by=issued_by, now=datetime.now(UTC))
    await publish_control(settings, [(HOLD_KEY, value)])
