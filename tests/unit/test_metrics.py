"""Specification of the metric catalogue: names, pre-initialised labels, bounded labels, recording methods."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from worker.analysis.breaker import BreakerState
from worker.contracts import DeadLetterReason
from worker.domain import Decision, Tag, strongest_of
from worker.errors import AnalyzerOutcome
from worker.observability.metrics import (
    ANALYZER_OUTCOMES,
    DEAD_LETTER_REASONS,
    Metrics,
    exported_sample_names,
)


def make_metrics(watched_tags: tuple[str, ...] = ("weapon", "gore")) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, version="1.2.3", watched_tags=watched_tags), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_closed_label_set_is_exported_as_zero_before_anything_happens() -> None:
    """Rates and ratios need a zero series from the first scrape, so closed label sets are pre-initialised."""
    _, registry = make_metrics()

    for decision in ("approved", "needs_review", "rejected"):
        assert value(registry, "moderation_results_total", decision=decision) == 0.0
    for reason in DEAD_LETTER_REASONS:
        assert value(registry, "moderation_dead_letters_total", reason=reason) == 0.0
    for outcome in ANALYZER_OUTCOMES:
        assert value(registry, "moderation_analyzer_calls_total", outcome=outcome) == 0.0
    assert value(registry, "moderation_submissions_consumed_total", topic="images.submitted") == 0.0
    assert value(registry, "moderation_tag_detections_total", tag="weapon") == 0.0
    assert value(registry, "moderation_tag_confidence_count", tag="gore") == 0.0
    assert value(registry, "moderation_drift_psi", dimension="decision_mix", tag="") == 0.0
    assert value(registry, "moderation_drift_jensen_shannon", dimension="tag_confidence", tag="weapon") == 0.0


def test_closed_label_sets_are_exactly_the_values_of_their_enums() -> None:
    """Decisions, dead-letter reasons and analyzer outcomes have one definition each, their enum: every
    value, and nothing else, has a series (``host_not_allowed`` included)."""
    _, registry = make_metrics()

    def labels(sample_name: str, label: str) -> set[str]:
        return {
            sample.labels[label]
            for family in registry.collect()
            for sample in family.samples
            if sample.name == sample_name
        }

    assert {str(decision) for decision in Decision} == labels("moderation_results_total", "decision")
    assert {str(reason) for reason in DeadLetterReason} == labels("moderation_dead_letters_total", "reason")
    assert {str(outcome) for outcome in AnalyzerOutcome} == labels(
        "moderation_analyzer_calls_total", "outcome"
    )
    assert "host_not_allowed" in labels("moderation_dead_letters_total", "reason")


def test_catalogue_lists_every_sample_name_with_its_type_suffixes() -> None:
    """The name list is what dashboards and alerts may use; it is derived from the registry."""
    _, registry = make_metrics()

    expected = {
        "moderation_submissions_consumed_total",
        "moderation_results_total",
        "moderation_dead_letters_total",
        "moderation_analyzer_calls_total",
        "moderation_analyzer_retries_total",
        "moderation_analyses_total",
        "moderation_tag_detections_total",
        "moderation_in_flight_messages",
        "moderation_assigned_partitions",
        "moderation_paused_partitions",
        "moderation_committed_offset",
        "moderation_consumer_lag_records",
        "moderation_consumer_lag_seconds",
        "moderation_quota_share_calls_per_second",
        "moderation_quota_rate_calls_per_second",
        "moderation_quota_utilization_ratio",
        "moderation_hold_active",
        "moderation_kafka_reachable",
        "moderation_intake_paused",
        "moderation_audit_items_total",
        "moderation_circuit_state",
        "moderation_policy_info",
        "moderation_worker_info",
        "moderation_shadow_decisions_total",
        "moderation_shadow_policy_info",
        "moderation_drift_psi",
        "moderation_drift_jensen_shannon",
        "moderation_drift_reference_proportion",
    } | {
        f"{histogram}{suffix}"
        for histogram in (
            "moderation_analyzer_call_duration_seconds",
            "moderation_limiter_wait_seconds",
            "moderation_commit_duration_seconds",
            "moderation_end_to_end_latency_seconds",
            "moderation_processing_duration_seconds",
            "moderation_tag_confidence",
        )
        for suffix in ("_bucket", "_sum", "_count")
    }
    assert expected == set(exported_sample_names(registry))


def test_every_metric_name_carries_the_prefix_and_no_label_can_hold_an_id() -> None:
    """Bounded labels only: no id, url or key label anywhere in the catalogue."""
    _, registry = make_metrics()
    forbidden = {"id", "image_id", "url", "key", "offset", "reviewer"}

    for family in registry.collect():
        assert family.name.startswith("moderation_")
        for sample in family.samples:
            assert forbidden.isdisjoint(sample.labels)


def test_results_accept_the_decision_enum_and_count_per_decision() -> None:
    """observe_result takes the domain Decision; each decision has its own series."""
    metrics, registry = make_metrics()

    metrics.observe_result(Decision.REJECTED)
    metrics.observe_result(Decision.REJECTED)
    metrics.observe_result("approved")

    assert value(registry, "moderation_results_total", decision="rejected") == 2.0
    assert value(registry, "moderation_results_total", decision="approved") == 1.0
    assert value(registry, "moderation_results_total", decision="needs_review") == 0.0


@pytest.mark.parametrize(
    ("call", "arguments"),
    [
        ("observe_result", ("maybe",)),
        ("observe_dead_letter", ("https://x/y?sig=1",)),
        ("observe_analyzer_call", ("teapot", 0.1)),
        ("observe_consumed", ("some.other.topic",)),
    ],
)
def test_unknown_label_values_are_refused_instead_of_creating_a_series(
    call: str, arguments: tuple[object, ...]
) -> None:
    """An unbounded value (an id, a URL, a typo) raises ValueError and leaves the exposition unchanged."""
    metrics, registry = make_metrics()
    before = generate_latest(registry)
    method = getattr(metrics, call)

    with pytest.raises(ValueError, match="unknown"):
        method(*arguments)

    assert before.count(b"\n") == generate_latest(registry).count(b"\n")
    assert str(arguments[0]).encode() not in generate_latest(registry)


def test_a_circuit_state_outside_closed_half_open_open_is_refused() -> None:
    """The gauge encodes exactly three states; anything else is a bug in the caller."""
    metrics, registry = make_metrics()

    with pytest.raises(ValueError, match="unknown circuit state 3"):
        metrics.set_circuit_state(3)

    assert value(registry, "moderation_circuit_state") == 0.0


def test_dead_letter_reasons_come_from_the_constructor() -> None:
    """The contracts module passes its own reason enum; only those reasons exist."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="1", dead_letter_reasons=("not_json", "too_big"))

    metrics.observe_dead_letter("too_big")

    assert value(registry, "moderation_dead_letters_total", reason="too_big") == 1.0
    assert value(registry, "moderation_dead_letters_total", reason="not_json") == 0.0
    assert value(registry, "moderation_dead_letters_total", reason="oversized") is None


