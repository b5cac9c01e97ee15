"""Circuit breaker: stop calling a service that keeps failing, probe it after a pause, resume when it answers.

Pure state machine on an injected monotonic clock; the pipeline asks ``allow()`` before each call and reports
the outcome of every call it was allowed to make.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from worker.clock import Clock


class BreakerState(IntEnum):
    """Breaker state; the value is what the ``moderation_circuit_state`` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``failure_threshold`` *consecutive* failures that all happened within ``window_s``.

    Consecutive (a success resets the count) rather than a failure ratio: a healthy service with scattered
    errors never opens it, a 5xx storm opens it after a few calls, and no traffic-volume tuning is needed. The
    window forgets old failures, so a handful spread over an idle hour does not open it either.

    Open: ``allow()`` is False for ``open_for_s``; then half-open: exactly one probe call at a time. A
    successful probe closes the breaker, a failed one opens it again for ``open_for_s``. A probe whose outcome
    is never reported (its caller was cancelled) is presumed lost after ``open_for_s``; another is allowed.

    Report only failures that say the *service* is unwell (5xx, timeouts, connection errors); throttles belong
    to the quota limiter and rejected images are the image's fault.
    """

    def __init__(self, failure_threshold: int, window_s: float, open_for_s: float, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if window_s <= 0.0 or open_for_s <= 0.0:
            raise ValueError(f"window_s and open_for_s must be positive, got {window_s} and {open_for_s}")
        self._threshold = failure_threshold
        self._window_s = window_s
        self._open_for_s = open_for_s
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probe_started_at: float | None = None
        self.opened_total = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker becomes half-open by the passage of time alone)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() < self._opened_at + self._open_for_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def seconds_until_probe(self) -> float:
        """Seconds until ``allow()`` can next return True: 0 when closed or a probe may go now."""
        if self._opened_at is None:
            return 0.0
        now = self._clock()
        ready_at = self._opened_at + self._open_for_s
        if self._probe_started_at is not None:
            ready_at = max(ready_at, self._probe_started_at + self._open_for_s)
        return max(0.0, ready_at - now)

    def allow(self) -> bool:
        """Whether a call may be made now; in half-open, True for exactly one caller (the probe)."""
        if self._opened_at is None:  # closed: asked before every call, so answered first
            return True
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        if self._probe_started_at is not None and now < self._probe_started_at + self._open_for_s:
            return False
        self._probe_started_at = now
        return True

    def record_success(self) -> None:
        """A call succeeded: the failure run ends; a half-open breaker closes."""
        if self._opened_at is None and not self._failures:  # closed with no failure run: nothing to end
            return
        if self.state is BreakerState.OPEN:
            return  # a call sent before the breaker opened says nothing about the service now
        self._failures.clear()
        self._opened_at = None
        self._probe_started_at = None

    def record_failure(self) -> None:
        """A call failed: counts towards opening; a failed probe re-opens the breaker."""
        state = self.state
        now = self._clock()
        if state is BreakerState.OPEN:
            return  # already open: late failures from calls sent earlier change nothing
        if state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and self._failures[0] <= now - self._window_s:
            self._failures.popleft()
        if len(self._failures) >= self._threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probe_started_at = None
        self._failures.clear()
        self.opened_total += 1
