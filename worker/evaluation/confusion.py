"""A 3 x 3 matrix of decision pairs and the rates an operator gates a rollout on; pure.

Rows are the first decision of each pair (the truth of a labeled image, or the live decision), columns the
second (what the policy decided, or the shadow decision). The same matrix serves as the agreement matrix
of two policies. Truth semantics (docs/evaluate.md): ``rejected`` is harmful, ``approved`` harmless,
``needs_review`` borderline (a human should see it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from worker.domain import Decision

#: The order of rows and columns everywhere (reports, JSON, plots).
DECISIONS: tuple[Decision, ...] = (Decision.APPROVED, Decision.NEEDS_REVIEW, Decision.REJECTED)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class ConfusionMatrix:
    """Counts of ``(row, column)`` decision pairs; a pair never seen counts 0.

    Every rate is a fraction in [0, 1], or ``None`` when its denominator is 0 (nothing to measure).
    """

    counts: Mapping[tuple[Decision, Decision], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))

    @classmethod
    def of(cls, pairs: Iterable[tuple[Decision, Decision]]) -> ConfusionMatrix:
        """The matrix of ``(truth, decided)`` (or ``(live, shadow)``) pairs."""
        return cls(Counter(pairs))

    def count(self, row: Decision, column: Decision) -> int:
        """How many pairs were ``(row, column)``."""
        return self.counts.get((row, column), 0)

    @property
    def total(self) -> int:
        """Every pair counted."""
        return sum(self.counts.values())

    def row_total(self, row: Decision) -> int:
        """Pairs whose first decision is ``row`` (e.g. images labeled ``row``)."""
        return sum(self.count(row, column) for column in DECISIONS)

    def column_total(self, column: Decision) -> int:
        """Pairs whose second decision is ``column`` (e.g. images the policy sent to ``column``)."""
        return sum(self.count(row, column) for row in DECISIONS)

    def rows(self) -> list[list[int]]:
        """The counts as a list of rows in ``DECISIONS`` order."""
        return [[self.count(row, column) for column in DECISIONS] for row in DECISIONS]

    @property
    def agreement(self) -> float | None:
        """Share of pairs on the diagonal (the policy decided as labeled; live and shadow agree)."""
        return _ratio(sum(self.count(decision, decision) for decision in DECISIONS), self.total)

    @property
    def harmful_approved_rate(self) -> float | None:
        """Of images labeled ``rejected`` (harmful), the share approved automatically."""
        rejected = Decision.REJECTED
        return _ratio(self.count(rejected, Decision.APPROVED), self.row_total(rejected))

    @property
    def harmless_rejected_rate(self) -> float | None:
        """Of images labeled ``approved`` (harmless), the share rejected automatically."""
        approved = Decision.APPROVED
        return _ratio(self.count(approved, Decision.REJECTED), self.row_total(approved))

    @property
    def approve_miss_rate(self) -> float | None:
        """Of images that should not be approved automatically (labeled needs_review or rejected), the share
        that were: the miss rate of automatic approval."""
        flagged = (Decision.NEEDS_REVIEW, Decision.REJECTED)
        missed = sum(self.count(row, Decision.APPROVED) for row in flagged)
        return _ratio(missed, sum(self.row_total(row) for row in flagged))

    @property
    def reject_precision(self) -> float | None:
        """Of images rejected automatically, the share labeled ``rejected``."""
        rejected = Decision.REJECTED
        return _ratio(self.count(rejected, rejected), self.column_total(rejected))

    @property
    def review_share(self) -> float | None:
        """Share of all images sent to human review: the review load, as a fraction of traffic."""
        return _ratio(self.column_total(Decision.NEEDS_REVIEW), self.total)

    def to_json(self) -> dict[str, object]:
        """The matrix and its rates as a JSON-ready document (``labels`` name rows and columns)."""
        return {
            "labels": [str(decision) for decision in DECISIONS],
            "rows": self.rows(),
            "total": self.total,
            "agreement": self.agreement,
            "harmful_approved_rate": self.harmful_approved_rate,
            "harmless_rejected_rate": self.harmless_rejected_rate,
            "approve_miss_rate": self.approve_miss_rate,
            "reject_precision": self.reject_precision,
            "review_share": self.review_share,
        }
