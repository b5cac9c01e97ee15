"""Threshold moves proposed from calibration: each with the evidence behind it; pure, never applied.

For each blocklisted tag of the policy, walking the confidence bands outward from the current threshold
and stopping at the first band without enough evidence (``min_evidence`` verdicts) or without a clear
answer (``target_precision``, default 0.95):

- ``reject_at`` down: reviewed images (``blocklist_review``) in the bands just below ``reject_at`` that
  humans rejected at ``target_precision`` or more could be rejected automatically;
- ``reject_at`` up: audited automatic rejections (``blocklist_reject``) in the bands just above it that
  humans overturned more often than ``1 - target_precision``;
- ``review_at`` up: reviewed images in the bands just above ``review_at`` that humans approved at
  ``target_precision`` or more did not need a human;
- ``review_at`` down: audited automatic approvals showing the tag (``tag_seen``) in the bands just below
  ``review_at`` that humans rejected more often than ``1 - target_precision``.

A move never crosses the other threshold of the same tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.evaluation.calibration import TAG_SEEN, Calibration, Cell, CellKey
from worker.policy import BlockRule, Policy, Rule

DEFAULT_MIN_EVIDENCE = 10
DEFAULT_TARGET_PRECISION = 0.95


@dataclass(frozen=True, slots=True)
class ThresholdMove:
    """``setting`` of ``tag`` from ``current`` to ``proposed`` (``None``: never rejects), because ``why``,
    on ``evidence`` verdicts whose weighted rate was ``rate``."""

    tag: str
    setting: str
    current: float | None
    proposed: float
    evidence: int
    rate: float
    why: str

    def to_json(self) -> dict[str, object]:
        """The move as a JSON-ready mapping."""
        return {
            "tag": self.tag,
            "setting": self.setting,
            "current": self.current,
            "proposed": self.proposed,
            "evidence": self.evidence,
            "rate": self.rate,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class _Walk:
    calibration: Calibration
    min_evidence: int
    target: float

    def bands(self, rule: str, tag: str, start: float, *, upward: bool) -> list[tuple[float, Cell]]:
        """Bands of ``(rule, tag)`` from ``start`` outward, contiguous; stops at the first missing band."""
        width = self.calibration.band_width
        steps = round(1.0 / width)
        edges = [round(step * width, 10) for step in range(steps)]
        ordered = (
            [edge for edge in edges if edge >= start]
            if upward
            else sorted((e for e in edges if e < start), reverse=True)
        )
        walked = []
        for edge in ordered:
            cell = self.calibration.cells.get(CellKey(rule, tag, edge))
            if cell is None or cell.evidence < self.min_evidence:
                break
            walked.append((edge, cell))
        return walked

    def move(
        self, tag: str, setting: str, current: float | None, bands: list[tuple[float, Cell]], *,
        holds: Callable[[Cell], float | None], threshold: float, above: bool, edge_up: bool, why: str,
    ) -> ThresholdMove | None:  # fmt: skip
        """The move to the farthest band of ``bands`` whose rate (``holds``) passes ``threshold``."""
        kept: list[tuple[float, Cell, float]] = []
        for edge, cell in bands:
            rate = holds(cell)
            if rate is None or (rate < threshold if above else rate > threshold):
                break
            kept.append((edge, cell, rate))
        if not kept:
            return None
        edge = kept[-1][0]
        proposed = self.calibration.band_end(edge) if edge_up else edge
        evidence = sum(cell.evidence for _, cell, _ in kept)
        weight = sum(cell.weight for _, cell, _ in kept)
        rate = sum(rate * cell.weight for _, cell, rate in kept) / weight if weight else 0.0
        return ThresholdMove(tag, setting, current, proposed, evidence, rate, why)


def propose_moves(
    calibration: Calibration,
    policy: Policy,
    *,
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> list[ThresholdMove]:
    """The moves the verdicts support for ``policy``'s blocklist (see the module docstring)."""
    walk = _Walk(calibration, min_evidence, target_precision)
    moves: list[ThresholdMove] = []
    for tag, rule in policy.blocklist.items():
        moves.extend(move for move in _moves_for(walk, tag, rule) if move is not None)
    return moves


def _moves_for(walk: _Walk, tag: str, rule: BlockRule) -> list[ThresholdMove | None]:
    target = walk.target
    ceiling = 1.0 if rule.reject_at is None else rule.reject_at
    review, reject = str(Rule.BLOCKLIST_REVIEW), str(Rule.BLOCKLIST_REJECT)
    below_reject = [(e, c) for e, c in walk.bands(review, tag, ceiling, upward=False) if e >= rule.review_at]
    reject_down = walk.move(
        tag, "reject_at", rule.reject_at, below_reject, holds=lambda c: c.human_reject_rate,
        threshold=target, above=True, edge_up=False, why="humans rejected these reviewed images",
    )  # fmt: skip
    reject_up = None
    if rule.reject_at is not None:
        reject_up = walk.move(
            tag, "reject_at", rule.reject_at, walk.bands(reject, tag, rule.reject_at, upward=True),
            holds=lambda c: c.overturn_rate, threshold=1.0 - target, above=True, edge_up=True,
            why="humans overturned these automatic rejections",
        )  # fmt: skip
    above_review = [(e, c) for e, c in walk.bands(review, tag, rule.review_at, upward=True) if e < ceiling]
    review_up = walk.move(
        tag, "review_at", rule.review_at, above_review, holds=lambda c: c.human_reject_rate,
        threshold=1.0 - target, above=False, edge_up=True, why="humans approved these reviewed images",
    )  # fmt: skip
    review_down = walk.move(
        tag, "review_at", rule.review_at, walk.bands(TAG_SEEN, tag, rule.review_at, upward=False),
        holds=lambda c: c.human_reject_rate, threshold=1.0 - target, above=True, edge_up=False,
        why="humans rejected these automatic approvals",
    )  # fmt: skip
    if review_up is not None and review_up.proposed > ceiling:
        review_up = None
    return [reject_down, reject_up, review_up, review_down]
