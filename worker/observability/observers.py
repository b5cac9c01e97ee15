"""Adapters from the pipeline's observer hooks to metrics, health probes and the drift monitor.

The pipeline, the guarded analyzer and the moderator report what happened through small Protocols; this module
is the one place that turns those reports into Prometheus series, readiness and drift scores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import TopicPartition

from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis, Verdict, strongest_of
from worker.errors import AnalyzerOutcome
from worker.moderation import DEAD_LETTER_LABEL
from worker.observability.drift import DriftMonitor, save_reference
from worker.observability.metrics import Metrics
from worker.observability.ops_server import HealthState
from worker.records import ConsumedRecord, Routed

log = logging.getLogger(__name__)

_UNREACHABLE = frozenset({AnalyzerOutcome.CONNECTION, AnalyzerOutcome.TIMEOUT})
"""Outcomes without an HTTP answer: every other outcome proves the analyzer reachable."""


class PipelineMetrics:
    """``worker.kafka.loop.PipelineObserver`` onto ``Metrics`` and ``HealthState``."""

    def __init__(
        self,
        metrics: Metrics,
        health: HealthState,
        *,
        audit_topic: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        """``now``: wall-clock seconds since the epoch (end-to-end latency compares it with submit times);
        side records on ``audit_topic`` count as audit items."""
        self._metrics = metrics
        self._health = health
        self._audit_topic = audit_topic
        self._now = now

    def consumed(self, topic: str, count: int) -> None:
        self._metrics.observe_consumed(topic, count)

    def routed(self, routed: Routed, record: ConsumedRecord, processing_s: float) -> None:  # noqa: ARG002 - protocol
        outcome = routed.outcome
        if routed.label == DEAD_LETTER_LABEL:
            self._metrics.observe_dead_letter(outcome.label)
        else:
            self._metrics.observe_result(routed.label)
        for side in routed.side:
            if side.topic == self._audit_topic:
                self._metrics.observe_audit_item(routed.label)
        end_to_end_s = None
        if outcome.submitted_at_s is not None:
            end_to_end_s = self._now() - outcome.submitted_at_s  # observe_routed clamps it at 0
        self._metrics.observe_routed(processing_s=processing_s, end_to_end_s=end_to_end_s)

    def in_flight(self, count: int) -> None:
        self._metrics.set_in_flight(count)

    def partitions(self, assigned: int, paused: int) -> None:
        self._health.assigned_partitions = assigned
        self._metrics.set_paused_partitions(paused)

    def committed(self, offsets: dict[TopicPartition, int], duration_s: float) -> None:
        self._metrics.observe_commit(duration_s)
        for tp, offset in offsets.items():
            self._metrics.set_committed_offset(tp.topic, tp.partition, offset)

    def lag(self, tp: TopicPartition, records: int, seconds: float) -> None:
        self._metrics.set_lag(tp.topic, tp.partition, records, seconds)

    def assigned(self, committed: Mapping[TopicPartition, int | None]) -> None:
        """A rebalance finished: publish the assignment and where each partition resumes."""
        self._metrics.set_assignment([(tp.topic, tp.partition) for tp in committed])
        self._health.assigned_partitions = len(committed)
        for tp, offset in committed.items():
            if offset is not None:
                self._metrics.set_committed_offset(tp.topic, tp.partition, offset)


class CallMetrics:
    """``worker.analysis.guarded.CallObserver`` onto ``Metrics``; any HTTP answer proves it reachable."""

    def __init__(self, metrics: Metrics, health: HealthState) -> None:
        self._metrics = metrics
        self._health = health

    def call(self, outcome: str, seconds: float, waited_s: float) -> None:
        self._metrics.observe_analyzer_call(outcome, seconds, waited_s)
        self._health.analyzer_reachable = outcome not in _UNREACHABLE

    def retry(self) -> None:
        self._metrics.observe_analyzer_retry()


class DecisionMetrics:
    """``worker.moderation.DecisionObserver``: tag metrics and the drift monitor's windows."""

    def __init__(
        self, metrics: Metrics, drift: DriftMonitor, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._metrics = metrics
        self._drift = drift
        self._clock = clock

    def decided(self, verdict: Verdict, analysis: Analysis | None) -> None:
        strongest = strongest_of(analysis.tags, self._drift.watched) if analysis is not None else {}
        if analysis is not None:
            self._metrics.observe_watched(strongest)
        self._drift.observe_strongest(verdict.decision, strongest, self._clock())


async def publish_periodically(
    metrics: Metrics,
    limiter: QuotaLimiter,
    breaker_state: Callable[[], int],
    drift: DriftMonitor,
    *,
    drift_state_file: Path | None,
    interval_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Refresh the gauges that are states, not events: quota, circuit, drift scores and references.

    Runs until cancelled. A newly captured drift reference is persisted so a restart keeps comparing
    against the same baseline.
    """
    while True:
        metrics.set_quota(share_per_s=limiter.share_per_s, rate_per_s=limiter.rate_per_s)
        metrics.set_quota_utilization(limiter.utilization)
        metrics.set_circuit_state(breaker_state())
        now = clock()
        captured = drift.capture(now)
        if captured and drift_state_file is not None:
            save_reference(drift_state_file, drift.captured)
            log.info("drift_reference_captured", extra={"keys": len(captured)})
        for (dimension, tag), proportions in drift.reference.distributions.items():
            metrics.set_reference(dimension, tag, proportions)
        for (dimension, tag), score in drift.scores(now).items():
            metrics.set_drift(dimension, tag, psi=score.psi, jensen_shannon=score.jensen_shannon)
        await asyncio.sleep(interval_s)
