"""Specification of retry timing: full-jitter exponential backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.analysis.backoff import compute_backoff


class FixedRandom(random.Random):
    """A random source whose ``uniform`` returns a fixed point of the interval, to pin jitter in tests."""

    def __init__(self, point: float) -> None:
        super().__init__(0)
        self.point = point

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.point


def test_ceiling_doubles_per_attempt_until_the_maximum() -> None:
    """With jitter at its top the delays are base * 2**attempt: 0.1, 0.2, 0.4, 0.8, then capped at 1.0."""
    rng = FixedRandom(1.0)
    delays = [compute_backoff(attempt, base_s=0.1, max_s=1.0, rng=rng) for attempt in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    """Full jitter: the bottom of the range is 0 s, the middle of attempt 3 is half of 0.8 s."""
    assert compute_backoff(3, base_s=0.1, max_s=10.0, rng=FixedRandom(0.0)) == 0.0
    assert compute_backoff(3, base_s=0.1, max_s=10.0, rng=FixedRandom(0.5)) == pytest.approx(0.4)


def test_huge_attempt_numbers_stay_at_the_maximum() -> None:
    """A message retried for days does not overflow the exponent."""
    assert compute_backoff(10_000, base_s=0.2, max_s=30.0, rng=FixedRandom(1.0)) == 30.0


def test_negative_attempt_is_refused() -> None:
    """Attempts count from 0 (the first retry)."""
    with pytest.raises(ValueError, match="attempt"):
        compute_backoff(-1, base_s=0.1, max_s=1.0, rng=random.Random(0))


@given(
    attempt=st.integers(min_value=0, max_value=500),
    base_s=st.floats(min_value=0.0, max_value=5.0),
    max_s=st.floats(min_value=0.0, max_value=120.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_always_within_zero_and_both_caps(
    attempt: int, base_s: float, max_s: float, seed: int
) -> None:
    """Property: 0 <= delay <= min(max_s, base_s * 2**attempt)."""
    delay = compute_backoff(attempt, base_s=base_s, max_s=max_s, rng=random.Random(seed))
    assert 0.0 <= delay <= min(max_s, base_s * 2.0 ** min(attempt, 62))
