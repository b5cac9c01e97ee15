"""Retry timing for transient analyzer failures: jittered exponential backoff inside a per-message budget.

Pure: the random source and the current time (monotonic seconds) are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2**62 times any sane base is already far above any max_s; capping the exponent avoids float overflow.
_MAX_EXPONENT = 62


def compute_backoff(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first retry), with *full jitter*.

    The delay is uniform in ``[0, min(max_s, base_s * 2**attempt)]``. Full jitter (rather than decorrelated)
    keeps the function stateless and spreads retries of many messages that failed together evenly, so they do
    not return as a synchronised wave; the quota limiter, not the backoff, is what paces calls to the service.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base_s < 0.0 or max_s < 0.0:
        raise ValueError(f"base_s and max_s must be >= 0, got {base_s} and {max_s}")
    ceiling_s = min(max_s, base_s * (1 << min(attempt, _MAX_EXPONENT)))
    return rng.uniform(0.0, ceiling_s)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry one message: at most ``max_attempts`` calls in all (first call included), no retry
    starting later than ``max_elapsed_s`` after the first call, delays from ``compute_backoff``."""

    max_attempts: int = 5
    max_elapsed_s: float = 60.0
    base_s: float = 0.2
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_elapsed_s < 0.0 or self.base_s < 0.0 or self.max_s < 0.0:
            raise ValueError("max_elapsed_s, base_s and max_s must be >= 0")

    def start(self, now: float, rng: random.Random) -> RetryBudget:
        """A fresh budget for one message whose first call starts at ``now``."""
        return RetryBudget(self, started_at=now, rng=rng)


class RetryBudget:
    """The retries left for one message; call ``next_delay`` after each failed attempt.

    Exhaustion does not mean the message is dropped: the pipeline pauses its partition and tries again later.
    """

    def __init__(self, policy: RetryPolicy, *, started_at: float, rng: random.Random) -> None:
        self._policy = policy
        self._started_at = started_at
        self._rng = rng
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed attempts recorded so far."""
        return self._failures

    @property
    def started_at(self) -> float:
        """Monotonic time of the first attempt."""
        return self._started_at

    def next_delay(self, now: float, *, retry_after_s: float | None = None) -> float | None:
        """Record a failure at ``now``; return the seconds to wait before the next attempt, or None if spent.

        The budget is spent when ``max_attempts`` calls have failed, or when the next attempt would start more
        than ``max_elapsed_s`` after the first. A service hint (``retry_after_s``) is a floor for the delay.
        """
        self._failures += 1
        if self._failures >= self._policy.max_attempts:
            return None
        delay_s = compute_backoff(
            self._failures - 1, base_s=self._policy.base_s, max_s=self._policy.max_s, rng=self._rng
        )
        if retry_after_s is not None:
            delay_s = max(delay_s, retry_after_s)
        if now + delay_s - self._started_at > self._policy.max_elapsed_s:
            return None
        return delay_s
