"""Produce routed records through the producer's own ``send``, one call per record; report each record's
acknowledgement.

Records queue in the order they are handed in and one sender task passes each to ``AIOKafkaProducer.send``:
the producer picks the partition with its own partitioner (aiokafka's ``DefaultPartitioner``: murmur2 of the
key, so a key keeps its partition) and gathers records into batches per partition (``linger_ms``,
``max_batch_size``). The future ``send`` returns resolves once the broker acknowledged the record
(``acks=all``), and its callback reports the record. One sender rather than a task per record keeps the
records of a partition in the order they were handed in and costs no task per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

log = logging.getLogger(__name__)

Acknowledged = Callable[[BaseException | None], None]
"""Called once per record: ``None`` once the broker acknowledged it, else the error that lost it
(``asyncio.CancelledError``: the outbox was closed before the record was handed to the producer)."""

Headers = Sequence[tuple[str, bytes]]

_Entry = tuple[str, bytes | None, bytes, Headers, Acknowledged]
"""Topic, key, value, headers, and whom to tell (a plain tuple: one is built per record)."""


class Producer(Protocol):
    """The producer call the outbox makes (``AIOKafkaProducer.send``)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Hand one record to the producer (waits while its partition's batch is full, or for the topic's
        metadata); the future resolves once the broker acknowledged the record, or fails with what lost it."""


class Outbox:
    """Queue records for their topics; ``acknowledged`` says when each is durable (producer ``acks``)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._queued: deque[_Entry] = deque()
        self._sender: asyncio.Task[None] | None = None

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, acknowledged: Acknowledged
    ) -> None:
        """Queue one record; never raises. ``acknowledged`` runs later, on the event loop, exactly once."""
        self._queued.append((topic, key, value, headers, acknowledged))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued(), name="outbox-send")

    def send_all(
        self, records: Sequence[tuple[str, bytes | None, bytes, Headers]], acknowledged: Acknowledged
    ) -> None:
        """Queue several records that stand or fall together; ``acknowledged`` runs once: ``None`` when the
        broker acknowledged every one, else the first error that lost one of them."""
        report = _AllOf(len(records), acknowledged)
        for topic, key, value, headers in records:
            self.send(topic, key, value, headers, report)

    async def aclose(self) -> None:
        """Stop handing records to the producer; those not handed over yet are reported ``CancelledError``.

        Records already handed over are acknowledged (or failed) when the producer sends them or stops.
        """
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        queued, self._queued = self._queued, deque()
        for *_, acknowledged in queued:
            acknowledged(asyncio.CancelledError())

    async def _send_queued(self) -> None:
        queued, send = self._queued, self._producer.send
        try:
            while queued:
                topic, key, value, headers, acknowledged = queued[0]
                # The record builder takes a list only.
                listed = headers if type(headers) is list else list(headers)
                try:
                    future = await send(topic, value, key, headers=listed)
                # KafkaError (closed producer, no metadata or no room within request_timeout_ms) or a record
                # the producer refuses: either way the record is lost, and saying so stops the pipeline
                # (which logs it).
                except Exception as exc:
                    if not isinstance(exc, KafkaError):  # a defect: worth its traceback
                        log.exception("outbox_failed", extra={"error_class": type(exc).__name__})
                    queued.popleft()
                    acknowledged(exc)
                    continue
                queued.popleft()  # handed over: from now on the future reports it
                future.add_done_callback(partial(_report, acknowledged))
        finally:
            self._sender = None


class _AllOf:
    """One ``Acknowledged`` for ``count`` records: reports the first error at once, else ``None`` after
    the last acknowledgement; later reports are ignored, so the caller hears exactly once."""

    __slots__ = ("_acknowledged", "_pending")

    def __init__(self, count: int, acknowledged: Acknowledged) -> None:
        self._pending = count
        self._acknowledged: Acknowledged | None = acknowledged

    def __call__(self, error: BaseException | None) -> None:
        if self._acknowledged is None:
            return
        self._pending -= 1
        if error is not None or not self._pending:
            acknowledged, self._acknowledged = self._acknowledged, None
            acknowledged(error)


def _report(acknowledged: Acknowledged, future: asyncio.Future[RecordMetadata]) -> None:
    acknowledged(asyncio.CancelledError() if future.cancelled() else future.exception())
