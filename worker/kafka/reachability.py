"""Whether the Kafka cluster answers a running worker: a metadata request every few seconds.

aiokafka rides an outage out by itself (it reconnects, the producer retries within its timeouts), so the
loop sees no error, only silence. Readiness must still say so: ``watch_reachability`` asks for the cluster's
metadata (``AIOKafkaConsumer.topics``: one request to any broker the client knows) every ``interval_s``,
with a deadline, and reports each change, with one log line per change rather than one per attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
"""How often the cluster is asked; with the deadline below an outage shows within about ten seconds."""


class MetadataSource(Protocol):
    """The consumer call the probe makes (``AIOKafkaConsumer.topics``)."""

    async def topics(self) -> set[str]:
        """Every topic the client may see; raises ``KafkaError`` when no broker answers."""


async def cluster_answers(source: MetadataSource, *, timeout_s: float) -> str | None:
    """``None`` when a broker answered the metadata request within ``timeout_s``, else why not (the error
    class, or ``timeout``); never raises for an unreachable cluster."""
    try:
        async with asyncio.timeout(timeout_s):
            await source.topics()
    except TimeoutError:
        return "timeout"
    except KafkaError as exc:
        return type(exc).__name__
    return None


async def watch_reachability(
    source: MetadataSource,
    on_change: Callable[[bool], None],
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    timeout_s: float = DEFAULT_INTERVAL_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Probe ``source`` every ``interval_s`` until cancelled; ``on_change(reachable)`` on every change.

    Starts from reachable (the worker only runs once start-up reached the cluster). Logs
    ``kafka_unreachable`` (warning, with the cause) when the cluster stops answering and
    ``kafka_reachable`` when it answers again, with how many probes failed in between.
    """
    reachable, failed = True, 0
    while True:
        await sleep(interval_s)
        cause = await cluster_answers(source, timeout_s=timeout_s)
        if cause is not None:
            failed += 1
            if reachable:
                reachable = False
                log.warning("kafka_unreachable", extra={"cause": cause, "probe_interval_s": interval_s})
                on_change(False)
        elif not reachable:
            reachable = True
            log.info("kafka_reachable", extra={"failed_probes": failed})
            failed = 0
            on_change(True)
        else:
            failed = 0
