"""One record's journey: decode, guard, analyze, decide, encode - the ``RecordHandler`` of the Kafka loop.

Decisions come from the pure policy; this module only sequences the steps and shapes the output record.
Bad input becomes a dead letter, an image the service refuses is decided by the policy's ``on_image_error``;
fatal analyzer errors propagate so the pipeline stops. Side-record sources (a shadow policy, the analyses
topic) are told each decided submission and add their records to its ``Routed``; they never change the route.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from worker import __version__
from worker.contracts import Contracts, Guard, InvalidSubmission, Submission
from worker.domain import Analysis, Decision, Reason, Tag, Verdict
from worker.errors import ImageAnalysisRejected
from worker.policy import Policy, Rule, decide, decide_image_error
from worker.records import (
    AnalysisSource,
    AuditMark,
    ConsumedRecord,
    ContentHashes,
    Decided,
    Outcome,
    Routed,
    SideRecord,
    SourceCoordinates,
    Stall,
    encode_dead_letter,
    encode_result,
)
from worker.sampling import AuditSampler

DEAD_LETTER_LABEL = "dead_letter"
# Header values that are the same on every record, encoded once.
_DECISION_HEADERS = {decision: str(decision).encode() for decision in Decision}
_WORKER_VERSION_HEADER = ("moderation-worker-version", __version__.encode())
_CONTENT_TYPE_HEADER = ("content-type", b"application/json")
_MAX_HEADER_SETS = 64


@dataclass(frozen=True, slots=True)
class RouteTopics:
    """Where each decision goes."""

    approved: str
    needs_review: str
    rejected: str
    dead_letter: str
    audit: str | None = None
    """Where audit items go (``None``: nowhere, whatever the sampler says)."""

    def for_decision(self, decision: Decision) -> str:
        """The topic that receives results with ``decision``."""
        if decision is Decision.APPROVED:
            return self.approved
        if decision is Decision.NEEDS_REVIEW:
            return self.needs_review
        if decision is Decision.REJECTED:
            return self.rejected
        raise ValueError(f"no route for decision {decision!r}")


class GuardedAnalysis(Protocol):
    """The guarded analyzer call (``worker.analysis.guarded.GuardedAnalyzer``): retries transient errors
    itself, tells ``stall`` when its retry budget is spent, raises image and fatal errors."""

    async def analyze_guarded(self, image_url: str, stall: Stall) -> Analysis: ...


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the known-content step saw of one image: the analysis (``None`` when a hash bank decided),
    where it came from, the image's hashes, the bank's verdict when one matched, and side records."""

    analysis: Analysis | None
    source: AnalysisSource
    content: ContentHashes | None = None
    bank_verdict: Verdict | None = None
    side: tuple[SideRecord, ...] = ()
    """Records to send with the result (the analysis shared through the cache topic)."""


class KnownContent(Protocol):
    """Worker-side fetch, hashes, hash banks and the analysis cache (``worker.content.known``), run before
    the guarded analyzer so a bank match or a cache hit costs no quota. Raises ``InvalidSubmission`` for an
    unsafe image reference, ``ImageAnalysisRejected`` for an unusable image, and fatal analyzer errors."""

    async def look(self, image_url: str, stall: Stall) -> Sighting: ...


class DecisionObserver(Protocol):
    """Told about every analysis and verdict (metrics, drift)."""

    def decided(self, verdict: Verdict, analysis: Analysis | None) -> None: ...


class SideRecordSource(Protocol):
    """Records produced alongside a result (a shadow result, the full analysis), each on a topic of its
    own; told once per decided submission, after the verdict. It returns records and sends nothing."""

    def side_records(self, decided: Decided) -> Sequence[SideRecord]: ...


