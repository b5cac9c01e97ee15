"""The worker's Prometheus metric catalogue, built on an injected registry (never the global one).

Every label is bounded: closed sets are pre-initialised at construction and unknown values raise
``ValueError``; per-partition series exist only while the partition is assigned. No I/O, no clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Final, Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info

from worker.domain import Decision, Tag, strongest_of
from worker.observability.fastmetrics import FastFamilies

DECISIONS: Final = tuple(str(decision) for decision in Decision)
DEAD_LETTER_REASONS: Final = (
    "not_json",
    "not_utf8",
    "schema_invalid",
    "oversized",
    "unsafe_url",
    "consent_missing",
    "empty_value",
)
AnalyzerOutcome = Literal["ok", "throttled", "server", "timeout", "connection", "image", "fatal"]
ANALYZER_OUTCOMES: Final[tuple[AnalyzerOutcome, ...]] = (
    "ok",
    "throttled",
    "server",
    "timeout",
    "connection",
    "image",
    "fatal",
)
ANALYZER_ERROR_OUTCOMES: Final = ("server", "timeout", "connection", "fatal")
"""Outcomes that spend the analyzer error budget (docs/alerts.md); throttled and image are not ours."""

DriftDimension = Literal["decision_mix", "tag_detection", "tag_confidence"]

CIRCUIT_STATES: Final = (0, 1, 2)
"""Circuit gauge values: 0 closed, 1 half-open, 2 open (``worker.analysis.breaker.BreakerState`` values)."""
DRIFT_DIMENSIONS: Final = ("decision_mix", "tag_detection", "tag_confidence")
TAG_DETECTION_BUCKETS: Final = ("detected", "not_detected")

ANALYZER_CALL_BUCKETS_S: Final = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0)
LIMITER_WAIT_BUCKETS_S: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
COMMIT_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A paused partition can hold a message for many minutes, so end-to-end latency reaches up to an hour.
END_TO_END_BUCKETS_S: Final = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
    3600.0,
)
PROCESSING_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
CONFIDENCE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Upper bounds of the confidence bins; ``tag_confidence`` reference buckets are labelled with them."""

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


_Value = TypeVar("_Value")
_Child_co = TypeVar("_Child_co", covariant=True)


class _Labelled(Protocol[_Child_co]):
    def labels(self, *values: str) -> _Child_co: ...


def _bind(metric: _Labelled[_Child_co], values: Iterable[str]) -> dict[str, _Child_co]:
    """Pre-initialise one child per label value so every series exists (as 0) from the first scrape."""
    return {value: metric.labels(value) for value in values}


def _pick(children: Mapping[str, _Value], value: str, what: str) -> _Value:
    try:
        return children[value]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(children)}") from None


