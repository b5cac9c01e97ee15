"""What changes between two decisions of the same images: counts by (old, new) decision and examples of each.

The one diff of the evaluation tools: ``replay`` (the published decision against a new policy's) and
``evaluate`` (the current policy against the suggested one, on a labeled set) both collect re-decisions in a
``DecisionDiff`` (one per image id: the last one told wins, since the analyses topic is at-least-once and a
redelivered submission is analyzed twice) and report a ``DiffReport``, as text, as a JSON document and as a
``ConfusionMatrix`` (rows old, columns new). Pure: no I/O, no clock. Example URLs are redacted again on the
way out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from worker.domain import Decision, Reason
from worker.evaluation.confusion import DECISIONS, ConfusionMatrix
from worker.redact import redact_url

Pair = tuple[Decision, Decision]
"""(old decision, new decision)."""


@dataclass(frozen=True, slots=True)
class Redecided:
    """One image decided again: the published (``old``) and the new decision, with the new reasons.

    ``url`` is the redacted image URL when the analysis carried one; ``policy_version`` is the old policy's.
    ``order`` places the image among the others when examples are chosen (smallest first, ties in the order
    told): replay passes when the image was analyzed and where its input was, so that the examples do not
    depend on how the partitions of the analyses topic interleave on one read.
    """

    id: str
    old: Decision
    new: Decision
    reasons: tuple[Reason, ...] = ()
    url: str | None = None
    policy_version: str = ""
    order: tuple[int, ...] = ()

    @property
    def pair(self) -> Pair:
        return (self.old, self.new)


@dataclass(frozen=True, slots=True)
class DiffReport:
    """Counts of every (old, new) pair (all nine present), up to ``examples`` per changed pair, earliest
    ``Redecided.order`` first; ``skipped`` records were not ``analysis.v1`` documents; ``old_policies``
    counts images by the policy version they were published under."""

    policy_version: str
    counts: Mapping[Pair, int]
    examples: Mapping[Pair, tuple[Redecided, ...]]
    skipped: int = 0
    old_policies: Mapping[str, int] = field(default_factory=dict)
    window: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def images(self) -> int:
        """Distinct images re-decided."""
        return sum(self.counts.values())

    @property
    def changed(self) -> int:
        """Images whose decision would change."""
        return sum(count for (old, new), count in self.counts.items() if old != new)

    @property
    def matrix(self) -> ConfusionMatrix:
        """The counts as a 3 x 3 matrix: rows the old decision, columns the new one."""
        return ConfusionMatrix(self.counts)

    def changes(self) -> list[tuple[Decision, Decision, int]]:
        """Every ``(old, new, count)`` with old != new and count > 0, old-major in decision order."""
        return [
            (old, new, self.counts[(old, new)])
            for old in DECISIONS
            for new in DECISIONS
            if old != new and self.counts[(old, new)]
        ]

    def to_json(self) -> dict[str, object]:
        """The report as a JSON document (``--json``); pairs as ``{"old", "new", "count", "examples"}``."""
        return {
            "policy_version": self.policy_version,
            "window": dict(self.window),
            "images": self.images,
            "changed": self.changed,
            "skipped": self.skipped,
            "old_policies": dict(self.old_policies),
            "pairs": [
                {
                    "old": str(old),
                    "new": str(new),
                    "count": self.counts[(old, new)],
                    "examples": [_example(item) for item in self.examples.get((old, new), ())],
                }
                for old in DECISIONS
                for new in DECISIONS
            ],
        }

    def to_text(self) -> str:
        """The report for a terminal: the 3 x 3 matrix (rows old, columns new), then examples per change."""
        width = max(len(str(decision)) for decision in DECISIONS) + 2
        lines = [
            f"replay under policy {self.policy_version}: {self.images} images, {self.changed} would change"
            + (f", {self.skipped} records skipped (not analysis.v1)" if self.skipped else ""),
            "",
            "old \\ new".ljust(width) + "".join(str(new).rjust(width) for new in DECISIONS),
        ]
        for old in DECISIONS:
            cells = "".join(str(self.counts[(old, new)]).rjust(width) for new in DECISIONS)
            lines.append(str(old).ljust(width) + cells)
        for (old, new), items in self.examples.items():
            lines += ["", f"{old} -> {new}: {self.counts[(old, new)]} images, e.g."]
            lines += [f"  {item.id}  {_because(item.reasons)}  {item.url or ''}".rstrip() for item in items]
        return "\n".join(lines) + "\n"


def _example(item: Redecided) -> dict[str, object]:
    return {
        "id": item.id,
        "url": item.url,
        "old_policy_version": item.policy_version,
        "reasons": [
            {
                key: value
                for key, value in (
                    ("rule", str(reason.rule)),
                    ("tag", reason.tag),
                    ("confidence", reason.confidence),
                )
                if value is not None
            }
            for reason in item.reasons
        ],
    }


def _because(reasons: Iterable[Reason]) -> str:
    shown = [
        f"{reason.rule}({reason.tag} {reason.confidence:.2f})"
        if reason.tag and reason.confidence is not None
        else reason.rule
        for reason in reasons
    ]
    return ", ".join(shown) or "no rule fired"


class DecisionDiff:
    """Collects re-decisions; ``report`` summarises them. Holds one small entry per distinct image id."""

    def __init__(self) -> None:
        self._by_id: dict[str, Redecided] = {}

    def add(self, redecided: Redecided) -> None:
        """Record one re-decision; a later one for the same id replaces the earlier one."""
        url = None if redecided.url is None else redact_url(redecided.url)
        self._by_id[redecided.id] = Redecided(
            redecided.id,
            redecided.old,
            redecided.new,
            redecided.reasons,
            url,
            redecided.policy_version,
            redecided.order,
        )

    def report(
        self,
        policy_version: str,
        *,
        examples: int,
        skipped: int = 0,
        window: Mapping[str, str | None] | None = None,
    ) -> DiffReport:
        """The counts and up to ``examples`` (>= 0) examples per changed pair."""
        counts: dict[Pair, int] = dict.fromkeys(((old, new) for old in DECISIONS for new in DECISIONS), 0)
        shown: dict[Pair, list[Redecided]] = {}
        for item in self._by_id.values():
            counts[item.pair] += 1
        for item in sorted(self._by_id.values(), key=lambda item: item.order):
            if item.old != item.new:
                kept = shown.setdefault(item.pair, [])
                if len(kept) < examples:
                    kept.append(item)
        changed = sorted(shown, key=lambda pair: (DECISIONS.index(pair[0]), DECISIONS.index(pair[1])))
        return DiffReport(
            policy_version=policy_version,
            counts=counts,
            examples={pair: tuple(shown[pair]) for pair in changed if shown[pair]},
            skipped=skipped,
            old_policies=dict(Counter(item.policy_version for item in self._by_id.values())),
            window=dict(window or {}),
        )
