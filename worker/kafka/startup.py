"""Reaching the cluster at start-up: wait out an outage, stop at once on a refused setting, say why.

Every command that talks to Kafka (``run``, ``topics create``, ``hold``) opens its connection options with
``open_cluster``: it builds them from the ``MODERATION_KAFKA_*`` settings (one TLS context, one token
provider, shared by every client of the command), then waits for the cluster. Waiting means probing the
bootstrap brokers (``worker.kafka.probe``) with jittered exponential backoff for at most
``MODERATION_KAFKA_STARTUP_TIMEOUT_S``, logging one ``kafka_unavailable`` line per failed attempt. Only
``KafkaUnavailable`` is waited out; a refused credential, certificate or protocol is raised at the first
attempt, since no amount of waiting changes a setting. ``start_explained`` starts a client and, when its
``start()`` fails with aiokafka's causeless error, probes once to raise the classified cause instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaError

from worker.analysis.backoff import compute_backoff
from worker.errors import KafkaConnectionFailed, KafkaUnavailable
from worker.kafka.probe import probe_bootstrap
from worker.kafka.security import ConnectionOptions, open_connection_options
from worker.kafka_settings import KafkaSecurity
from worker.settings import Settings

log = logging.getLogger(__name__)


class Probe(Protocol):
    """``probe_bootstrap``'s shape: the broker that answered, or a ``KafkaConnectionFailed``."""

    def __call__(
        self, bootstrap_servers: str, security: KafkaSecurity, options: ConnectionOptions
    ) -> Awaitable[str]:
        """Connect once; return ``host:port`` of the broker that answered a metadata request."""
        ...


@dataclass(frozen=True, slots=True)
class StartupWait:
    """How long and how often to probe: delays from ``compute_backoff(attempt, base_s, max_s)``, seconds.

    ``timeout_s`` bounds the whole wait: no attempt starts after it, and a sleep never runs past it. 0 means
    one attempt and no retry.
    """

    timeout_s: float
    base_s: float = 0.5
    max_s: float = 5.0


async def wait_for_cluster(
    bootstrap_servers: str,
    security: KafkaSecurity,
    options: ConnectionOptions,
    wait: StartupWait,
    *,
    probe: Probe = probe_bootstrap,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> str:
    """Probe until a broker answers; return it (``host:port``).

    Raises the probe's ``KafkaConnectionFailed`` at once unless it is retryable; raises the last
    ``KafkaUnavailable`` once ``wait.timeout_s`` (on ``clock``, seconds) has passed.
    """
    rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not cryptography
    deadline = clock() + wait.timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await probe(bootstrap_servers, security, options)
        except KafkaUnavailable as exc:
            left_s = deadline - clock()
            if left_s <= 0:
                raise
            delay_s = min(left_s, compute_backoff(attempt - 1, base_s=wait.base_s, max_s=wait.max_s, rng=rng))
            log.warning(
                "kafka_unavailable",
                extra={
                    "attempt": attempt,
                    "broker": exc.broker,
                    "reason": exc.reason,
                    "error": str(exc),
                    "retry_in_s": round(delay_s, 3),
                    "gives_up_in_s": round(left_s, 3),
                },
            )
            await sleep(delay_s)


async def start_explained(
    start: Callable[[], Awaitable[None]],
    bootstrap_servers: str,
    security: KafkaSecurity,
    options: ConnectionOptions,
    *,
    probe: Probe = probe_bootstrap,
) -> None:
    """Await ``start()``; when it raises a ``KafkaError``, raise the probe's classified cause from it.

    aiokafka's ``start()`` says only "Unable to bootstrap"; the probe connects once more and names the cause.
    When the probe succeeds (the cluster recovered in between), the original error is raised.
    """
    try:
        await start()
    except KafkaError as exc:
        try:
            await probe(bootstrap_servers, security, options)
        except KafkaConnectionFailed as failure:
            raise failure from exc
        raise


@asynccontextmanager
async def open_cluster(settings: Settings) -> AsyncIterator[ConnectionOptions]:
    """The connection options of ``settings``, yielded once the cluster answers (see ``wait_for_cluster``).

    Raises ``ConfigurationError`` for unusable TLS files or OAuth settings, ``KafkaConnectionFailed`` when
    the cluster refuses the settings or stays unreachable for ``kafka_startup_timeout_s``.
    """
    security = settings.kafka_security()
    async with open_connection_options(security, settings.bootstrap_servers) as options:
        await wait_for_cluster(
            settings.bootstrap_servers,
            security,
            options,
            StartupWait(timeout_s=settings.kafka_startup_timeout_s),
        )
        yield options
