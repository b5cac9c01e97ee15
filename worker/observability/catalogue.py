"""The worker's metric catalogue (docs/metrics.md): every family's name, type, help, labels and buckets.

``Catalogue`` builds the families as prometheus_client's own ``Counter``, ``Gauge``, ``Histogram`` and
``Info`` on the registry it is given (never the global one), with one child per value of every closed label
set, so each of those series exists (as 0) from the first scrape. The closed label sets are derived from the
enums that define them. ``worker.observability.metrics.Metrics`` records on the families.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from worker.analysis.breaker import BreakerState
from worker.contracts import DeadLetterReason
from worker.domain import Decision
from worker.errors import AnalyzerOutcome
from worker.observability.drift import DETECTION_BUCKETS, DriftDimension, confidence_buckets
from worker.sampling import AUDITED_DECISIONS as _SAMPLED_DECISIONS

DECISIONS: Final = tuple(str(decision) for decision in Decision)
AUDITED_DECISIONS: Final = tuple(str(decision) for decision in _SAMPLED_DECISIONS)
DEAD_LETTER_REASONS: Final = tuple(str(reason) for reason in DeadLetterReason)
ANALYZER_OUTCOMES: Final = tuple(AnalyzerOutcome)
CIRCUIT_STATES: Final = tuple(int(state) for state in BreakerState)
"""Circuit gauge values: 0 closed, 1 half-open, 2 open."""
DRIFT_DIMENSIONS: Final = tuple(str(dimension) for dimension in DriftDimension)
TAG_DETECTION_BUCKETS: Final = DETECTION_BUCKETS
CONFIDENCE_LABELS: Final = confidence_buckets()
"""``tag_confidence`` reference buckets: the confidence bins' upper bounds, ``"0.1"`` .. ``"1.0"``."""
CONFIDENCE_BUCKETS: Final = tuple(float(label) for label in CONFIDENCE_LABELS)
"""The same bounds as the ``moderation_tag_confidence`` histogram's buckets."""

# fmt: off
ANALYZER_CALL_BUCKETS_S: Final = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0)
LIMITER_WAIT_BUCKETS_S: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
COMMIT_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A paused partition can hold a message for many minutes, so end-to-end latency reaches up to an hour.
END_TO_END_BUCKETS_S: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
)
PROCESSING_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# fmt: on