def test_analyzer_call_counts_outcome_and_observes_duration() -> None:
    """Each call lands in its outcome counter and in the duration histogram, whatever the outcome."""
    metrics, registry = make_metrics()

    metrics.observe_analyzer_call("ok", 0.03)
    metrics.observe_analyzer_call("throttled", 0.5)
    metrics.observe_analyzer_retry()

    assert value(registry, "moderation_analyzer_calls_total", outcome="ok") == 1.0
    assert value(registry, "moderation_analyzer_calls_total", outcome="throttled") == 1.0
    assert value(registry, "moderation_analyzer_call_duration_seconds_count") == 2.0
    assert value(registry, "moderation_analyzer_call_duration_seconds_bucket", le="0.05") == 1.0
    assert value(registry, "moderation_analyzer_retries_total") == 1.0


def test_routed_latencies_clamp_a_negative_end_to_end_and_skip_a_missing_one() -> None:
    """A producer clock ahead of ours yields 0 s, not a dropped sample; no submitted_at means no sample."""
    metrics, registry = make_metrics()

    metrics.observe_routed(processing_s=0.2, end_to_end_s=-3.0)
    metrics.observe_routed(processing_s=0.4, end_to_end_s=None)

    assert value(registry, "moderation_processing_duration_seconds_count") == 2.0
    assert value(registry, "moderation_end_to_end_latency_seconds_count") == 1.0
    assert value(registry, "moderation_end_to_end_latency_seconds_sum") == 0.0


