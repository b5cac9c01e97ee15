"""Dashboards and alert rules use only metrics the worker exports; panels use the datasource variable."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.fixtures.prometheus import dashboard_queries
from worker.observability.metrics import Metrics, exported_sample_names
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ReviewQueue

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts" / "moderation-rules.yml"
RULE_TESTS = DASHBOARDS / "alerts" / "moderation-rules.test.yml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
EXPECTED_DASHBOARDS = {
    "moderation-overview.json",
    "moderation-analyzer-quota.json",
    "moderation-kafka.json",
    "moderation-drift.json",
    "moderation-dead-letters.json",
    "moderation-review.json",
}
# Series Prometheus itself creates for every scrape target; alerts may use them, dashboards may not.
PROMETHEUS_SERIES = frozenset({"up"})

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "on", "ignoring", "by", "without"}
    | {"inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords or labels.

    Strings, label matchers, ranges and grouping label lists are removed first, so label names and
    values never count; an identifier followed by ``(`` is a function or an aggregation.
    """
    stripped = _STRING.sub(" ", expr)
    stripped = _MATCHERS.sub(" ", stripped)
    stripped = _RANGE.sub(" ", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    return {
        name for name, call in _IDENTIFIER.findall(stripped) if not call and name.lower() not in _KEYWORDS
    }


def catalogue() -> frozenset[str]:
    registry = CollectorRegistry()
    Metrics(registry, version="test", watched_tags=("weapon",))
    ReviewMetrics(
        registry, ReviewQueue(time.monotonic), time.time
    )  # the review console's, on its own /metrics
    return exported_sample_names(registry)


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (decision) (rate(moderation_results_total{outcome=~"a|b"}[$__rate_interval]))'
            " / ignoring (decision) group_left sum(other_total offset 5m) > bool 1e-3",
            {"moderation_results_total", "other_total"},
        ),
        (
            'label_replace(x_total, "bucket", "$1", "decision", "(.*)") - on (bucket) group_left max(ref)',
            {"x_total", "ref"},
        ),
        ("histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le))", {"a_bucket"}),
        ("level:metric:rate5m > (14.4 * 0.01) and absent(b{job='w'})", {"level:metric:rate5m", "b"}),
    ],
)
def test_the_tokenizer_finds_exactly_the_selected_metrics(expr: str, expected: set[str]) -> None:
    """The checker below is only as good as this: labels, functions, keywords and numbers are not metrics."""
    assert metric_names(expr) == expected


def test_the_expected_dashboards_exist_and_each_has_queries() -> None:
    """Overview, analyzer and quota, Kafka, drift and dead letters ship as importable JSON."""
    boards = load_dashboards()

    assert set(boards) == EXPECTED_DASHBOARDS
    for name in boards:
        assert [query for query in dashboard_queries(DASHBOARDS) if query.dashboard == name], name


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    """A panel querying a metric the worker does not export would stay empty forever."""
    exported = catalogue()

    unknown = {
        f"{query.dashboard} / {query.panel}: {sorted(metric_names(query.expr) - exported)}"
        for query in dashboard_queries(DASHBOARDS)
        if metric_names(query.expr) - exported
    }

    assert unknown == set()


def test_every_alert_and_recording_rule_uses_only_exported_or_recorded_series() -> None:
    """Alerts may also use recording rules from the same file and Prometheus's own ``up``."""
    rules = load_rules()
    known = catalogue() | PROMETHEUS_SERIES | {rule["record"] for rule in rules if "record" in rule}

    unknown = {
        rule.get("alert", rule.get("record")): sorted(metric_names(rule["expr"]) - known)
        for rule in rules
        if metric_names(rule["expr"]) - known
    }

    assert unknown == {}


def test_the_metric_checks_cover_most_of_the_catalogue() -> None:
    """Guards the checks above against passing vacuously (e.g. a tokenizer that finds nothing)."""
    used = {name for query in dashboard_queries(DASHBOARDS) for name in metric_names(query.expr)}

    assert len(used) >= 25
    assert used <= catalogue()


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_every_panel_and_target_reads_from_the_datasource_variable(name: str) -> None:
    """One ``datasource`` variable of Prometheus type drives every panel, so the import works anywhere."""
    board = load_dashboards()[name]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    expected = {"type": "prometheus", "uid": "${datasource}"}

    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert board["schemaVersion"] >= 36
    for panel in board["panels"]:
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]


def test_dashboard_uids_and_panel_ids_are_unique() -> None:
    """Grafana overwrites dashboards by uid and panels by id; duplicates silently lose one of them."""
    boards = load_dashboards().values()

    assert len({board["uid"] for board in boards}) == len(EXPECTED_DASHBOARDS)
    for board in boards:
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]


def test_every_alert_has_a_severity_annotations_and_a_runbook_section() -> None:
    """On-call needs to know how urgent an alert is, what it means and what to do."""
    headings = {
        re.sub(r"[^a-z0-9]", "", line.lstrip("#").strip().lower())
        for line in ALERTS_DOC.read_text().splitlines()
        if line.startswith("#")
    }

    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/alerts.md has no section for {rule['alert']}"


def test_every_alert_has_a_firing_and_a_silent_unit_test_case() -> None:
    """promtool tests exist for both directions of every alert in the rule file."""
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]

    for name in (rule["alert"] for rule in alert_rules()):
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, name


def test_the_documented_catalogue_lists_exactly_the_exported_metrics() -> None:
    """docs/metrics.md is the SRE's reference; a metric missing there (or a stale row) misleads on-call."""
    registry = CollectorRegistry()
    Metrics(registry, version="test")
    suffix = {"counter": "_total", "info": "_info"}
    exported = {family.name + suffix.get(family.type, "") for family in registry.collect()}

    documented = set(re.findall(r"^\| `(moderation_\w+)` \|", METRICS_DOC.read_text(), flags=re.MULTILINE))

    assert documented == exported
