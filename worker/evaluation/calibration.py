"""Calibration from reviewers: how often humans overturned the machine, per rule, tag and band; pure.

Each decided verdict (escalations are counted, not decided) is counted under every reason of the machine
result, ``(rule, tag, band)`` (a reason without a tag: ``(rule, -, -)``; no reason: ``none``), and, for an
automatic approval, under every tag it reported that fired no rule: ``(tag_seen, tag, band)``. Bands are
``band_width`` wide, the last one closed at 1.0.

Estimates are Horvitz-Thompson weighted: a verdict on an audit sample drawn with probability ``p`` stands
for ``1/p`` automatic decisions, every other verdict for one; a rate is the ratio of weighted sums (the
Hajek form), so audit samples do not under-count automatic decisions against reviewed ones. ``evidence``
is always the raw number of verdicts, the figure to judge a rate by.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from worker.domain import Decision
from worker.evaluation.verdicts import ReviewVerdict

DEFAULT_BAND_WIDTH = 0.1
NO_REASON, TAG_SEEN = "none", "tag_seen"


@dataclass(frozen=True, slots=True, order=True)
class CellKey:
    """A calibration row: the machine's rule, the tag it fired on, the lower edge of its confidence band."""

    rule: str
    tag: str = ""
    band: float = -1.0  # -1: no confidence


@dataclass(slots=True)
class Cell:
    """Counts and weighted sums of one row; rates are ``None`` without a denominator."""

    evidence: int = 0
    escalated: int = 0
    weight: float = 0.0
    rejected_weight: float = 0.0
    automatic_weight: float = 0.0
    overturned_weight: float = 0.0

    def add(self, verdict: ReviewVerdict) -> None:
        """Count one verdict in this row."""
        if verdict.human is None:
            self.escalated += 1
            return
        weight = verdict.weight
        self.evidence += 1
        self.weight += weight
        self.rejected_weight += weight if verdict.human is Decision.REJECTED else 0.0
        if verdict.machine is not Decision.NEEDS_REVIEW:
            self.automatic_weight += weight
            self.overturned_weight += weight if verdict.human is not verdict.machine else 0.0

    @property
    def human_reject_rate(self) -> float | None:
        """Estimated share the humans rejected."""
        return self.rejected_weight / self.weight if self.weight else None

    @property
    def overturn_rate(self) -> float | None:
        """Of automatic decisions (audited), the estimated share the humans overturned."""
        return self.overturned_weight / self.automatic_weight if self.automatic_weight else None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Every row, and one row per machine decision (the headline override rates)."""

    band_width: float
    cells: Mapping[CellKey, Cell] = field(default_factory=dict)
    by_decision: Mapping[Decision, Cell] = field(default_factory=dict)

    def band_end(self, band: float) -> float:
        """The upper edge of the band starting at ``band``."""
        return min(1.0, round(band + self.band_width, 10))

    def to_json(self) -> dict[str, object]:
        """The rows as a JSON-ready document."""
        return {
            "band_width": self.band_width,
            "by_decision": {str(decision): _cell_json(cell) for decision, cell in self.by_decision.items()},
            "rows": [
                {
                    "rule": key.rule,
                    "tag": key.tag or None,
                    "band": None if key.band < 0 else [key.band, self.band_end(key.band)],
                    **_cell_json(cell),
                }
                for key, cell in sorted(self.cells.items())
            ],
        }


def _cell_json(cell: Cell) -> dict[str, object]:
    return {
        "evidence": cell.evidence,
        "escalated": cell.escalated,
        "weighted": round(cell.weight, 6),
        "human_reject_rate": cell.human_reject_rate,
        "overturn_rate": cell.overturn_rate,
    }


def band_of(confidence: float, band_width: float = DEFAULT_BAND_WIDTH) -> float:
    """The lower edge of the band holding ``confidence`` (in [0, 1]; 1.0 falls in the last band)."""
    bands = max(1, round(1.0 / band_width))
    # The epsilon keeps an edge in its own band: 0.7 / 0.1 is 6.999... in binary floating point.
    return round(min(math.floor(confidence / band_width + 1e-9), bands - 1) * band_width, 10)


def keys_of(verdict: ReviewVerdict, band_width: float = DEFAULT_BAND_WIDTH) -> set[CellKey]:
    """The rows ``verdict`` counts in (see the module docstring)."""
    keys = {
        CellKey(
            reason.rule,
            reason.tag or "",
            -1.0 if reason.confidence is None else band_of(reason.confidence, band_width),
        )
        for reason in verdict.reasons
    }
    if not keys:
        keys.add(CellKey(NO_REASON))
    if verdict.machine is Decision.APPROVED:
        fired = {reason.tag for reason in verdict.reasons if reason.tag}
        strongest: dict[str, float] = {}
        for tag in verdict.tags:
            strongest[tag.name] = max(tag.confidence, strongest.get(tag.name, 0.0))
        keys.update(
            CellKey(TAG_SEEN, name, band_of(c, band_width))
            for name, c in strongest.items()
            if name not in fired
        )
    return keys


def calibrate(verdicts: Iterable[ReviewVerdict], band_width: float = DEFAULT_BAND_WIDTH) -> Calibration:
    """The calibration rows of ``verdicts``; ``band_width`` in (0, 1]."""
    if not 0.0 < band_width <= 1.0:
        raise ValueError(f"band_width must be in (0, 1], got {band_width}")
    cells: defaultdict[CellKey, Cell] = defaultdict(Cell)
    by_decision: defaultdict[Decision, Cell] = defaultdict(Cell)
    for verdict in verdicts:
        by_decision[verdict.machine].add(verdict)
        for key in keys_of(verdict, band_width):
            cells[key].add(verdict)
    return Calibration(band_width, dict(cells), dict(by_decision))
