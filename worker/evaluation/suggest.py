"""Suggested thresholds: per blocklisted tag, the ``review_at`` / ``reject_at`` that meet the targets; pure.

``reject_at`` is tuned per tag on its own evidence (``worker.evaluation.sweep``): the lowest threshold whose
precision reaches the reject-precision target (the most harmful images rejected at that precision), or
``None`` (review only) when none does. Candidates are the sweep grid plus every score seen, so a threshold
can sit exactly at an image. ``review_at`` is searched for the whole blocklist at once
(``worker.evaluation.review_search``): the policy's approve-miss-rate target at the least review load. Without
a target a threshold stays as it is (``review_at`` never above ``reject_at``). The suggestion is written as a
``policy.v1`` document for a person to review: it is never applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.evaluation.labeled_set import Observation
from worker.evaluation.review_search import review_thresholds
from worker.evaluation.scoring import Targets
from worker.evaluation.sweep import DEFAULT_THRESHOLDS, TagEvidence, evidence_for, point_at
from worker.policy import Policy
from worker.policy_file import policy_from_document

_SUGGESTED = (
    "Suggested by `moderation-worker evaluate` from a labeled set; review it, try it as a shadow policy "
    "(docs/evaluate.md) and only then roll it out. Never applied automatically."
)


@dataclass(frozen=True, slots=True)
class TagSuggestion:
    """The thresholds suggested for one tag and what the tag alone does with them on the labeled set.

    ``precision``: harmful among the images it rejects (``None``: it rejects none); ``review_load``: share
    of analyzed images it sends to review (score in [review_at, reject_at)); ``harmful`` / ``should_flag``:
    the evidence behind them (images harmful / not to be approved for this tag).
    """

    tag: str
    review_at: float
    reject_at: float | None
    precision: float | None
    review_load: float | None
    harmful: int
    should_flag: int

    def to_json(self) -> dict[str, object]:
        """The suggestion as a JSON-ready mapping."""
        return {
            "tag": self.tag,
            "review_at": self.review_at,
            "reject_at": self.reject_at,
            "precision": self.precision,
            "review_load": self.review_load,
            "harmful": self.harmful,
            "should_flag": self.should_flag,
        }


def reject_threshold(
    evidence: Sequence[TagEvidence],
    target_precision: float,
    grid: Sequence[float] = DEFAULT_THRESHOLDS,
) -> float | None:
    """The lowest threshold above 0 at which the tag's precision reaches ``target_precision``, or None."""
    for at in sorted({*grid, *(item.score for item in evidence)}):
        precision = point_at(evidence, at).precision
        if at > 0.0 and precision is not None and precision >= target_precision:
            return at
    return None


def tag_suggestion(
    tag: str, evidence: Sequence[TagEvidence], review_at: float, reject_at: float | None
) -> TagSuggestion:
    """What ``tag`` alone does on ``evidence`` with these thresholds."""
    in_review = sum(
        review_at <= item.score and (reject_at is None or item.score < reject_at) for item in evidence
    )
    return TagSuggestion(
        tag=tag,
        review_at=review_at,
        reject_at=reject_at,
        precision=None if reject_at is None else point_at(evidence, reject_at).precision,
        review_load=in_review / len(evidence) if evidence else None,
        harmful=sum(item.harmful for item in evidence),
        should_flag=sum(item.should_flag for item in evidence),
    )


def suggest_thresholds(
    policy: Policy,
    observations: Sequence[Observation],
    targets: Targets,
    grid: Sequence[float] = DEFAULT_THRESHOLDS,
) -> tuple[TagSuggestion, ...]:
    """A suggestion for every blocklisted tag of ``policy``, in the policy's (sorted) tag order."""
    evidence = {tag: evidence_for(tag, observations) for tag in policy.blocklist}
    reject_at: dict[str, float | None] = {tag: rule.reject_at for tag, rule in policy.blocklist.items()}
    if targets.reject_precision is not None:
        reject_at = {tag: reject_threshold(evidence[tag], targets.reject_precision, grid) for tag in evidence}
    if targets.approve_miss_rate is not None:
        review_at = review_thresholds(policy, observations, reject_at, targets.approve_miss_rate)
    else:
        review_at = {tag: rule.review_at for tag, rule in policy.blocklist.items()}
    return tuple(
        tag_suggestion(tag, evidence[tag], _capped(review_at[tag], reject_at[tag]), reject_at[tag])
        for tag in policy.blocklist
    )


def _capped(review_at: float, reject_at: float | None) -> float:
    return review_at if reject_at is None else min(review_at, reject_at)


def suggested_policy(policy: Policy, suggestions: Sequence[TagSuggestion]) -> dict[str, Any]:
    """``policy``'s canonical document with the suggested thresholds in its blocklist; validated.

    Raises ``ConfigurationError`` if the result were not a valid ``policy.v1`` document (it always is for
    thresholds in [0, 1] with ``review_at <= reject_at``, which ``suggest_thresholds`` guarantees).
    """
    document = policy.to_document()
    blocklist: Mapping[str, Any] = document["blocklist"]
    tuned = {item.tag: {"review_at": item.review_at, "reject_at": item.reject_at} for item in suggestions}
    document["blocklist"] = {name: tuned.get(name, entry) for name, entry in blocklist.items()}
    document["description"] = _SUGGESTED
    policy_from_document(document)
    return document