class Moderator:
    """Implements ``worker.kafka.loop.RecordHandler[Submission]`` for ``image-submitted.v1`` records."""

    def __init__(
        self,
        contracts: Contracts,
        analyzer: GuardedAnalysis,
        observer: DecisionObserver,
        *,
        topics: RouteTopics,
        policy: Callable[[], Policy],
        hold: Callable[[], bool] = lambda: False,
        guard: Guard | Callable[[], Guard] | None = None,
        audit: AuditSampler | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        extras: Sequence[SideRecordSource] = (),
        known_content: KnownContent | None = None,
    ) -> None:
        """``policy``, ``hold`` and a callable ``guard`` are read per record, so a live policy change or a
        hold applies from the next record on; ``audit`` samples automatic decisions into audit items;
        ``extras`` add side records to every decided submission's ``Routed`` (none to dead letters);
        ``known_content``: the worker fetches each image itself and looks it up first (``None``: Azure
        fetches the URL)."""
        self._contracts = contracts
        self._analyzer = analyzer
        self._observer = observer
        self._topics = topics
        self._policy = policy
        self._hold = hold
        self._guard: Callable[[], Guard | None]
        if guard is None or isinstance(guard, Guard):
            self._guard = lambda: guard
        else:
            self._guard = guard
        self._audit = audit if audit is not None and audit.enabled and topics.audit is not None else None
        self._now = now
        self._extras = tuple(extras)
        self._known = known_content
        # (decision, policy version, model version) -> result headers: a handful of combinations in practice.
        self._headers: dict[tuple[Decision, str, str | None], Sequence[tuple[str, bytes]]] = {}

    def prepare(self, record: ConsumedRecord) -> Routed | Submission:
        """Decode ``record``: its dead letter if it is refused, else the submission to analyze."""
        try:
            return self._contracts.decode_submission(record.value, self._guard())
        except InvalidSubmission as exc:
            return self._dead_letter(record, exc)

    async def complete(self, record: ConsumedRecord, work: Submission, control: Stall) -> Routed:
        """Analyze, decide and encode ``work`` (from ``prepare``), with the extras' side records; raises only
        FatalAnalyzerError.

        The policy is read once the analysis is back, so the record is decided and encoded under one policy
        and a live change applies to every decision taken after it arrived."""
        submission = work
        source = SourceCoordinates(record.topic, record.partition, record.offset, record.timestamp)
        analysis: Analysis | None
        hold = False
        sighting: Sighting | None = None
        try:
            if self._known is None:
                analysis = await self._analyzer.analyze_guarded(submission.image_url, control)
            else:
                sighting = await self._known.look(submission.image_url, control)
                analysis = sighting.analysis
        except ImageAnalysisRejected as exc:
            policy = self._policy()
            analysis, verdict = None, decide_image_error(policy, exc.code)
        except InvalidSubmission as exc:  # the worker-side fetch found the image reference unsafe
            return self._dead_letter(record, exc)
        else:
            policy = self._policy()
            hold = self._hold()
            verdict = _verdict(policy, analysis, sighting, hold=hold)
        self._observer.decided(verdict, analysis)
        analyzed_at = self._now()
        routed = self._result(
            submission, verdict, analysis, policy, source, analyzed_at=analyzed_at, sighting=sighting
        )
        if not self._extras:
            return routed
        decided = Decided(submission, verdict, analysis, policy.version, source, analyzed_at, hold)
        extra_sides = tuple(side for extra in self._extras for side in extra.side_records(decided))
        return routed._replace(side=routed.side + extra_sides)  # after the audit copy, if any

    def _result(
        self,
        submission: Submission,
        verdict: Verdict,
        analysis: Analysis | None,
        policy: Policy,
        source: SourceCoordinates,
        *,
        analyzed_at: datetime,
        sighting: Sighting | None = None,
    ) -> Routed:
        model_version = analysis.model_version if analysis is not None else None
        matched = {reason.tag for reason in verdict.reasons if reason.tag}
        tags: tuple[Tag, ...] = ()
        if analysis is not None and matched:
            tags = tuple(tag for tag in analysis.tags if tag.name.casefold() in matched)
        value = encode_result(
            submission=submission,
            verdict=verdict,
            policy_version=policy.version,
            model_version=model_version,
            analyzed_at=analyzed_at,
            source=source,
            worker_version=__version__,
            tags=tags,
            content=None if sighting is None else sighting.content,
            analysis_source=None if sighting is None else sighting.source,
        )
        key = submission.id.encode()
        headers = self._result_headers(verdict.decision, policy.version, model_version)
        side: tuple[SideRecord, ...] = ()
        if self._audit is not None and self._topics.audit is not None:
            probability = self._audit.chosen(submission.id, verdict.decision)
            if probability is not None:  # the same document, marked: the published result is unchanged
                audit_value = encode_result(
                    submission=submission,
                    verdict=verdict,
                    policy_version=policy.version,
                    model_version=model_version,
                    analyzed_at=analyzed_at,
                    source=source,
                    worker_version=__version__,
                    tags=tags,
                    content=None if sighting is None else sighting.content,
                    analysis_source=None if sighting is None else sighting.source,
                    audit=AuditMark(probability),
                )
                side = (SideRecord(self._topics.audit, key, audit_value, headers),)
        return Routed(
            topic=self._topics.for_decision(verdict.decision),
            key=key,
            value=value,
            headers=headers,
            label=verdict.decision,
            outcome=Outcome(
                verdict.decision,
                None if submission.submitted_at is None else submission.submitted_at.timestamp(),
            ),
            side=side if sighting is None else (*side, *sighting.side),
        )

    def _result_headers(
        self, decision: Decision, policy_version: str, model_version: str | None
    ) -> Sequence[tuple[str, bytes]]:
        key = (decision, policy_version, model_version)
        headers = self._headers.get(key)
        if headers is None:
            if len(self._headers) >= _MAX_HEADER_SETS:  # model versions come from the service: stay bounded
                self._headers.clear()
            headers = self._headers[key] = (
                ("moderation-decision", _DECISION_HEADERS[decision]),
                ("moderation-policy-version", policy_version.encode()),
                ("moderation-model-version", (model_version or "none").encode()),
                _WORKER_VERSION_HEADER,
                _CONTENT_TYPE_HEADER,
            )
        return headers

    def _dead_letter(self, record: ConsumedRecord, error: InvalidSubmission) -> Routed:
        source = SourceCoordinates(record.topic, record.partition, record.offset, record.timestamp)
        value = encode_dead_letter(
            error=error,
            value=record.value,
            key=record.key,
            headers=list(record.headers or ()),
            source=source,
            failed_at=self._now(),
            worker_version=__version__,
        )
        headers = [
            ("moderation-error-class", str(error.reason).encode()),
            _WORKER_VERSION_HEADER,
            _CONTENT_TYPE_HEADER,
        ]
        return Routed(
            topic=self._topics.dead_letter,
            key=record.key,
            value=value,
            headers=headers,
            label=DEAD_LETTER_LABEL,
            outcome=Outcome(str(error.reason), None),
        )


def _verdict(policy: Policy, analysis: Analysis | None, sighting: Sighting | None, *, hold: bool) -> Verdict:
    """A matched bank's verdict, else the policy's on the analysis. Under a hold an approving bank sends
    to review, as every approval does."""
    banked = None if sighting is None else sighting.bank_verdict
    if banked is None:
        if analysis is None:
            raise ValueError("a sighting without an analysis must carry a bank's verdict")
        return decide(policy, analysis, hold=hold)
    if hold and banked.decision is Decision.APPROVED:
        return Verdict(Decision.NEEDS_REVIEW, (*banked.reasons, Reason(Rule.HOLD)))
    return banked
