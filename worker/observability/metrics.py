"""The worker's recording methods over its Prometheus metric catalogue (``worker.observability.catalogue``).

Every label is bounded: closed sets are pre-initialised at construction and unknown values raise
``ValueError``; per-partition series exist only while the partition is assigned. No I/O, no clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry

from worker.observability.catalogue import (
    ANALYZER_OUTCOMES,
    CIRCUIT_STATES,
    DEAD_LETTER_REASONS,
    DRIFT_DIMENSIONS,
    Catalogue,
    exported_sample_names,
    reference_buckets,
)
from worker.observability.drift import DriftDimension

__all__ = ["ANALYZER_OUTCOMES", "DEAD_LETTER_REASONS", "Metrics", "exported_sample_names"]

_Child = TypeVar("_Child")


def _pick(children: Mapping[str, _Child], value: str, what: str) -> _Child:
    try:
        return children[value]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(children)}") from None


class Metrics:
    """Named recording methods over the catalogue in docs/metrics.md, built on ``registry``.

    ``input_topics`` are the consumed topics; ``dead_letter_reasons`` the closed set of dead-letter reasons
    (``worker.contracts.DeadLetterReason`` by default); ``watched_tags`` the tags whose detection rate and
    confidence feed drift. All three are label sets, fixed for the life of the object.
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
        self.watched_tags: tuple[str, ...] = tuple(dict.fromkeys(str(tag) for tag in watched_tags))
        self._families = Catalogue(
            registry,
            version=version,
            input_topics=input_topics,
            dead_letter_reasons=tuple(dict.fromkeys(str(reason) for reason in dead_letter_reasons)),
            watched_tags=self.watched_tags,
        )
        self._partitions: set[tuple[str, int]] = set()

    # --- message flow -------------------------------------------------------------------------------

    def observe_consumed(self, topic: str, count: int = 1) -> None:
        """Count ``count`` records taken from ``topic`` (one of ``input_topics``)."""
        _pick(self._families.consumed, topic, "input topic").inc(count)

    def observe_result(self, decision: str) -> None:
        """Count one result routed with ``decision`` (a ``Decision`` or its value)."""
        _pick(self._families.results, decision, "decision").inc()

    def observe_dead_letter(self, reason: str) -> None:
        """Count one record dead-lettered for ``reason`` (one of ``dead_letter_reasons``)."""
        _pick(self._families.dead_letters, reason, "dead-letter reason").inc()

    def observe_routed(self, *, processing_s: float, end_to_end_s: float | None) -> None:
        """Record the latencies of one routed message; ``end_to_end_s`` is None without ``submitted_at``.

        Negative end-to-end values (producer clock ahead of ours) are clamped to 0 rather than dropped.
        """
        self._families.processing.observe(processing_s)
        if end_to_end_s is not None:
            self._families.end_to_end.observe(max(end_to_end_s, 0.0))

    def set_in_flight(self, count: int) -> None:
        """Publish how many messages are consumed and not yet routed."""
        self._families.in_flight.set(count)

    # --- analyzer and quota -------------------------------------------------------------------------

    def observe_analyzer_call(self, outcome: str, seconds: float, waited_s: float = 0.0) -> None:
        """Record one analyzer call that took ``seconds`` and ended in ``outcome`` (an ``AnalyzerOutcome``),
        after waiting ``waited_s`` for its rate-limiter token."""
        _pick(self._families.calls, outcome, "analyzer outcome").inc()
        self._families.call_duration.observe(seconds)
        self._families.limiter_wait.observe(waited_s)

    def observe_analyzer_retry(self) -> None:
        """Count one call that repeats an earlier failed call for the same message."""
        self._families.retries.inc()

    def set_quota(self, *, share_per_s: float, rate_per_s: float) -> None:
        """Publish this replica's quota share and the limiter's current (possibly reduced) rate."""
        self._families.quota_share.set(share_per_s)
        self._families.quota_rate.set(rate_per_s)

    def set_quota_utilization(self, ratio: float) -> None:
        """Publish calls made / calls allowed by the share over the limiter's last window."""
        self._families.quota_utilization.set(ratio)

    def set_circuit_state(self, state: int) -> None:
        """Publish the analyzer circuit state, a ``BreakerState``: 0 closed, 1 half-open, 2 open."""
        if state not in CIRCUIT_STATES:
            raise ValueError(f"unknown circuit state {state!r}; expected one of {CIRCUIT_STATES}")
        self._families.circuit_state.set(int(state))

    # --- Kafka --------------------------------------------------------------------------------------

    def set_assignment(self, partitions: Collection[tuple[str, int]]) -> None:
        """Publish the assigned partitions and drop the per-partition series of revoked ones.

        Dropping matters: a stale lag series on a replica that no longer owns the partition would keep
        lag alerts firing after a rebalance.
        """
        families = self._families
        current = {(topic, int(partition)) for topic, partition in partitions}
        for topic, partition in self._partitions - current:
            for gauge in (families.committed, families.lag_records, families.lag_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, str(partition))
        self._partitions = current
        families.assigned.set(len(current))

    def set_paused_partitions(self, count: int) -> None:
        """Publish how many assigned partitions are paused right now."""
        self._families.paused.set(count)

    def observe_commit(self, seconds: float) -> None:
        """Record the duration of one commit request."""
        self._families.commit_duration.observe(seconds)

    def set_committed_offset(self, topic: str, partition: int, offset: int) -> None:
        """Publish the committed offset of an assigned partition (also at assignment, before any commit)."""
        self._families.committed.labels(topic, str(partition)).set(offset)

    def set_lag(self, topic: str, partition: int, records: int, seconds: float) -> None:
        """Publish the lag of an assigned partition in records and in seconds."""
        key = (topic, str(partition))
        self._families.lag_records.labels(*key).set(records)
        self._families.lag_seconds.labels(*key).set(seconds)

    def set_kafka_reachable(self, *, reachable: bool) -> None:
        """Publish whether the Kafka cluster answers the replica's probe."""
        self._families.kafka_reachable.set(1 if reachable else 0)

    # --- policy and state ---------------------------------------------------------------------------

    def set_policy(self, version: str, mode: str) -> None:
        """Publish the policy in force; replaces the previous version's series."""
        self._families.policy.info({"policy_version": version, "mode": mode})

    def set_hold(self, *, active: bool) -> None:
        """Publish whether a hold is active."""
        self._families.hold.set(1 if active else 0)

    def set_shadow_policy(self, version: str, mode: str) -> None:
        """Publish the shadow policy decided beside the live one (``MODERATION_SHADOW_POLICY_FILE``)."""
        self._families.shadow_policy.info({"policy_version": version, "mode": mode})

    def observe_shadow_decision(self, live: str, shadow: str) -> None:
        """Count one analyzed image decided ``live`` by the live policy and ``shadow`` by the shadow one
        (both ``Decision`` values): one cell of the agreement matrix."""
        try:
            cell = self._families.shadow_decisions[(live, shadow)]
        except KeyError:
            raise ValueError(f"unknown decision pair {(live, shadow)!r}; expected Decision values") from None
        cell.inc()

    def set_intake_paused(self, *, paused: bool) -> None:
        """Publish whether intake is paused."""
        self._families.intake_paused.set(1 if paused else 0)

    def observe_audit_item(self, decision: str) -> None:
        """Count one acknowledged audit item copying an automatic ``decision`` (approved or rejected)."""
        _pick(self._families.audit_items, decision, "audited decision").inc()

    # --- drift --------------------------------------------------------------------------------------

    def observe_watched(self, best: Mapping[str, float]) -> None:
        """Record one successful analysis: ``best`` holds the best confidence of each watched tag it
        reported (``worker.domain.strongest_of(tags, watched_tags)``), each counted as a detection."""
        families = self._families
        families.analyses.inc()
        for name, confidence in best.items():
            families.detections[name].inc()
            families.confidence[name].observe(confidence)

    def set_drift(self, dimension: str, tag: str, *, psi: float, jensen_shannon: float) -> None:
        """Publish drift scores of a ``DriftDimension``; ``tag`` is ``""`` for ``decision_mix`` and a watched
        tag otherwise."""
        key = self._drift_key(dimension, tag)
        self._families.psi.labels(*key).set(psi)
        self._families.jensen_shannon.labels(*key).set(jensen_shannon)

    def set_reference(self, dimension: str, tag: str, proportions: Mapping[str, float]) -> None:
        """Publish the reference distribution of one ``DriftDimension``; replaces what was there.

        Bucket labels: decision values for ``decision_mix``; ``detected``/``not_detected`` for
        ``tag_detection``; bin upper bounds formatted like ``le`` (``"0.1"`` .. ``"1.0"``) for
        ``tag_confidence``.
        """
        key = self._drift_key(dimension, tag)
        allowed = reference_buckets(DriftDimension(dimension))
        unknown = set(proportions) - set(allowed)
        if unknown:
            raise ValueError(f"unknown {dimension} buckets {sorted(unknown)}; expected {list(allowed)}")
        for bucket in allowed:
            self._families.reference.labels(*key, bucket).set(proportions.get(bucket, 0.0))

    def _drift_key(self, dimension: str, tag: str) -> tuple[str, str]:
        if dimension not in DRIFT_DIMENSIONS:
            raise ValueError(f"unknown drift dimension {dimension!r}; expected one of {DRIFT_DIMENSIONS}")
        if (dimension == DriftDimension.DECISION_MIX) != (tag == ""):
            raise ValueError("tag must be '' for decision_mix and a watched tag otherwise")
        if tag and tag not in self.watched_tags:
            raise ValueError(f"tag {tag!r} is not watched; watched: {list(self.watched_tags)}")
        return (dimension, tag)
