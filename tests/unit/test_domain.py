"""Specification of ``strongest_of``: the best confidence per tag, which the policy, metrics and drift use."""

from __future__ import annotations

import math

from worker.domain import Tag, strongest_of


def test_each_name_keeps_its_highest_confidence_in_order_of_first_appearance() -> None:
    """A tag reported twice counts once, at its best; names come out in the order they first appear."""
    tags = [Tag("weapon", 0.35), Tag("cat", 0.9), Tag("weapon", 0.72), Tag("cat", 0.5)]

    assert [("weapon", 0.72), ("cat", 0.9)] == list(strongest_of(tags).items())


def test_only_the_names_asked_for_count() -> None:
    """With ``names``, every other tag is left out (the watched tags of metrics and drift)."""
    tags = [Tag("weapon", 0.35), Tag("cat", 0.9), Tag("gore", 0.1)]

    assert {"weapon": 0.35, "gore": 0.1} == strongest_of(tags, frozenset({"weapon", "gore", "knife"}))


def test_casefold_merges_names_that_differ_only_in_case() -> None:
    """With casefold (the policy's names are case-folded) ``Weapon`` and ``weapon`` are one tag; else two."""
    tags = [Tag("Weapon", 0.6), Tag("weapon", 0.4), Tag("WEAPON", 0.8)]

    assert {"weapon": 0.8} == strongest_of(tags, casefold=True)
    assert {"Weapon": 0.6, "weapon": 0.4, "WEAPON": 0.8} == strongest_of(tags)
    assert {"weapon": 0.8} == strongest_of(tags, {"weapon"}, casefold=True)


def test_nan_and_negative_confidences_never_count_but_zero_does() -> None:
    """NaN is not a confidence and below 0 is none; a tag at exactly 0 is still reported."""
    tags = [Tag("cat", math.nan), Tag("dog", -0.2), Tag("fox", 0.0), Tag("cat", 0.3), Tag("fox", math.nan)]

    assert {"fox": 0.0, "cat": 0.3} == strongest_of(tags)