def test_set_in_flight_publishes_a_count_kept_by_the_caller() -> None:
    """Owners that count their own tasks publish the number directly."""
    metrics, registry = make_metrics()

    metrics.set_in_flight(7)

    assert value(registry, "moderation_in_flight_messages") == 7.0


def test_revoked_partitions_lose_their_lag_and_offset_series() -> None:
    """After a rebalance only the owner of a partition exports its lag, so lag alerts do not linger."""
    metrics, registry = make_metrics()
    metrics.set_assignment([("images.submitted", 0), ("images.submitted", 1)])
    metrics.set_lag("images.submitted", 0, records=5, seconds=2.5)
    metrics.set_lag("images.submitted", 1, records=7, seconds=9.0)
    metrics.set_committed_offset("images.submitted", 1, 42)

    metrics.set_assignment([("images.submitted", 0)])

    labels = {"topic": "images.submitted"}
    assert value(registry, "moderation_assigned_partitions") == 1.0
    assert value(registry, "moderation_consumer_lag_records", **labels, partition="0") == 5.0
    assert value(registry, "moderation_consumer_lag_seconds", **labels, partition="0") == 2.5
    assert value(registry, "moderation_consumer_lag_records", **labels, partition="1") is None
    assert value(registry, "moderation_consumer_lag_seconds", **labels, partition="1") is None
    assert value(registry, "moderation_committed_offset", **labels, partition="1") is None


def test_policy_info_keeps_only_the_policy_in_force() -> None:
    """A policy update replaces the info series; two versions never show at once."""
    metrics, registry = make_metrics()

    metrics.set_policy("aaa111", "blocklist")
    metrics.set_policy("bbb222", "allowlist")

    assert value(registry, "moderation_policy_info", policy_version="bbb222", mode="allowlist") == 1.0
    assert value(registry, "moderation_policy_info", policy_version="aaa111", mode="blocklist") is None
    assert value(registry, "moderation_worker_info", version="1.2.3") == 1.0


def test_state_gauges_encode_hold_circuit_and_quota() -> None:
    """Hold is 0/1, the circuit 0 closed / 1 half-open / 2 open, quota values are published as given."""
    metrics, registry = make_metrics()

    metrics.set_hold(active=True)
    metrics.set_circuit_state(BreakerState.HALF_OPEN)
    metrics.set_quota(share_per_s=10.0, rate_per_s=6.5)
    metrics.set_quota_utilization(0.8)
    metrics.set_paused_partitions(3)

    assert value(registry, "moderation_hold_active") == 1.0
    assert value(registry, "moderation_circuit_state") == 1.0
    assert value(registry, "moderation_quota_share_calls_per_second") == 10.0
    assert value(registry, "moderation_quota_rate_calls_per_second") == 6.5
    assert value(registry, "moderation_quota_utilization_ratio") == 0.8
    assert value(registry, "moderation_paused_partitions") == 3.0
    metrics.set_circuit_state(2)
    assert value(registry, "moderation_circuit_state") == 2.0


