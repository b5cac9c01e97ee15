"""The operations HTTP endpoint: ``/metrics``, ``/healthz`` (liveness), ``/readyz`` (readiness) on one port.

The runner owns a ``HealthState`` and updates it; the server only reads it, except for the heartbeat
timestamp that its own task refreshes to prove the event loop still turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from worker.clock import Clock, Sleep
from worker.redact import redact_text

# The classic text format every Prometheus version parses; generate_latest emits exactly this for our
# legacy (ASCII) metric names, while prometheus_client's CONTENT_TYPE_LATEST moved to version=1.0.0.
TEXT_EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class HealthState:
    """What the probes report; plain and mutable, owned by the runner.

    ``assigned_partitions``: input partitions this replica owns now. ``analyzer_reachable``: the last
    analyzer contact (call or probe) got an HTTP answer, whatever its status. ``kafka_reachable``: the
    running worker's last metadata probe was answered (``worker.kafka.reachability``). ``fatal_error``: set
    when a fatal error stopped the worker; the text is redacted before it is served. ``heartbeat_at_s``: clock
    reading of the last heartbeat (seconds, on the ``OpsServer`` clock).
    """

    assigned_partitions: int = 0
    analyzer_reachable: bool = False
    kafka_reachable: bool = True
    fatal_error: str | None = None
    heartbeat_at_s: float | None = field(default=None)

    def readiness(self) -> dict[str, bool]:
        """Each readiness check by name; ready means all are True."""
        return {
            "partitions_assigned": self.assigned_partitions > 0,
            "analyzer_reachable": self.analyzer_reachable,
            "kafka_reachable": self.kafka_reachable,
            "no_fatal_error": self.fatal_error is None,
        }

    def heartbeat_age_s(self, now_s: float) -> float | None:
        """Seconds since the last heartbeat, or None before the first one."""
        return None if self.heartbeat_at_s is None else now_s - self.heartbeat_at_s


class OpsServer:
    """``async with OpsServer(registry, health, host, port) as ops:`` serves until the block exits.

    ``port=0`` binds a free port; ``ops.port`` is the bound one. ``/healthz`` answers 503 once the
    heartbeat is older than ``stale_after_s``; ``/readyz`` answers 503 with a JSON body naming the failed
    checks. ``clock`` (monotonic seconds) and ``sleep`` drive the heartbeat; tests inject them to stop or
    step the beat deterministically.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthState,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        heartbeat_interval_s: float = 1.0,
        stale_after_s: float = 10.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if stale_after_s <= heartbeat_interval_s:
            raise ValueError("stale_after_s must exceed heartbeat_interval_s, or a healthy loop reads stale")
        self._registry = registry
        self._health = health
        self._host = host
        self._requested_port = port
        self._heartbeat_interval_s = heartbeat_interval_s
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._sleep = sleep
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._beat()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="ops-heartbeat")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._runner is not None:
            await self._runner.cleanup()

    def _beat(self) -> None:
        self._health.heartbeat_at_s = self._clock()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._sleep(self._heartbeat_interval_s)
            self._beat()

    async def _metrics(self, _request: web.Request) -> web.Response:
        # Rendering is CPU-only and small (tens of families); doing it inline keeps scrapes consistent.
        body = generate_latest(self._registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = TEXT_EXPOSITION_CONTENT_TYPE
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        age_s = self._health.heartbeat_age_s(self._clock())
        alive = age_s is not None and age_s <= self._stale_after_s
        body: dict[str, object] = {
            "alive": alive,
            "heartbeat_age_s": age_s,
            "stale_after_s": self._stale_after_s,
        }
        return _json(body, status=200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = self._health.readiness()
        failed = [name for name, passed in checks.items() if not passed]
        body: dict[str, object] = {"ready": not failed, "checks": checks, "failed": failed}
        if self._health.fatal_error is not None:
            body["fatal_error"] = redact_text(self._health.fatal_error)
        return _json(body, status=503 if failed else 200)


def _json(body: dict[str, object], *, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
