"""Specification of the wrong-token limit: per address, a sliding window, bounded memory."""

from __future__ import annotations

from tests.unit.test_review_desk import Clock
from worker.review.throttle import TokenGuesses


def test_an_address_is_throttled_after_the_limit_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock(1_000.0)
    guesses = TokenGuesses(clock, limit=3, window_s=60.0)
    for _ in range(2):
        guesses.failed("10.0.0.1")
        clock.now += 10.0
    open_before = guesses.retry_after("10.0.0.1")
    guesses.failed("10.0.0.1")  # the third, at 1020

    assert (0.0, 40.0) == (open_before, guesses.retry_after("10.0.0.1"))
    assert 0.0 == guesses.retry_after("10.0.0.2")
    clock.now = 1_060.0  # the first failure (1000) leaves the window: two remain
    assert 0.0 == guesses.retry_after("10.0.0.1")


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock(1_000.0)
    guesses = TokenGuesses(clock, limit=2, window_s=60.0)
    guesses.failed("10.0.0.1")
    clock.now += 61.0
    guesses.failed("10.0.0.1")

    assert 0.0 == guesses.retry_after("10.0.0.1")


def test_at_most_the_given_number_of_addresses_is_remembered_the_oldest_forgotten_first() -> None:
    clock = Clock(1_000.0)
    guesses = TokenGuesses(clock, limit=1, window_s=60.0, addresses=2)
    for address in ("a", "b", "c"):
        guesses.failed(address)

    assert [0.0, 60.0, 60.0] == [guesses.retry_after(address) for address in ("a", "b", "c")]
