"""Run-time control through the compacted ``moderation.control`` topic: the reviewers' hold switch.

Every replica reads the whole control topic (no consumer group, from the beginning) and follows the latest
``control.v1`` record per command. ``hold`` active turns every would-be approval into needs_review at once on
all replicas - the real-time intervention a human in the loop needs. ``moderation-worker hold on|off``
publishes the command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.contracts import Contracts, SchemaName
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings

log = logging.getLogger(__name__)

HOLD = "hold"


@dataclass(slots=True)
class ControlState:
    """What the control topic says right now; read on every decision, written by the listener."""

    hold: bool = False
    hold_reason: str | None = None

    def apply(self, document: dict[str, object]) -> bool:
        """Apply one validated command; returns True if the state changed."""
        if document.get("command") != HOLD:
            return False
        active = bool(document.get("active"))
        changed = active != self.hold
        self.hold = active
        reason = document.get("reason")
        self.hold_reason = str(reason) if active and reason is not None else None
        return changed


def hold_command(*, active: bool, reason: str | None, issued_by: str | None, now: datetime) -> bytes:
    """A ``control.v1`` hold record."""
    document: dict[str, object] = {
        "schema": str(SchemaName.CONTROL),
        "command": HOLD,
        "active": active,
        "issued_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if reason:
        document["reason"] = reason
    if issued_by:
        document["issued_by"] = issued_by
    return orjson.dumps(document)


async def follow_control(
    bootstrap_servers: str,
    topic: str,
    state: ControlState,
    contracts: Contracts,
    *,
    options: ConnectionOptions,
    on_change: Callable[[ControlState], None],
) -> None:
    """Read ``topic`` from the start forever, applying each valid command; skip (and log) invalid ones.

    Connects with ``options``, the worker's own (``worker.kafka.startup.open_cluster``).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options.client_kwargs(),
    )
    await consumer.start()
    try:
        async for record in consumer:
            try:
                document = orjson.loads(record.value or b"null")
            except orjson.JSONDecodeError:
                document = None
            problem = contracts.describe_violation(SchemaName.CONTROL, document)
            if problem is not None or not isinstance(document, dict):
                log.warning("control_record_invalid", extra={"offset": record.offset, "problem": problem})
                continue
            if state.apply(document):
                log.warning(
                    "control_changed",
                    extra={
                        "hold": state.hold,
                        "reason": state.hold_reason,
                        "issued_by": document.get("issued_by"),
                    },
                )
                on_change(state)
    finally:
        await consumer.stop()


async def publish_hold(
    settings: Settings, *, active: bool, reason: str | None, issued_by: str | None
) -> None:
    """Publish a hold command and wait for the broker's acknowledgement.

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
            value = hold_command(active=active, reason=reason, issued_by=issued_by, now=datetime.now(UTC))
            await producer.send_and_wait(settings.control_topic, value, key=HOLD.encode())
        finally:
            await producer.stop()
