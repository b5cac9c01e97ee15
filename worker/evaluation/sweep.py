"""Per blocklisted tag, precision and recall over a sweep of thresholds; pure.

A tag *flags* an image when its strongest confidence there is at or above the threshold (as the policy's
``>=``). An image is *harmful* for a tag when its per-tag truth says so, else when it is labeled
``rejected``; it *should be flagged* when its per-tag truth says so, else when it is labeled anything but
``approved`` (borderline images should reach a human). Precision and recall are about harmful images
(automatic rejection); the miss rate is about images that should be flagged (automatic approval).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from worker.domain import Decision, strongest_of
from worker.evaluation.labeled_set import Observation

#: 0.00, 0.05, ..., 1.00
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(step / 20 for step in range(21))


@dataclass(frozen=True, slots=True)
class TagEvidence:
    """One analyzed image as one tag sees it: the tag's confidence (0.0 when absent) and the labels."""

    score: float
    truth: Decision
    tag_truth: bool | None = None

    @property
    def harmful(self) -> bool:
        """A positive for automatic rejection."""
        return self.tag_truth if self.tag_truth is not None else self.truth is Decision.REJECTED

    @property
    def should_flag(self) -> bool:
        """A positive for automatic approval: approving it is a miss."""
        return self.tag_truth if self.tag_truth is not None else self.truth is not Decision.APPROVED


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """The tag's performance at one threshold; rates are ``None`` without a denominator.

    ``flagged``: images at or above the threshold; ``flagged_share``: of all images; ``precision``: harmful
    among flagged; ``recall``: flagged among harmful; ``miss_rate``: not flagged among should-flag images.
    """

    threshold: float
    flagged: int
    flagged_share: float | None
    precision: float | None
    recall: float | None
    miss_rate: float | None


@dataclass(frozen=True, slots=True)
class TagSweep:
    """A tag's sweep: one point per threshold, thresholds ascending."""

    tag: str
    points: tuple[SweepPoint, ...]

    def to_json(self) -> dict[str, object]:
        """The sweep as a JSON-ready document."""
        return {"tag": self.tag, "points": [point_json(point) for point in self.points]}


def point_json(point: SweepPoint) -> dict[str, object]:
    """One sweep point as a JSON-ready mapping."""
    return {
        "threshold": point.threshold,
        "flagged": point.flagged,
        "flagged_share": point.flagged_share,
        "precision": point.precision,
        "recall": point.recall,
        "miss_rate": point.miss_rate,
    }


def evidence_for(tag: str, observations: Iterable[Observation]) -> list[TagEvidence]:
    """What ``tag`` (case-folded) saw in each analyzed observation; refused images carry no evidence."""
    name = tag.casefold()
    evidence = []
    for observation in observations:
        if observation.analysis is None:
            continue
        score = strongest_of(observation.analysis.tags, (name,), casefold=True).get(name, 0.0)
        truth = observation.image.tag_truth.get(name)
        evidence.append(TagEvidence(score, observation.image.expected, truth))
    return evidence


def point_at(evidence: Sequence[TagEvidence], threshold: float) -> SweepPoint:
    """The tag's performance when it flags at ``threshold``."""
    flagged = harmful_flagged = harmful = should = missed = 0
    for item in evidence:
        hit = item.score >= threshold
        flagged += hit
        if item.harmful:
            harmful += 1
            harmful_flagged += hit
        if item.should_flag:
            should += 1
            missed += not hit
    return SweepPoint(
        threshold=threshold,
        flagged=flagged,
        flagged_share=_ratio(flagged, len(evidence)),
        precision=_ratio(harmful_flagged, flagged),
        recall=_ratio(harmful_flagged, harmful),
        miss_rate=_ratio(missed, should),
    )


def sweep_tag(
    tag: str, evidence: Sequence[TagEvidence], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> TagSweep:
    """The sweep of ``tag`` over ``thresholds`` (sorted ascending, duplicates dropped)."""
    return TagSweep(tag, tuple(point_at(evidence, threshold) for threshold in sorted(set(thresholds))))


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
