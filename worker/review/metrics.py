"""The review console's Prometheus metrics; no label ever carries a reviewer id or an image id.

``ReviewMetrics`` registers every family on a given registry (``/metrics`` of the console serves it). Queue
depth and the age of the oldest item are read from the queue at scrape time. Labels are closed sets:
``queue`` (needs_review, audit, escalated), ``verdict`` (approve, reject, escalate), ``rule`` (the machine's
most severe reason rule), ``band`` (the confidence band of that reason) and ``agreement``. The override rate
is ``overrides_total / leaning_verdicts_total``: among verdicts on items where the machine leant one way
(``machine_leaning``), the share where the human decided the other way. docs/review.md lists the families.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.policy import Rule
from worker.review.items import ItemKind, ReviewItem
from worker.review.queue import ReviewQueue
from worker.review.verdicts import VerdictKind, first_rule

ENQUEUE_BUCKETS_S: Final = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
CLAIM_BUCKETS_S: Final = (2, 5, 10, 20, 30, 60, 120, 300, 600)
#: Needs-review rules whose items the machine leant towards rejecting (a suspect tag matched, or an allowed
#: one was missing); the other rules (no_signal, image_error, hold) carry no leaning.
_LEANS_REJECT: Final = frozenset(
    {str(Rule.BLOCKLIST_REVIEW), str(Rule.ALLOWLIST_MISSING), str(Rule.BLOCKLIST_REJECT)}
)
_LEANS_APPROVE: Final = frozenset({str(Rule.ALLOWLIST_MATCH)})


def confidence_band(confidence: float | None) -> str:
    """The band label of a confidence: ``0.0-0.5``, ``0.5-0.7``, ``0.7-0.9``, ``0.9-1.0``, or ``none``."""
    if confidence is None:
        return "none"
    if confidence < 0.5:
        return "0.0-0.5"
    if confidence < 0.7:
        return "0.5-0.7"
    return "0.7-0.9" if confidence < 0.9 else "0.9-1.0"


def machine_leaning(item: ReviewItem) -> str | None:
    """The decision the machine leant to (``approved``/``rejected``), or ``None`` when it had no leaning.

    An audit item leans to its published decision; others by their most severe reason's rule.
    """
    if item.result.audit is not None:
        return item.result.audit.published_decision
    rule = first_rule(item.result.reasons)
    if rule in _LEANS_REJECT:
        return "rejected"
    return "approved" if rule in _LEANS_APPROVE else None


class ReviewMetrics:
    """The console's metric families on ``registry``; ``queue`` and ``wall_clock`` (epoch s) feed the
    gauges at scrape time."""

    def __init__(
        self, registry: CollectorRegistry, queue: ReviewQueue, wall_clock: Callable[[], float]
    ) -> None:
        self._queue = queue
        self._wall_clock = wall_clock
        pending = Gauge(
            "moderation_review_pending",
            "Items awaiting a verdict in this console, held or not",
            ["queue"],
            registry=registry,
        )
        oldest = Gauge(
            "moderation_review_oldest_age_seconds",
            "Age of the oldest item awaiting a verdict (since it was enqueued); 0 when none",
            ["queue"],
            registry=registry,
        )
        for kind in ItemKind:
            pending.labels(queue=kind).set_function(functools.partial(self._pending, kind))
            oldest.labels(queue=kind).set_function(functools.partial(self._oldest_age, kind))
        self._enqueue_to_verdict = Histogram(
            "moderation_review_enqueue_to_verdict_seconds",
            "From the review record's timestamp to the acknowledged verdict",
            ["queue"],
            buckets=ENQUEUE_BUCKETS_S,
            registry=registry,
        )
        self._claim_to_verdict = Histogram(
            "moderation_review_claim_to_verdict_seconds",
            "From the reviewer's claim to the verdict (time spent on one item)",
            ["queue"],
            buckets=CLAIM_BUCKETS_S,
            registry=registry,
        )
        self._verdicts = Counter(
            "moderation_review_verdicts",
            "Acknowledged verdicts by queue, verdict and the machine's first rule",
            ["queue", "verdict", "rule"],
            registry=registry,
        )
        self._leaning = Counter(
            "moderation_review_leaning_verdicts",
            "Approve/reject verdicts on items the machine leant one way on, by rule and confidence band",
            ["rule", "band"],
            registry=registry,
        )
        self._overrides = Counter(
            "moderation_review_overrides",
            "Of those, verdicts against the machine's leaning",
            ["rule", "band"],
            registry=registry,
        )
        self._audits = Counter(
            "moderation_review_audit_verdicts",
            "Audit verdicts by published decision and whether the reviewer agreed",
            ["published_decision", "agreement"],
            registry=registry,
        )
        self._refused = Counter(
            "moderation_review_refused",
            "Claims and verdicts refused (lease expired or foreign, invalid verdict)",
            ["why"],
            registry=registry,
        )
        self._image_failures = Counter(
            "moderation_review_image_failures",
            "Images the console could not serve, by reason",
            ["reason"],
            registry=registry,
        )
        self._auth_failures = Counter(
            "moderation_review_auth_failures",
            "Wrong tokens presented, and requests refused for too many of them from one address",
            ["why"],
            registry=registry,
        )
        self._bans = Counter(
            "moderation_review_bans",
            "Images a reviewer rejected and added to the ban bank",
            registry=registry,
        )

    def observe_verdict(self, item: ReviewItem, verdict: VerdictKind, *, claimed_s: float) -> None:
        """Count an acknowledged verdict; ``claimed_s`` is how long the reviewer held the item."""
        rule = first_rule(item.result.reasons)
        self._verdicts.labels(queue=item.kind, verdict=verdict, rule=rule).inc()
        self._claim_to_verdict.labels(queue=item.kind).observe(max(0.0, claimed_s))
        self._enqueue_to_verdict.labels(queue=item.kind).observe(
            max(0.0, self._wall_clock() - item.enqueued_at_s)
        )
        if verdict is VerdictKind.ESCALATE:
            return
        human = "approved" if verdict is VerdictKind.APPROVE else "rejected"
        leaning = machine_leaning(item)
        if item.result.audit is not None:
            agreement = "agree" if human == item.result.audit.published_decision else "disagree"
            self._audits.labels(
                published_decision=item.result.audit.published_decision, agreement=agreement
            ).inc()
        if leaning is None:
            return
        band = confidence_band(item.strongest_confidence)
        self._leaning.labels(rule=rule, band=band).inc()
        if human != leaning:
            self._overrides.labels(rule=rule, band=band).inc()

    def observe_refused(self, why: str) -> None:
        """Count a refused claim or verdict: ``lease`` or ``invalid``."""
        self._refused.labels(why=why).inc()

    def observe_auth_failure(self, why: str) -> None:
        """Count a wrong token (``wrong_token``) or a request refused for too many (``throttled``)."""
        self._auth_failures.labels(why=why).inc()

    def observe_ban(self) -> None:
        """Count an acknowledged reject and ban."""
        self._bans.inc()

    def observe_image_failure(self, reason: str) -> None:
        """Count an image the console could not serve (a ``RefusalReason`` value)."""
        self._image_failures.labels(reason=reason).inc()

    def _pending(self, kind: ItemKind) -> float:
        return float(self._queue.counts()[kind][0])

    def _oldest_age(self, kind: ItemKind) -> float:
        oldest = self._queue.counts()[kind][1]
        return 0.0 if oldest is None else max(0.0, self._wall_clock() - oldest)
