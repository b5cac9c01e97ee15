"""Each replica's own status record on the control topic: what it decides under, paused or not, held or not.

``report_status`` publishes ``control.v1`` status records keyed ``status/<replica id>`` (compacted, so the
topic keeps the latest report of every replica): once at start, after every change of the control state,
and every ``interval_s`` as a heartbeat, so ``moderation-worker policy status`` can tell a silent replica
from a live one. At a clean stop the replica removes its key (a tombstone); a killed replica's last report
stays, its ``issued_at`` ageing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from worker.intervention import ControlState, status_key, status_record

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
"""Seconds between two reports of an unchanged replica; ``policy status`` calls a report stale after 3."""
_REMOVE_TIMEOUT_S = 2.0
"""At most this long is spent removing the status at shutdown: an unreachable broker must not hold it."""


class StatusProducer(Protocol):
    """The producer call the reporter makes (``AIOKafkaProducer.send_and_wait``)."""

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> RecordMetadata: ...


async def report_status(
    producer: StatusProducer,
    topic: str,
    replica_id: str,
    state: ControlState,
    changed: asyncio.Event,
    *,
    intake_stopped: Callable[[], bool] | None = None,
    interval_s: float = HEARTBEAT_S,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Report ``state`` now, whenever ``changed`` is set, and every ``interval_s``; until cancelled, then
    remove the report. ``intake_stopped()`` is reported as ``paused`` (the loop's view, see
    ``status_record``). A failed send is logged and retried at the next report (status is advisory)."""
    key = status_key(replica_id)
    try:
        while True:
            changed.clear()
            try:
                paused = None if intake_stopped is None else intake_stopped()
                value = status_record(replica_id, state, now=now(), paused=paused)
                await producer.send_and_wait(topic, value, key=key)
            except KafkaError as exc:
                log.warning("status_report_failed", extra={"error_class": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await changed.wait()
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(_REMOVE_TIMEOUT_S):
                await producer.send_and_wait(topic, None, key=key)
