"""The review dashboard and alert rules use only the console's metrics; each alert has a runbook and tests."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from tests.fixtures.prometheus import dashboard_queries
from tests.unit.test_dashboards import PROMETHEUS_SERIES, metric_names
from worker.observability.metrics import exported_sample_names
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ReviewQueue

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts" / "review-rules.yml"
RULE_TESTS = DASHBOARDS / "alerts" / "review-rules.test.yml"
REVIEW_DOC = ROOT / "docs" / "review.md"


def review_catalogue() -> frozenset[str]:
    registry = CollectorRegistry()
    ReviewMetrics(registry, ReviewQueue(time.monotonic), time.time)
    return exported_sample_names(registry)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_review_dashboard_queries_only_review_metrics_and_uses_most_of_them() -> None:
    """A panel on a metric the console does not export would stay empty; most families have a panel."""
    exported = review_catalogue()
    queries = [
        query for query in dashboard_queries(DASHBOARDS) if query.dashboard == "moderation-review.json"
    ]
    used = {name for query in queries for name in metric_names(query.expr)}

    assert set() == used - exported
    assert len(used) >= 8


def test_review_alerts_use_exported_series_and_have_severity_annotations_and_a_runbook() -> None:
    """On-call needs to know how urgent, what it means and what to do (docs/alerts.md)."""
    headings = {
        re.sub(r"[^a-z0-9]", "", line.lstrip("#").strip().lower())
        for line in (ROOT / "docs" / "alerts.md").read_text().splitlines()
        if line.startswith("#")
    }
    known = review_catalogue() | PROMETHEUS_SERIES

    for rule in alert_rules():
        assert set() == metric_names(rule["expr"]) - known, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert rule["alert"].lower() == anchor
        assert anchor in headings, f"docs/alerts.md has no section for {rule['alert']}"


def test_every_review_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    """Both directions of every alert are tested."""
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]

    for name in (rule["alert"] for rule in alert_rules()):
        assert {True, False} == {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}, (
            name
        )


def test_docs_review_lists_exactly_the_review_metrics() -> None:
    """docs/review.md's metric table is the reference for the console's families."""
    registry = CollectorRegistry()
    ReviewMetrics(registry, ReviewQueue(time.monotonic), time.time)
    suffix = {"counter": "_total"}
    exported = {family.name + suffix.get(family.type, "") for family in registry.collect()}

    documented = set(
        re.findall(r"^\| `(moderation_review_\w+)` \|", REVIEW_DOC.read_text(), flags=re.MULTILINE)
    )

    assert exported == documented
