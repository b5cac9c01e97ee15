"""Suggested thresholds: per blocklisted tag, the ``review_at`` / ``reject_at`` that meet the targets; pure.

Each tag is tuned on its own evidence (``worker.evaluation.sweep``): ``reject_at`` is the lowest threshold
whose precision reaches the reject-precision target (the most harmful images rejected at that precision),
``None`` (review only) when none does; ``review_at`` is the highest threshold whose miss rate stays within
the approve-miss-rate target, never above ``reject_at``. Candidate thresholds are the sweep grid plus every
score seen, so a threshold can sit exactly at an image. Without a target a threshold stays as it is. The
suggestion is written as a ``policy.v1`` document for a person to review: it is never applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.evaluation.labeled_set import Observation
from worker.evaluation.scoring import Targets
from worker.evaluation.sweep import DEFAULT_THRESHOLDS, TagEvidence, evidence_for, point_at
from worker.policy import BlockRule, Policy
from worker.policy_file import policy_from_document

_SUGGESTED = (
    "Suggested by `moderation-worker evaluate` from a labeled set; review it, try it as a shadow policy "
    "(docs/evaluate.md) and only then roll it out. Never applied automatically."
)


@dataclass(frozen=True, slots=True)
class TagSuggestion:
    """The thresholds suggested for one tag and what they imply on the labeled set.

    ``review_load``: share of analyzed images the tag alone would send to review (score in
    [review_at, reject_at)); ``precision`` / ``miss_rate``: achieved at ``reject_at`` / ``review_at``
    (``None`` without evidence); ``harmful`` / ``should_flag``: the evidence counts behind them.
    """

    tag: str
    review_at: float
    reject_at: float | None
    review_load: float | None
    precision: float | None
    miss_rate: float | None
    harmful: int
    should_flag: int
    meets_targets: bool

    def to_json(self) -> dict[str, object]:
        """The suggestion as a JSON-ready mapping."""
        return {
            "tag": self.tag,
            "review_at": self.review_at,
            "reject_at": self.reject_at,
            "review_load": self.review_load,
            "precision": self.precision,
            "miss_rate": self.miss_rate,
            "harmful": self.harmful,
            "should_flag": self.should_flag,
            "meets_targets": self.meets_targets,
        }


def suggest_tag(
    tag: str,
    evidence: Sequence[TagEvidence],
    targets: Targets,
    current: BlockRule,
    grid: Sequence[float] = DEFAULT_THRESHOLDS,
) -> TagSuggestion:
    """The thresholds for ``tag`` that meet ``targets`` on ``evidence``; see the module docstring."""
    candidates = sorted({*grid, *(item.score for item in evidence)})
    reject_at = current.reject_at
    if targets.reject_precision is not None:
        reject_at = next(
            (
                at
                for at in candidates
                if at > 0.0
                and (precision := point_at(evidence, at).precision) is not None
                and precision >= targets.reject_precision
            ),
            None,
        )
    review_at = current.review_at
    if targets.approve_miss_rate is not None and any(item.should_flag for item in evidence):
        review_at = max(
            (
                at
                for at in candidates
                if (miss := point_at(evidence, at).miss_rate) is not None
                and miss <= targets.approve_miss_rate
            ),
            default=0.0,
        )
    if reject_at is not None:
        review_at = min(review_at, reject_at)
    return _implied(tag, evidence, targets, review_at, reject_at)


def _implied(
    tag: str, evidence: Sequence[TagEvidence], targets: Targets, review_at: float, reject_at: float | None
) -> TagSuggestion:
    review_point = point_at(evidence, review_at)
    precision = None if reject_at is None else point_at(evidence, reject_at).precision
    in_review = sum(
        review_at <= item.score and (reject_at is None or item.score < reject_at) for item in evidence
    )
    precise = targets.reject_precision is None or precision is None or precision >= targets.reject_precision
    missing = review_point.miss_rate
    covered = targets.approve_miss_rate is None or missing is None or missing <= targets.approve_miss_rate
    return TagSuggestion(
        tag=tag,
        review_at=review_at,
        reject_at=reject_at,
        review_load=in_review / len(evidence) if evidence else None,
        precision=precision,
        miss_rate=missing,
        harmful=sum(item.harmful for item in evidence),
        should_flag=sum(item.should_flag for item in evidence),
        meets_targets=precise and covered,
    )


def suggest_thresholds(
    policy: Policy, observations: Sequence[Observation], targets: Targets
) -> tuple[TagSuggestion, ...]:
    """A suggestion for every blocklisted tag of ``policy``, in the policy's (sorted) tag order."""
    return tuple(
        suggest_tag(tag, evidence_for(tag, observations), targets, rule)
        for tag, rule in policy.blocklist.items()
    )


def suggested_policy(policy: Policy, suggestions: Sequence[TagSuggestion]) -> dict[str, Any]:
    """``policy``'s canonical document with the suggested thresholds in its blocklist; validated.

    Raises ``ConfigurationError`` if the result were not a valid ``policy.v1`` document (it always is for
    thresholds in [0, 1] with ``review_at <= reject_at``, which ``suggest_tag`` guarantees).
    """
    document = policy.to_document()
    blocklist: Mapping[str, Any] = document["blocklist"]
    tuned = {item.tag: {"review_at": item.review_at, "reject_at": item.reject_at} for item in suggestions}
    document["blocklist"] = {name: tuned.get(name, entry) for name, entry in blocklist.items()}
    document["description"] = _SUGGESTED
    policy_from_document(document)
    return document
