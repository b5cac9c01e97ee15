"""Every query of the review dashboard returns data from a real Prometheus scraping the console's metrics."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.prometheus import PrometheusServer
from tests.integration.test_prometheus_dashboards import assert_every_dashboard_expression_returns_data
from tests.review_samples import review_item
from worker.domain import Reason
from worker.observability.ops_server import HealthState, OpsServer
from worker.review.items import ItemKind
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ReviewQueue
from worker.review.verdicts import VerdictKind

pytestmark = pytest.mark.integration


async def drive_reviews(metrics: ReviewMetrics, queue: ReviewQueue) -> None:
    """Verdicts of every kind, refusals and image failures, as a busy console records them (until
    cancelled)."""
    now = time.time()
    queue.add(review_item("waiting", offset=0, enqueued_at_s=now - 600))
    queue.add(review_item("held", offset=1, kind=ItemKind.ESCALATED, enqueued_at_s=now - 60))
    suspect = review_item("suspect", offset=2, enqueued_at_s=now - 300)
    audit = review_item(
        "sample",
        offset=3,
        kind=ItemKind.AUDIT,
        reasons=(Reason("allowlist_match", tag="dog", confidence=0.97),),
        audit={"probability": 0.05, "published_decision": "approved"},
    )
    verdicts = itertools.cycle([VerdictKind.APPROVE, VerdictKind.REJECT, VerdictKind.ESCALATE])
    while True:
        metrics.observe_verdict(suspect, next(verdicts), claimed_s=14.0)
        metrics.observe_verdict(audit, VerdictKind.APPROVE, claimed_s=6.0)
        metrics.observe_refused("lease")
        metrics.observe_image_failure("timeout")
        await asyncio.sleep(0.05)


async def test_every_review_dashboard_expression_returns_data(
    prometheus_server_factory: Callable[..., PrometheusServer],
) -> None:
    """Prometheus scrapes the console's registry while reviews go on; every panel of the board has data."""
    registry = CollectorRegistry()
    queue = ReviewQueue(time.monotonic)
    metrics = ReviewMetrics(registry, queue, time.time)

    async with (
        OpsServer(registry, HealthState(), "127.0.0.1", 0) as ops,
        prometheus_server_factory([f"127.0.0.1:{ops.port}"]) as prom,
        asyncio.TaskGroup() as tasks,
    ):
        traffic = tasks.create_task(drive_reviews(metrics, queue))
        try:
            await prom.wait_for("up == 1", bool, timeout_s=30)
            await assert_every_dashboard_expression_returns_data(
                prom, boards=lambda name: name == "moderation-review.json"
            )
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
