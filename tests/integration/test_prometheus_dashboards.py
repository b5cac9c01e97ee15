"""Every dashboard query returns data from a real Prometheus scraping a real ops endpoint.

``assert_every_dashboard_expression_returns_data`` is reusable: the end-to-end pipeline test calls it
against a Prometheus that scrapes the running worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.prometheus import PrometheusServer, dashboard_queries
from worker.analysis.breaker import BreakerState
from worker.domain import Decision, Tag, strongest_of
from worker.observability.metrics import ANALYZER_OUTCOMES, DEAD_LETTER_REASONS, Metrics
from worker.observability.ops_server import HealthState, OpsServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts" / "moderation-rules.yml"
TOPIC = "images.submitted"
#: Dashboards of other processes than the worker, checked against those (tests/integration/test_review_*.py).
OTHER_PROCESSES = frozenset({"moderation-review.json"})


def worker_dashboard(name: str) -> bool:
    """True for the dashboards a scraped worker feeds."""
    return name not in OTHER_PROCESSES


async def assert_every_dashboard_expression_returns_data(
    prom: PrometheusServer,
    dashboards_dir: Path = DASHBOARDS,
    *,
    timeout_s: float = 60.0,
    boards: Callable[[str], bool] = worker_dashboard,
) -> None:
    """Wait until every panel query of the ``dashboards_dir/*.json`` that ``boards`` selects (by file name;
    default the worker's) returns at least one series.

    Grafana variables are replaced as in ``dashboard_queries``. A query Prometheus rejects fails at once
    (``PrometheusQueryError``); queries still empty at the deadline are listed in the assertion message.
    """
    pending = {query.promql: query for query in dashboard_queries(dashboards_dir) if boards(query.dashboard)}
    assert pending, f"no dashboard queries found in {dashboards_dir}"
    deadline = time.monotonic() + timeout_s
    while True:
        for promql in list(pending):
            if await prom.query(promql):
                del pending[promql]
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(prom.scrape_interval_s)
    empty = [f"{query.dashboard} / {query.panel}: {query.expr}" for query in pending.values()]
    assert empty == [], f"{len(empty)} dashboard queries returned no data within {timeout_s} s"


async def drive_traffic(metrics: Metrics) -> None:
    """Record a steady mix of everything the worker measures, as a busy replica would, until cancelled."""
    metrics.set_assignment([(TOPIC, 0), (TOPIC, 1)])
    metrics.set_policy("0123abcd", "blocklist")
    metrics.set_hold(active=False)
    metrics.set_circuit_state(BreakerState.CLOSED)
    metrics.set_reference("decision_mix", "", {"approved": 0.8, "needs_review": 0.15, "rejected": 0.05})
    metrics.set_reference("tag_detection", "weapon", {"detected": 0.05, "not_detected": 0.95})
    metrics.set_reference("tag_confidence", "weapon", {"0.9": 0.5, "1.0": 0.5})
    decisions = itertools.cycle([Decision.APPROVED] * 6 + [Decision.NEEDS_REVIEW, Decision.REJECTED])
    outcomes = itertools.cycle(ANALYZER_OUTCOMES)
    reasons = itertools.cycle(DEAD_LETTER_REASONS)
    for step in itertools.count():
        metrics.set_in_flight(1)
        metrics.observe_consumed(TOPIC)
        metrics.observe_analyzer_call(next(outcomes), 0.12, 0.01)
        metrics.observe_analyzer_retry()
        tags = [Tag("weapon", 0.55 + (step % 4) / 10), Tag("outdoor", 0.9)]
        metrics.observe_watched(strongest_of(tags, metrics.watched_tags))
        metrics.observe_result(next(decisions))
        metrics.observe_routed(processing_s=0.2, end_to_end_s=0.8)
        metrics.set_in_flight(0)
        metrics.observe_dead_letter(next(reasons))
        metrics.set_quota(share_per_s=10.0, rate_per_s=8.0)
        metrics.set_quota_utilization(0.8)
        metrics.set_paused_partitions(step % 2)
        metrics.observe_commit(0.004)
        for partition in (0, 1):
            metrics.set_committed_offset(TOPIC, partition, 100 + step)
            metrics.set_lag(TOPIC, partition, records=50, seconds=3.0)
        metrics.set_drift("decision_mix", "", psi=0.02, jensen_shannon=0.004)
        metrics.set_drift("tag_detection", "weapon", psi=0.3, jensen_shannon=0.05)
        metrics.set_drift("tag_confidence", "weapon", psi=0.12, jensen_shannon=0.02)
        await asyncio.sleep(0.05)


async def test_every_dashboard_expression_returns_data_from_a_scraped_worker(
    prometheus_server_factory: Callable[..., PrometheusServer],
) -> None:
    """Prometheus scrapes an ops server whose Metrics see steady traffic; every panel query has data."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="test", watched_tags=("weapon",))
    health = HealthState(assigned_partitions=2, analyzer_reachable=True)

    async with (
        OpsServer(registry, health, "127.0.0.1", 0) as ops,
        prometheus_server_factory([f"127.0.0.1:{ops.port}"], [RULES]) as prom,
        asyncio.TaskGroup() as tasks,
    ):
        traffic = tasks.create_task(drive_traffic(metrics))
        try:
            await prom.wait_for('up{job="moderation-worker"} == 1', bool, timeout_s=30)
            await assert_every_dashboard_expression_returns_data(prom)
            error_ratio = await prom.wait_for("moderation:analyzer_call_errors:ratio_rate5m", bool, 30)
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic

    # 4 of the 7 outcomes in the cycle are errors (server, timeout, connection, fatal).
    assert float(error_ratio[0]["value"][1]) == pytest.approx(4 / 7, abs=0.1)
