"""Values shared by the analyzer, the policy and the pipeline: what an image shows and what we decided.

Pure data, no I/O: confidences are floats in [0, 1], sizes are pixels.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Decision(StrEnum):
    """The three routes a moderated image can take; the value is what result records carry."""

    APPROVED = "approved"
    NEEDS_REVIEW = "needs_review"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Tag:
    """One content tag from the analyzer, e.g. ``Tag("weapon", 0.91)``."""

    name: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the analyzer saw in one image.

    ``model_version`` names the service model (e.g. ``2023-10-01``) so every decision can be replayed;
    ``tags`` are in the analyzer's order; ``width``/``height`` are ``None`` when the service did not say.
    """

    model_version: str
    tags: tuple[Tag, ...]
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a decision was taken: the rule that fired and, for tag rules, the tag and its confidence.

    ``rule`` is one of a closed set (see ``worker.policy``): ``blocklist_reject``, ``blocklist_review``,
    ``allowlist_match``, ``allowlist_missing``, ``no_signal``, ``image_error``, ``hold``, ``hash_bank``.
    """

    rule: str
    tag: str | None = None
    confidence: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision and the reasons behind it, most severe first."""

    decision: Decision
    reasons: tuple[Reason, ...]


def strongest_of(
    tags: Iterable[Tag], names: Container[str] | None = None, *, casefold: bool = False
) -> dict[str, float]:
    """The highest confidence of each tag name that ``tags`` reports, in order of first appearance.

    ``names``: only these names count (every name when ``None``). ``casefold``: names are case-folded
    first, so ``Weapon`` and ``weapon`` are one tag (the policy stores its tag names case-folded). A
    confidence below 0, or NaN, never counts.
    """
    strongest: dict[str, float] = {}
    for tag in tags:
        name = tag.name.casefold() if casefold else tag.name
        if (names is None or name in names) and tag.confidence >= strongest.get(name, 0.0):
            strongest[name] = tag.confidence
    return strongest
