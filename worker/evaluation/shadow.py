"""The shadow policy: every analyzed image is also decided under a candidate policy, never routed by it.

``ShadowPolicy`` is a ``worker.moderation.SideRecordSource``. For each decided submission with an analysis
it runs the pure ``worker.policy.decide`` of the candidate on the same ``Analysis`` (no second analyzer
call), with the same hold, and tells its ``AgreementObserver`` the pair (live decision, shadow decision):
the agreement matrix, exported as ``moderation_shadow_decisions_total{live, shadow}``. With a topic it also
returns the shadow result, a ``moderation-result.v1`` document carrying the candidate's policy version, as
a side record on that topic (never a result topic). Images the analyzer refused are not counted: the
shadow policy's ``on_image_error`` is a constant, not evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from worker import __version__
from worker.domain import Analysis, Tag, Verdict
from worker.policy import Policy, decide
from worker.records import Decided, SideRecord, encode_result

_CONTENT_TYPE_HEADER: Final = ("content-type", b"application/json")
_SHADOW_HEADER: Final = ("moderation-shadow", b"true")


class AgreementObserver(Protocol):
    """Counts live x shadow decision pairs (``worker.observability.metrics.Metrics`` is one)."""

    def observe_shadow_decision(self, live: str, shadow: str) -> None:
        """One analyzed image decided ``live`` by the live policy and ``shadow`` by the candidate."""


def matched_tags(verdict: Verdict, analysis: Analysis) -> tuple[Tag, ...]:
    """The analysis's tags that a reason of ``verdict`` names (what a result shows downstream)."""
    matched = {reason.tag for reason in verdict.reasons if reason.tag}
    return tuple(tag for tag in analysis.tags if tag.name.casefold() in matched) if matched else ()


class ShadowPolicy:
    """Decides each analyzed image under ``policy`` beside the live decision; see the module docstring.

    ``topic`` ``None`` (the default) counts agreement only and produces no record.
    """

    def __init__(
        self,
        policy: Policy,
        observer: AgreementObserver,
        *,
        topic: str | None = None,
        worker_version: str = __version__,
    ) -> None:
        self.policy = policy
        self.topic = topic
        self._observer = observer
        self._worker_version = worker_version

    def side_records(self, decided: Decided) -> Sequence[SideRecord]:
        """Count the (live, shadow) pair; the shadow result when a topic is set, else nothing."""
        analysis = decided.analysis
        if analysis is None:
            return ()
        verdict = decide(self.policy, analysis, hold=decided.hold)
        self._observer.observe_shadow_decision(decided.verdict.decision, verdict.decision)
        if self.topic is None:
            return ()
        value = encode_result(
            submission=decided.submission,
            verdict=verdict,
            policy_version=self.policy.version,
            model_version=analysis.model_version,
            analyzed_at=decided.analyzed_at,
            source=decided.source,
            worker_version=self._worker_version,
            tags=matched_tags(verdict, analysis),
        )
        headers = (
            ("moderation-decision", str(verdict.decision).encode()),
            ("moderation-policy-version", self.policy.version.encode()),
            ("moderation-live-decision", str(decided.verdict.decision).encode()),
            _SHADOW_HEADER,
            _CONTENT_TYPE_HEADER,
        )
        return (SideRecord(self.topic, decided.submission.id.encode(), value, headers),)
