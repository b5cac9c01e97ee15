"""Specification of the analyzer circuit breaker: consecutive failures in a window open it; one probe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.analysis.breaker import BreakerState, CircuitBreaker


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_breaker(clock: FakeClock, *, threshold: int = 3) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=threshold, window_s=10.0, open_for_s=5.0, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    return breaker


def test_gauge_values_of_the_states() -> None:
    """The gauge reads 0 closed, 1 half-open, 2 open."""
    assert [int(state) for state in BreakerState] == [0, 1, 2]
    assert [state.name for state in BreakerState] == ["CLOSED", "HALF_OPEN", "OPEN"]


def test_consecutive_failures_at_the_threshold_open_the_breaker(clock: FakeClock) -> None:
    """Two failures keep it closed; the third consecutive one opens it and calls are refused."""
    breaker = CircuitBreaker(failure_threshold=3, window_s=10.0, open_for_s=5.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert (breaker.state, breaker.allow()) == (BreakerState.CLOSED, True)
    breaker.record_failure()
    assert (breaker.state, breaker.allow(), breaker.opened_total) == (BreakerState.OPEN, False, 1)


def test_a_success_resets_the_failure_run(clock: FakeClock) -> None:
    """Failure, failure, success, failure, failure: never three in a row, so it stays closed."""
    breaker = CircuitBreaker(failure_threshold=3, window_s=10.0, open_for_s=5.0, clock=clock)
    for outcome in ("fail", "fail", "ok", "fail", "fail"):
        breaker.record_success() if outcome == "ok" else breaker.record_failure()
    assert breaker.state == BreakerState.CLOSED


def test_failures_older_than_the_window_are_forgotten(clock: FakeClock) -> None:
    """Three failures 6 s apart with a 10 s window never have three inside one window."""
    breaker = CircuitBreaker(failure_threshold=3, window_s=10.0, open_for_s=5.0, clock=clock)
    for _ in range(3):
        breaker.record_failure()
        clock.now += 6.0
    assert breaker.state == BreakerState.CLOSED


def test_open_breaker_turns_half_open_after_open_for_s(clock: FakeClock) -> None:
    """Opened at t=0 for 5 s: open with 2 s to go at t=3, half-open at t=5."""
    breaker = open_breaker(clock)
    clock.now = 3.0
    assert (breaker.state, breaker.seconds_until_probe) == (BreakerState.OPEN, 2.0)
    clock.now = 5.0
    assert (breaker.state, breaker.seconds_until_probe) == (BreakerState.HALF_OPEN, 0.0)


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    """In half-open the first caller probes; the others are refused while the probe is out."""
    breaker = open_breaker(clock)
    clock.now = 5.0
    assert [breaker.allow() for _ in range(4)] == [True, False, False, False]


def test_successful_probe_closes_the_breaker(clock: FakeClock) -> None:
    """The probe succeeds: closed, every caller allowed again."""
    breaker = open_breaker(clock)
    clock.now = 5.0
    breaker.allow()
    breaker.record_success()
    assert (breaker.state, breaker.allow(), breaker.allow()) == (BreakerState.CLOSED, True, True)


def test_failed_probe_reopens_for_another_open_for_s(clock: FakeClock) -> None:
    """The probe at t=5 fails at t=6: open until t=11."""
    breaker = open_breaker(clock)
    clock.now = 5.0
    breaker.allow()
    clock.now = 6.0
    breaker.record_failure()
    assert (breaker.state, breaker.seconds_until_probe, breaker.opened_total) == (BreakerState.OPEN, 5.0, 2)


def test_lost_probe_is_replaced_after_open_for_s(clock: FakeClock) -> None:
    """A probe never reported (caller cancelled) does not wedge the breaker: at t=10 a new probe goes."""
    breaker = open_breaker(clock)
    clock.now = 5.0
    assert breaker.allow()
    clock.now = 7.0
    assert (breaker.allow(), breaker.seconds_until_probe) == (False, 3.0)
    clock.now = 10.0
    assert breaker.allow()


def test_late_outcomes_while_open_change_nothing(clock: FakeClock) -> None:
    """Outcomes of calls sent before the breaker opened neither close nor extend it."""
    breaker = open_breaker(clock)
    clock.now = 1.0
    breaker.record_success()
    breaker.record_failure()
    assert (breaker.state, breaker.seconds_until_probe) == (BreakerState.OPEN, 4.0)


@given(st.lists(st.sampled_from(["ok", "fail", "allow", "tick"]), max_size=80))
def test_state_machine_invariants(events: list[str]) -> None:
    """Property: a success outside OPEN closes; OPEN allows nothing; CLOSED allows everything; a failed probe
    re-opens; CLOSED opens exactly at the threshold of consecutive failures since the last success."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, window_s=1000.0, open_for_s=5.0, clock=clock)
    run = 0
    for event in events:
        before = breaker.state
        if event == "tick":
            clock.now += 2.0
        elif event == "allow":
            allowed = breaker.allow()
            assert allowed or before != BreakerState.CLOSED
            assert not allowed or before != BreakerState.OPEN
        elif event == "ok":
            breaker.record_success()
            if before != BreakerState.OPEN:
                assert breaker.state == BreakerState.CLOSED
                run = 0
        else:
            breaker.record_failure()
            if before == BreakerState.CLOSED:
                run += 1
                assert (breaker.state == BreakerState.OPEN) == (run >= 3)
                if run >= 3:
                    run = 0
            elif before == BreakerState.HALF_OPEN:
                assert breaker.state == BreakerState.OPEN
                run = 0