_SUFFIXES_BY_TYPE: Final[Mapping[str, tuple[str, ...]]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_sample_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``, ``_info``... included).

    Derived from the family types, so labelled families that have no child yet still count.
    """
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES_BY_TYPE.get(family.type, ("",)))
    return frozenset(names)


_Child_co = TypeVar("_Child_co", covariant=True)


class _Labelled(Protocol[_Child_co]):
    def labels(self, *values: str) -> _Child_co: ...


def _children(metric: _Labelled[_Child_co], values: Iterable[str]) -> dict[str, _Child_co]:
    """One child per label value, made now so every series exists (as 0) from the first scrape."""
    return {value: metric.labels(value) for value in values}


class Catalogue:
    """Every family on ``registry``; closed label sets as dicts of children by label value.

    ``input_topics``, ``dead_letter_reasons`` and ``watched_tags`` are label sets fixed for the life of the
    object; the dead-letter reasons default to ``worker.contracts.DeadLetterReason``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        input_topics: Sequence[str],
        dead_letter_reasons: Sequence[str],
        watched_tags: Sequence[str],
    ) -> None:
        # --- message flow
        self.consumed = _children(
            Counter(
                "moderation_submissions_consumed",
                "Submission records taken from the input topic.",
                ["topic"],
                registry=registry,
            ),
            input_topics,
        )
        self.results = _children(
            Counter("moderation_results", "Results routed, by decision.", ["decision"], registry=registry),
            DECISIONS,
        )
        self.dead_letters = _children(
            Counter(
                "moderation_dead_letters",
                "Records routed to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            dead_letter_reasons,
        )
        self.end_to_end = Histogram(
            "moderation_end_to_end_latency_seconds",
            "From the submission's submitted_at to its result being acknowledged by the broker.",
            buckets=END_TO_END_BUCKETS_S,
            registry=registry,
        )
        self.processing = Histogram(
            "moderation_processing_duration_seconds",
            "From the record being consumed to its result being acknowledged by the broker.",
            buckets=PROCESSING_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "moderation_in_flight_messages", "Messages consumed and not yet routed.", registry=registry
        )
        # --- analyzer and quota
        self.call_duration = Histogram(
            "moderation_analyzer_call_duration_seconds",
            "Wall time of one analyzer call, whatever its outcome.",
            buckets=ANALYZER_CALL_BUCKETS_S,
            registry=registry,
        )
        self.calls = _children(
            Counter(
                "moderation_analyzer_calls",
                "Analyzer calls by outcome class.",
                ["outcome"],
                registry=registry,
            ),
            ANALYZER_OUTCOMES,
        )
        self.retries = Counter(
            "moderation_analyzer_retries",
            "Analyzer calls that were retries of a failed call.",
            registry=registry,
        )
        self.limiter_wait = Histogram(
            "moderation_limiter_wait_seconds",
            "Time spent waiting for a rate-limiter token before an analyzer call.",
            buckets=LIMITER_WAIT_BUCKETS_S,
            registry=registry,
        )
        self.quota_share = Gauge(
            "moderation_quota_share_calls_per_second",
            "This replica's share of the analyzer quota (quota x share of assigned partitions).",
            registry=registry,
        )
        self.quota_rate = Gauge(
            "moderation_quota_rate_calls_per_second",
            "The limiter's current rate: the share, lowered while recovering from throttling.",
            registry=registry,
        )
        self.quota_utilization = Gauge(
            "moderation_quota_utilization_ratio",
            "Calls made divided by calls the share allowed, over the limiter's last window (0..1).",
            registry=registry,
        )
        self.circuit_state = Gauge(
            "moderation_circuit_state",
            "Analyzer circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=registry,
        )
        # --- Kafka
        self.assigned = Gauge(
            "moderation_assigned_partitions", "Input partitions assigned to this replica.", registry=registry
        )
        self.paused = Gauge(
            "moderation_paused_partitions", "Assigned partitions currently paused.", registry=registry
        )
        self.commit_duration = Histogram(
            "moderation_commit_duration_seconds",
            "Wall time of one offset commit request.",
            buckets=COMMIT_BUCKETS_S,
            registry=registry,
        )
        partition = ["topic", "partition"]
        self.committed = Gauge(
            "moderation_committed_offset",
            "Last committed offset (next offset to read) per assigned partition.",
            partition,
            registry=registry,
        )
        self.lag_records = Gauge(
            "moderation_consumer_lag_records",
            "High watermark minus the committed offset, per assigned partition.",
            partition,
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "moderation_consumer_lag_seconds",
            "Age of the oldest unfinished record (from its Kafka timestamp), 0 when caught up.",
            partition,
            registry=registry,
        )
        self.kafka_reachable = Gauge(
            "moderation_kafka_reachable",
            "1 while the Kafka cluster answers this replica's metadata probe, 0 during an outage.",
            registry=registry,
        )
        # --- policy and state
        self.policy = Info(
            "moderation_policy", "The policy in force: version hash and mode.", registry=registry
        )
        self.hold = Gauge(
            "moderation_hold_active", "1 while a hold turns approvals into reviews.", registry=registry
        )
        self.intake_paused = Gauge(
            "moderation_intake_paused",
            "1 while intake is paused (moderation-worker pause): nothing new is consumed, lag grows.",
            registry=registry,
        )
        self.audit_items = _children(
            Counter(
                "moderation_audit_items",
                "Audit items produced (acknowledged), by the automatic decision they copy.",
                ["decision"],
                registry=registry,
            ),
            AUDITED_DECISIONS,
        )
        Info("moderation_worker", "The worker build.", registry=registry).info({"version": version})
        # --- shadow policy: the live x shadow agreement matrix, nine series from the first scrape
        shadow = Counter(
            "moderation_shadow_decisions",
            "Analyzed images by the live decision and the shadow policy's decision.",
            ["live", "shadow"],
            registry=registry,
        )
        self.shadow_decisions = {
            (live, other): shadow.labels(live, other) for live in DECISIONS for other in DECISIONS
        }
        self.shadow_policy = Info(
            "moderation_shadow_policy",
            "The shadow policy decided beside the live one: version hash and mode (no labels: none).",
            registry=registry,
        )
        # --- drift
        drift_labels = ["dimension", "tag"]
        self.psi = Gauge(
            "moderation_drift_psi",
            "Population stability index of the current window against the reference.",
            drift_labels,
            registry=registry,
        )
        self.jensen_shannon = Gauge(
            "moderation_drift_jensen_shannon",
            "Jensen-Shannon divergence (base 2, 0..1) of the current window against the reference.",
            drift_labels,
            registry=registry,
        )
        self.reference = Gauge(
            "moderation_drift_reference_proportion",
            "The pinned reference distribution, one series per bucket, so PromQL can compute drift.",
            ["dimension", "tag", "bucket"],
            registry=registry,
        )
        self.confidence = _children(
            Histogram(
                "moderation_tag_confidence",
                "Confidence of each watched tag when the analyzer reported it.",
                ["tag"],
                buckets=CONFIDENCE_BUCKETS,
                registry=registry,
            ),
            watched_tags,
        )
        self.detections = _children(
            Counter(
                "moderation_tag_detections",
                "Analyses in which a watched tag was reported.",
                ["tag"],
                registry=registry,
            ),
            watched_tags,
        )
        self.analyses = Counter(
            "moderation_analyses",
            "Successful analyses (the denominator of detection rates).",
            registry=registry,
        )
        for dimension, tag in drift_keys(watched_tags):
            self.psi.labels(dimension, tag)
            self.jensen_shannon.labels(dimension, tag)


def drift_keys(watched_tags: Iterable[str]) -> Iterator[tuple[str, str]]:
    """The ``(dimension, tag)`` of every drift score: the decision mix, then two per watched tag."""
    yield (DriftDimension.DECISION_MIX, "")
    for tag in watched_tags:
        yield (DriftDimension.TAG_DETECTION, tag)
        yield (DriftDimension.TAG_CONFIDENCE, tag)


def reference_buckets(dimension: DriftDimension) -> tuple[str, ...]:
    """The bucket labels of a dimension's reference distribution."""
    if dimension == DriftDimension.DECISION_MIX:
        return DECISIONS
    if dimension == DriftDimension.TAG_DETECTION:
        return TAG_DETECTION_BUCKETS
    return CONFIDENCE_LABELS
