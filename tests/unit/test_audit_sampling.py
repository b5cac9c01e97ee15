"""Audit sampling: a deterministic, unbiased share of automatic decisions, by a keyed hash of the id."""

from __future__ import annotations

import math

import pytest

from worker.domain import Decision
from worker.sampling import AuditSampler, draw

IDS = [f"img-{index:06d}" for index in range(100_000)]


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.3])
def test_the_share_audited_honours_the_rate_within_statistical_bounds(rate: float) -> None:
    """On 100k ids the audited share is within 5 standard deviations of the rate (binomial)."""
    sampler = AuditSampler({Decision.APPROVED: rate}, key=b"k")
    audited = sum(sampler.chosen(image_id, Decision.APPROVED) is not None for image_id in IDS)
    bound = 5 * math.sqrt(len(IDS) * rate * (1 - rate))
    assert abs(audited - rate * len(IDS)) <= bound


def test_the_choice_is_a_pure_function_of_id_rate_and_key() -> None:
    """Two samplers with the same rate and key choose the same ids; another key chooses others."""
    first = AuditSampler({Decision.REJECTED: 0.1}, key=b"k")
    again = AuditSampler({Decision.REJECTED: 0.1}, key=b"k")
    other = AuditSampler({Decision.REJECTED: 0.1}, key=b"other")

    def chosen(sampler: AuditSampler) -> list[str]:
        return [
            image_id for image_id in IDS[:5000] if sampler.chosen(image_id, Decision.REJECTED) is not None
        ]

    assert chosen(first) == chosen(again)
    assert chosen(first) != chosen(other)


def test_the_recorded_probability_is_the_rate_of_the_decision() -> None:
    """Each decision has its own rate; what ``chosen`` returns is that rate, the inclusion probability."""
    sampler = AuditSampler({Decision.APPROVED: 1.0, Decision.REJECTED: 0.25})
    rejected = {sampler.chosen(image_id, Decision.REJECTED) for image_id in IDS[:2000]}
    assert (1.0, {0.25, None}) == (sampler.chosen("any", Decision.APPROVED), rejected)
    decisions = (Decision.APPROVED, Decision.REJECTED, Decision.NEEDS_REVIEW)
    assert (1.0, 0.25, 0.0) == tuple(sampler.probability(decision) for decision in decisions)


def test_needs_review_and_zero_rates_are_never_audited() -> None:
    """A rate of 0 is off; needs_review cannot be given a rate (it reaches reviewers anyway)."""
    off = AuditSampler({Decision.APPROVED: 0.0, Decision.REJECTED: 0.0})
    assert (False, []) == (off.enabled, [i for i in IDS[:1000] if off.chosen(i, Decision.APPROVED)])
    with pytest.raises(ValueError, match="automatic"):
        AuditSampler({Decision.NEEDS_REVIEW: 0.5})
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        AuditSampler({Decision.APPROVED: 1.5})


def test_samples_are_nested_an_id_audited_at_a_rate_is_audited_at_every_higher_rate() -> None:
    """Raising the rate only adds ids: audits taken before a change stay part of the sample after it."""
    low = AuditSampler({Decision.APPROVED: 0.02}, key=b"k")
    high = AuditSampler({Decision.APPROVED: 0.2}, key=b"k")
    at_low = {i for i in IDS[:20_000] if low.chosen(i, Decision.APPROVED) is not None}
    at_high = {i for i in IDS[:20_000] if high.chosen(i, Decision.APPROVED) is not None}
    assert set() == at_low - at_high


def test_draws_lie_in_the_unit_interval_and_long_keys_are_accepted() -> None:
    """``draw`` maps to [0, 1); a key longer than BLAKE2b's 64 bytes is hashed down, not refused."""
    points = [draw(image_id, b"x" * 100) for image_id in IDS[:1000]]
    assert (True, True) == (all(0.0 <= p < 1.0 for p in points), len(set(points)) == 1000)