class Metrics:
    """Named recording methods over the catalogue in docs/metrics.md.

    ``dead_letter_reasons`` is the closed set of dead-letter reasons (the contracts module passes its enum);
    ``watched_tags`` are the tags whose detection rate and confidence feed drift; ``input_topics`` are the
    consumed topics. All three are label sets, fixed for the life of the object.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        input_topics: Sequence[str] = ("images.submitted",),
        dead_letter_reasons: Iterable[str] = DEAD_LETTER_REASONS,
        watched_tags: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.watched_tags: tuple[str, ...] = tuple(dict.fromkeys(str(tag) for tag in watched_tags))
        reasons = tuple(dict.fromkeys(str(reason) for reason in dead_letter_reasons))
        # Families updated on every message skip prometheus_client's per-update lock (fastmetrics.py).
        self._fast = FastFamilies(registry)
        self._build_flow(input_topics, reasons)
        self._build_analyzer(registry)
        self._build_kafka(registry)
        self._build_state(registry, version)
        self._build_drift(registry)

    # --- construction -------------------------------------------------------------------------------

    def _build_flow(self, topics: Sequence[str], reasons: Sequence[str]) -> None:
        fast = self._fast
        self._consumed = _bind(
            fast.counter(
                "moderation_submissions_consumed", "Submission records taken from the input topic.", ["topic"]
            ),
            topics,
        )
        self._results = _bind(
            fast.counter("moderation_results", "Results routed, by decision.", ["decision"]),
            DECISIONS,
        )
        self._dead_letters = _bind(
            fast.counter(
                "moderation_dead_letters", "Records routed to the dead-letter topic, by reason.", ["reason"]
            ),
            reasons,
        )
        # Unlabelled families recorded per message are held as their one series: a call less per update.
        self._end_to_end = fast.histogram(
            "moderation_end_to_end_latency_seconds",
            "From the submission's submitted_at to its result being acknowledged by the broker.",
            buckets=END_TO_END_BUCKETS_S,
        ).labels()
        self._processing = fast.histogram(
            "moderation_processing_duration_seconds",
            "From the record being consumed to its result being acknowledged by the broker.",
            buckets=PROCESSING_BUCKETS_S,
        ).labels()
        self._in_flight = fast.gauge(
            "moderation_in_flight_messages", "Messages consumed and not yet routed."
        ).labels()

    def _build_analyzer(self, registry: CollectorRegistry) -> None:
        fast = self._fast
        self._call_duration = fast.histogram(
            "moderation_analyzer_call_duration_seconds",
            "Wall time of one analyzer call, whatever its outcome.",
            buckets=ANALYZER_CALL_BUCKETS_S,
        ).labels()
        self._calls = _bind(
            fast.counter("moderation_analyzer_calls", "Analyzer calls by outcome class.", ["outcome"]),
            ANALYZER_OUTCOMES,
        )
        self._retries = fast.counter(
            "moderation_analyzer_retries", "Analyzer calls that were retries of a failed call."
        )
        self._limiter_wait = fast.histogram(
            "moderation_limiter_wait_seconds",
            "Time spent waiting for a rate-limiter token before an analyzer call.",
            buckets=LIMITER_WAIT_BUCKETS_S,
        ).labels()
        self._quota_share = Gauge(
            "moderation_quota_share_calls_per_second",
            "This replica's share of the analyzer quota (quota x share of assigned partitions).",
            registry=registry,
        )
        self._quota_rate = Gauge(
            "moderation_quota_rate_calls_per_second",
            "The limiter's current rate: the share, lowered while recovering from throttling.",
            registry=registry,
        )
        self._quota_utilization = Gauge(
            "moderation_quota_utilization_ratio",
            "Calls made divided by calls the share allowed, over the limiter's last window (0..1).",
            registry=registry,
        )
        self._circuit_state = Gauge(
            "moderation_circuit_state",
            "Analyzer circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=registry,
        )

    def _build_kafka(self, registry: CollectorRegistry) -> None:
        self._assigned = Gauge(
            "moderation_assigned_partitions", "Input partitions assigned to this replica.", registry=registry
        )
        self._paused = Gauge(
            "moderation_paused_partitions", "Assigned partitions currently paused.", registry=registry
        )
        self._commit_duration = Histogram(
            "moderation_commit_duration_seconds",
            "Wall time of one offset commit request.",
            buckets=COMMIT_BUCKETS_S,
            registry=registry,
        )
        partition = ["topic", "partition"]
        self._committed = Gauge(
            "moderation_committed_offset",
            "Last committed offset (next offset to read) per assigned partition.",
            partition,
            registry=registry,
        )
        self._lag_records = Gauge(
            "moderation_consumer_lag_records",
            "High watermark minus the committed offset, per assigned partition.",
            partition,
            registry=registry,
        )
        self._lag_seconds = Gauge(
            "moderation_consumer_lag_seconds",
            "Age of the oldest unfinished record (from its Kafka timestamp), 0 when caught up.",
            partition,
            registry=registry,
        )
        self._partitions: set[tuple[str, int]] = set()

    def _build_state(self, registry: CollectorRegistry, version: str) -> None:
        self._policy = Info(
            "moderation_policy", "The policy in force: version hash and mode.", registry=registry
        )
        self._hold = Gauge(
            "moderation_hold_active", "1 while a hold turns approvals into reviews.", registry=registry
        )
        Info("moderation_worker", "The worker build.", registry=registry).info({"version": version})

    def _build_drift(self, registry: CollectorRegistry) -> None:
        drift_labels = ["dimension", "tag"]
        self._psi = Gauge(
            "moderation_drift_psi",
            "Population stability index of the current window against the reference.",
            drift_labels,
            registry=registry,
        )
        self._jensen_shannon = Gauge(
            "moderation_drift_jensen_shannon",
            "Jensen-Shannon divergence (base 2, 0..1) of the current window against the reference.",
            drift_labels,
            registry=registry,
        )
        self._reference = Gauge(
            "moderation_drift_reference_proportion",
            "The pinned reference distribution, one series per bucket, so PromQL can compute drift.",
            ["dimension", "tag", "bucket"],
            registry=registry,
        )
        fast = self._fast
        self._confidence = _bind(
            fast.histogram(
                "moderation_tag_confidence",
                "Confidence of each watched tag when the analyzer reported it.",
                ["tag"],
                buckets=CONFIDENCE_BUCKETS,
            ),
            self.watched_tags,
        )
        self._detections = _bind(
            fast.counter(
                "moderation_tag_detections", "Analyses in which a watched tag was reported.", ["tag"]
            ),
            self.watched_tags,
        )
        self._analyses = fast.counter(
            "moderation_analyses", "Successful analyses (the denominator of detection rates)."
        ).labels()
        for key in self._drift_keys():
            self._psi.labels(*key)
            self._jensen_shannon.labels(*key)

    def _drift_keys(self) -> Iterator[tuple[str, str]]:
        yield ("decision_mix", "")
        for tag in self.watched_tags:
            yield ("tag_detection", tag)
            yield ("tag_confidence", tag)

    # --- message flow -------------------------------------------------------------------------------

    def observe_consumed(self, topic: str, count: int = 1) -> None:
        """Count ``count`` records taken from ``topic`` (one of ``input_topics``)."""
        _pick(self._consumed, topic, "input topic").inc(count)

    def observe_result(self, decision: str) -> None:
        """Count one result routed with ``decision`` (a ``Decision`` or its value)."""
        _pick(self._results, decision, "decision").value += 1.0

    def observe_dead_letter(self, reason: str) -> None:
        """Count one record dead-lettered for ``reason`` (one of ``dead_letter_reasons``)."""
        _pick(self._dead_letters, str(reason), "dead-letter reason").inc()

    def observe_routed(self, *, processing_s: float, end_to_end_s: float | None) -> None:
        """Record the latencies of one routed message; ``end_to_end_s`` is None without ``submitted_at``.

        Negative end-to-end values (producer clock ahead of ours) are clamped to 0 rather than dropped.
        """
        self._processing.observe(processing_s)
        if end_to_end_s is not None:
            self._end_to_end.observe(max(end_to_end_s, 0.0))

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count the enclosed block as one in-flight message (works around awaits)."""
        self._in_flight.inc()
        try:
            yield
        finally:
            self._in_flight.dec()

    def set_in_flight(self, count: int) -> None:
        """Publish how many messages are in flight (for owners that count them themselves)."""
        self._in_flight.set(count)

    # --- analyzer and quota -------------------------------------------------------------------------

    def observe_analyzer_call(self, outcome: AnalyzerOutcome, seconds: float, waited_s: float = 0.0) -> None:
        """Record one analyzer call that took ``seconds`` and ended in ``outcome``, after waiting
        ``waited_s`` for its rate-limiter token."""
        _pick(self._calls, outcome, "analyzer outcome").value += 1.0
        self._call_duration.observe(seconds)
        self._limiter_wait.observe(waited_s)

    def observe_analyzer_retry(self) -> None:
        """Count one call that repeats an earlier failed call for the same message."""
        self._retries.inc()

    def observe_limiter_wait(self, seconds: float) -> None:
        """Record the time one call waited for its rate-limiter token."""
        self._limiter_wait.observe(seconds)

    def set_quota(self, *, share_per_s: float, rate_per_s: float) -> None:
        """Publish this replica's quota share and the limiter's current (possibly reduced) rate."""
        self._quota_share.set(share_per_s)
        self._quota_rate.set(rate_per_s)

    def set_quota_utilization(self, ratio: float) -> None:
        """Publish calls made / calls allowed by the share over the limiter's last window."""
        self._quota_utilization.set(ratio)

    def set_circuit_state(self, state: int) -> None:
        """Publish the analyzer circuit state: 0 closed, 1 half-open, 2 open (a ``BreakerState`` fits)."""
        if state not in CIRCUIT_STATES:
            raise ValueError(f"unknown circuit state {state!r}; expected one of {CIRCUIT_STATES}")
        self._circuit_state.set(int(state))

    # --- Kafka --------------------------------------------------------------------------------------

    def set_assignment(self, partitions: Collection[tuple[str, int]]) -> None:
        """Publish the assigned partitions and drop the per-partition series of revoked ones.

        Dropping matters: a stale lag series on a replica that no longer owns the partition would keep
        lag alerts firing after a rebalance.
        """
        current = {(topic, int(partition)) for topic, partition in partitions}
        for topic, partition in self._partitions - current:
            for gauge in (self._committed, self._lag_records, self._lag_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, str(partition))
        self._partitions = current
        self._assigned.set(len(current))

    def set_paused_partitions(self, count: int) -> None:
        """Publish how many assigned partitions are paused right now."""
        self._paused.set(count)

    def observe_commit(self, seconds: float) -> None:
        """Record the duration of one commit request."""
        self._commit_duration.observe(seconds)

    def set_committed_offset(self, topic: str, partition: int, offset: int) -> None:
        """Publish the committed offset of an assigned partition (also at assignment, before any commit)."""
        self._committed.labels(topic, str(partition)).set(offset)

    def set_lag(self, topic: str, partition: int, records: int, seconds: float) -> None:
        """Publish the lag of an assigned partition in records and in seconds."""
        key = (topic, str(partition))
        self._lag_records.labels(*key).set(records)
        self._lag_seconds.labels(*key).set(seconds)

    # --- policy and state ---------------------------------------------------------------------------

    def set_policy(self, version: str, mode: str) -> None:
        """Publish the policy in force; replaces the previous version's series."""
        self._policy.info({"policy_version": version, "mode": mode})

    def set_hold(self, *, active: bool) -> None:
        """Publish whether a hold is active."""
        self._hold.set(1 if active else 0)

    # --- drift --------------------------------------------------------------------------------------

    def observe_tags(self, tags: Iterable[Tag]) -> None:
        """Record one successful analysis: detection and confidence of each watched tag it reported.

        Tags outside ``watched_tags`` are ignored (bounded labels); a tag reported twice counts once,
        at its highest confidence.
        """
        self.observe_watched(strongest_of(tags, self._detections))

    def observe_watched(self, best: Mapping[str, float]) -> None:
        """``observe_tags`` for a caller that already has the best confidence of each watched tag seen."""
        self._analyses.value += 1.0
        for name, confidence in best.items():
            self._detections[name].value += 1.0
            self._confidence[name].observe(confidence)

    def set_drift(self, dimension: DriftDimension, tag: str, *, psi: float, jensen_shannon: float) -> None:
        """Publish drift scores; ``tag`` is ``""`` for ``decision_mix`` and a watched tag otherwise."""
        key = self._drift_key(dimension, tag)
        self._psi.labels(*key).set(psi)
        self._jensen_shannon.labels(*key).set(jensen_shannon)

    def set_reference(self, dimension: DriftDimension, tag: str, proportions: Mapping[str, float]) -> None:
        """Publish the reference distribution of one drift dimension; replaces what was there.

        Bucket labels: decision values for ``decision_mix``; ``detected``/``not_detected`` for
        ``tag_detection``; bin upper bounds formatted like ``le`` (``"0.1"`` .. ``"1.0"``) for
        ``tag_confidence``.
        """
        key = self._drift_key(dimension, tag)
        allowed = _reference_buckets(dimension)
        unknown = set(proportions) - set(allowed)
        if unknown:
            raise ValueError(f"unknown {dimension} buckets {sorted(unknown)}; expected {list(allowed)}")
        for bucket in allowed:
            self._reference.labels(*key, bucket).set(proportions.get(bucket, 0.0))

    def _drift_key(self, dimension: str, tag: str) -> tuple[str, str]:
        if dimension not in DRIFT_DIMENSIONS:
            raise ValueError(f"unknown drift dimension {dimension!r}; expected one of {DRIFT_DIMENSIONS}")
        if (dimension == "decision_mix") != (tag == ""):
            raise ValueError("tag must be '' for decision_mix and a watched tag otherwise")
        if tag and tag not in self.watched_tags:
            raise ValueError(f"tag {tag!r} is not watched; watched: {list(self.watched_tags)}")
        return (dimension, tag)


def _reference_buckets(dimension: str) -> tuple[str, ...]:
    if dimension == "decision_mix":
        return DECISIONS
    if dimension == "tag_detection":
        return TAG_DETECTION_BUCKETS
    return tuple(str(bound) for bound in CONFIDENCE_BUCKETS)
