"""Specification of the ops endpoint over real HTTP on loopback: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from worker.observability.metrics import Metrics
from worker.observability.ops_server import HealthState, OpsServer

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class SteppedSleep:
    """An injected sleep that returns only when the test calls ``step()``: one step, exactly one beat."""

    def __init__(self) -> None:
        self._asleep = asyncio.Event()
        self._wake = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self._asleep.set()
        await self._wake.wait()
        self._wake.clear()

    async def step(self) -> None:
        """Wake the sleeper and return once it has beaten and gone back to sleep."""
        await self._asleep.wait()
        self._asleep.clear()
        self._wake.set()
        await self._asleep.wait()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, port: int, path: str) -> tuple[int, dict[str, object]]:
    async with http.get(f"http://{HOST}:{port}{path}") as response:
        return response.status, await response.json()


def ops_url(ops: OpsServer, path: str) -> str:
    return f"http://{HOST}:{ops.port}{path}"


def ready_state() -> HealthState:
    return HealthState(assigned_partitions=2, analyzer_reachable=True)


async def test_metrics_serves_the_injected_registry_in_text_exposition(http: aiohttp.ClientSession) -> None:
    """A scrape returns what the Metrics object recorded, in the Prometheus text format."""
    registry = CollectorRegistry()
    Metrics(registry, version="9.9.9").observe_result("rejected")

    async with (
        OpsServer(registry, HealthState(), HOST, 0) as ops,
        http.get(ops_url(ops, "/metrics")) as response,
    ):
        status, body = response.status, await response.text()
        content_type = response.headers["Content-Type"]

    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert 'moderation_results_total{decision="rejected"} 1.0' in body.splitlines()
    assert 'moderation_worker_info{version="9.9.9"} 1.0' in body.splitlines()


async def test_healthz_is_200_while_the_heartbeat_is_fresh(http: aiohttp.ClientSession) -> None:
    """Right after start the heartbeat has just beaten, so the process reports alive."""
    clock = FakeClock()
    async with OpsServer(CollectorRegistry(), HealthState(), HOST, 0, clock=clock) as ops:
        status, body = await get_json(http, ops.port, "/healthz")

    assert (status, body["alive"], body["heartbeat_age_s"]) == (200, True, 0.0)


async def test_healthz_is_503_once_the_heartbeat_is_older_than_the_limit(http: aiohttp.ClientSession) -> None:
    """A loop that stopped running the heartbeat leaves it stale; liveness fails so we get restarted."""
    clock = FakeClock()
    server = OpsServer(
        CollectorRegistry(), HealthState(), HOST, 0, stale_after_s=5, clock=clock, sleep=SteppedSleep().sleep
    )
    async with server as ops:
        clock.now_s += 5.5
        status, body = await get_json(http, ops.port, "/healthz")

    assert (status, body["alive"], body["heartbeat_age_s"]) == (503, False, 5.5)


async def test_heartbeat_task_refreshes_the_timestamp_while_the_loop_turns(
    http: aiohttp.ClientSession,
) -> None:
    """After a stale reading, the next beat of the heartbeat task makes /healthz healthy again."""
    clock, stepped, health = FakeClock(), SteppedSleep(), HealthState()
    server = OpsServer(
        CollectorRegistry(), health, HOST, 0, stale_after_s=5, clock=clock, sleep=stepped.sleep
    )
    async with server as ops:
        clock.now_s += 60
        stale_status, _ = await get_json(http, ops.port, "/healthz")
        await asyncio.wait_for(stepped.step(), timeout=5)
        fresh_status, _ = await get_json(http, ops.port, "/healthz")

    assert (stale_status, fresh_status) == (503, 200)
    assert clock.now_s == health.heartbeat_at_s


async def test_readyz_names_every_failed_check(http: aiohttp.ClientSession) -> None:
    """Before assignment and before the analyzer answered, readiness fails and says why."""
    async with OpsServer(CollectorRegistry(), HealthState(), HOST, 0) as ops:
        status, body = await get_json(http, ops.port, "/readyz")

    assert status == 503
    assert body["failed"] == ["partitions_assigned", "analyzer_reachable"]
    assert body["checks"] == {
        "partitions_assigned": False,
        "analyzer_reachable": False,
        "kafka_reachable": True,
        "no_fatal_error": True,
    }


async def test_readyz_fails_while_the_kafka_cluster_does_not_answer(http: aiohttp.ClientSession) -> None:
    """An outage of a running worker: the probe clears ``kafka_reachable`` and readiness names it."""
    health = ready_state()
    async with OpsServer(CollectorRegistry(), health, HOST, 0) as ops:
        health.kafka_reachable = False
        during = await get_json(http, ops.port, "/readyz")
        health.kafka_reachable = True
        after = await get_json(http, ops.port, "/readyz")

    assert (503, ["kafka_reachable"]) == (during[0], during[1]["failed"])
    assert (200, []) == (after[0], after[1]["failed"])


async def test_readyz_is_200_when_assigned_reachable_and_not_stopped(http: aiohttp.ClientSession) -> None:
    """The runner flips the state; the next probe sees it without restarting anything."""
    health = HealthState()
    async with OpsServer(CollectorRegistry(), health, HOST, 0) as ops:
        health.assigned_partitions = 3
        health.analyzer_reachable = True
        status, body = await get_json(http, ops.port, "/readyz")

    assert (status, body["ready"], body["failed"]) == (200, True, [])


async def test_readyz_reports_a_fatal_error_with_urls_redacted(http: aiohttp.ClientSession) -> None:
    """A fatal stop makes the replica unready; the message is served without the URL's secret query."""
    health = ready_state()
    health.fatal_error = "401 from https://acct.blob.core.windows.net/c/i.jpg?sv=2024&sig=SECRET"
    async with OpsServer(CollectorRegistry(), health, HOST, 0) as ops:
        status, body = await get_json(http, ops.port, "/readyz")

    assert (status, body["failed"]) == (503, ["no_fatal_error"])
    assert body["fatal_error"] == "401 from https://acct.blob.core.windows.net/c/i.jpg?<redacted>"


async def test_a_port_in_use_raises_and_the_server_stops_cleanly_on_exit(http: aiohttp.ClientSession) -> None:
    """Binding an occupied port fails loudly; after the block the port no longer answers."""
    async with OpsServer(CollectorRegistry(), ready_state(), HOST, 0) as ops:
        port = ops.port
        with pytest.raises(OSError, match=r"address already in use|Errno 98"):
            async with OpsServer(CollectorRegistry(), ready_state(), HOST, port):
                pass

    with pytest.raises(aiohttp.ClientConnectionError):
        await get_json(http, port, "/healthz")


def test_a_staleness_limit_not_above_the_heartbeat_interval_is_refused() -> None:
    """A limit at or below the beat interval would report a healthy loop as dead."""
    with pytest.raises(ValueError, match="stale_after_s"):
        OpsServer(CollectorRegistry(), HealthState(), heartbeat_interval_s=5, stale_after_s=5)