def test_observe_watched_counts_each_watched_tag_once_at_its_best_confidence() -> None:
    """Each analysis feeds the denominator; watched tags feed detections and confidence; others drop.

    As ``DecisionMetrics`` records an analysis: its best confidence per watched tag, then ``observe_watched``.
    """
    metrics, registry = make_metrics()

    for tags in ([Tag("weapon", 0.35), Tag("weapon", 0.72), Tag("cat", 0.99)], []):
        metrics.observe_watched(strongest_of(tags, metrics.watched_tags))

    assert value(registry, "moderation_analyses_total") == 2.0
    assert value(registry, "moderation_tag_detections_total", tag="weapon") == 1.0
    assert value(registry, "moderation_tag_detections_total", tag="gore") == 0.0
    assert value(registry, "moderation_tag_confidence_sum", tag="weapon") == 0.72
    assert value(registry, "moderation_tag_confidence_bucket", tag="weapon", le="0.7") == 0.0
    assert value(registry, "moderation_tag_confidence_bucket", tag="weapon", le="0.8") == 1.0
    assert value(registry, "moderation_tag_detections_total", tag="cat") is None


def test_reference_fills_every_bucket_of_its_dimension() -> None:
    """Missing buckets are published as 0 so PromQL joins never lose a side."""
    metrics, registry = make_metrics()

    metrics.set_reference("decision_mix", "", {"approved": 0.9, "rejected": 0.1})
    metrics.set_reference("tag_detection", "gore", {"detected": 0.02, "not_detected": 0.98})
    metrics.set_reference("tag_confidence", "weapon", {"0.9": 0.5, "1.0": 0.5})

    ref = "moderation_drift_reference_proportion"
    assert value(registry, ref, dimension="decision_mix", tag="", bucket="approved") == 0.9
    assert value(registry, ref, dimension="decision_mix", tag="", bucket="needs_review") == 0.0
    assert value(registry, ref, dimension="tag_detection", tag="gore", bucket="detected") == 0.02
    assert value(registry, ref, dimension="tag_confidence", tag="weapon", bucket="0.1") == 0.0
    assert value(registry, ref, dimension="tag_confidence", tag="weapon", bucket="1.0") == 0.5


@pytest.mark.parametrize(
    ("dimension", "tag", "proportions"),
    [
        ("decision_mix", "weapon", {"approved": 1.0}),
        ("tag_detection", "", {"detected": 1.0}),
        ("tag_detection", "unwatched", {"detected": 1.0}),
        ("tag_confidence", "weapon", {"0.95": 1.0}),
        ("colour", "weapon", {}),
    ],
)
def test_reference_refuses_keys_outside_its_dimension(
    dimension: str, tag: str, proportions: dict[str, float]
) -> None:
    """Drift labels are bounded too: wrong dimension/tag pairs and unknown buckets raise ValueError."""
    metrics, _ = make_metrics()

    with pytest.raises(ValueError, match=r"unknown|tag"):
        metrics.set_reference(dimension, tag, proportions)


def test_drift_scores_are_published_per_dimension_and_tag() -> None:
    """PSI and Jensen-Shannon land on the series named by dimension and tag."""
    metrics, registry = make_metrics()

    metrics.set_drift("decision_mix", "", psi=0.31, jensen_shannon=0.05)
    metrics.set_drift("tag_detection", "weapon", psi=0.02, jensen_shannon=0.001)

    assert value(registry, "moderation_drift_psi", dimension="decision_mix", tag="") == 0.31
    assert value(registry, "moderation_drift_jensen_shannon", dimension="decision_mix", tag="") == 0.05
    assert value(registry, "moderation_drift_psi", dimension="tag_detection", tag="weapon") == 0.02


def test_two_instances_on_separate_registries_do_not_interfere() -> None:
    """Nothing is registered globally: every test and every worker owns its registry."""
    first, first_registry = make_metrics()
    _, second_registry = make_metrics()

    first.observe_result("approved")

    assert value(first_registry, "moderation_results_total", decision="approved") == 1.0
    assert value(second_registry, "moderation_results_total", decision="approved") == 0.0
