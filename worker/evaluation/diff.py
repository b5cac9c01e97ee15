"""What changes between two decisions of the same images (replay, shadow, suggestion); pure.

``decision_diff`` counts every ``(old, new)`` pair and keeps the first few image ids of each change, so a
report can show examples without holding every id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from worker.domain import Decision
from worker.evaluation.confusion import DECISIONS, ConfusionMatrix

DEFAULT_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class DecisionDiff:
    """Counts of ``(old, new)`` decisions and up to ``examples_per_change`` ids of each change."""

    matrix: ConfusionMatrix
    examples: Mapping[tuple[Decision, Decision], tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", MappingProxyType(dict(self.examples)))

    @property
    def changed(self) -> int:
        """Images whose decision differs."""
        return self.matrix.total - sum(self.matrix.count(decision, decision) for decision in DECISIONS)

    def changes(self) -> list[tuple[Decision, Decision, int]]:
        """Every ``(old, new, count)`` with old != new and count > 0, in ``DECISIONS`` order."""
        return [
            (old, new, self.matrix.count(old, new))
            for old in DECISIONS
            for new in DECISIONS
            if old != new and self.matrix.count(old, new)
        ]

    def to_json(self) -> dict[str, object]:
        """The counts and examples as a JSON-ready document."""
        return {
            "total": self.matrix.total,
            "changed": self.changed,
            "matrix": self.matrix.to_json(),
            "changes": [
                {
                    "old": str(old),
                    "new": str(new),
                    "count": count,
                    "examples": list(self.examples.get((old, new), ())),
                }
                for old, new, count in self.changes()
            ],
        }


def decision_diff(
    decisions: Iterable[tuple[str, Decision, Decision]], *, examples_per_change: int = DEFAULT_EXAMPLES
) -> DecisionDiff:
    """The diff of ``(image id, old decision, new decision)`` triples; examples are kept in input order."""
    counts: Counter[tuple[Decision, Decision]] = Counter()
    examples: dict[tuple[Decision, Decision], list[str]] = {}
    for image_id, old, new in decisions:
        counts[old, new] += 1
        if old != new:
            kept = examples.setdefault((old, new), [])
            if len(kept) < examples_per_change:
                kept.append(image_id)
    return DecisionDiff(ConfusionMatrix(counts), {pair: tuple(ids) for pair, ids in examples.items()})
