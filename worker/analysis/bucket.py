"""Pure pacing arithmetic: a token bucket and the AIMD rate a replica may call at after throttles.

Time is passed in (monotonic seconds) or read from an injected clock; nothing here awaits.
"""

from __future__ import annotations

import math

from worker.clock import Clock

# After sleeping exactly the computed wait, float rounding can leave 0.999999999 tokens; that counts as one.
_TOKEN_EPSILON = 1e-9


class TokenBucket:
    """Grants one token per call at ``rate_per_s``, holding at most ``burst`` tokens.

    Non-reserving: ``try_take`` either takes a token and returns ``0.0``, or takes nothing and returns the
    seconds until a token will be there at the current rate (``math.inf`` at rate 0). Nothing is owed by a
    caller that gives up, so cancellation cannot leak tokens; fair ordering between callers is the caller's
    job (see ``QuotaLimiter``). Over any interval of ``t`` seconds at a constant rate it grants at most
    ``rate*t + burst``.
    Every method takes ``now`` (monotonic seconds) and falls back to the injected clock when it is omitted.
    """

    def __init__(
        self, rate_per_s: float, burst: float, clock: Clock, *, initial_tokens: float | None = None
    ) -> None:
        check_rate(rate_per_s)
        _check_burst(burst)
        self._clock = clock
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._tokens = burst if initial_tokens is None else max(0.0, min(initial_tokens, burst))
        self._updated_at = clock()

    @property
    def rate_per_s(self) -> float:
        """Tokens added per second."""
        return self._rate_per_s

    @property
    def burst(self) -> float:
        """Most tokens the bucket holds, i.e. the most calls granted back to back after idling."""
        return self._burst

    def tokens(self, now: float | None = None) -> float:
        """Tokens available at ``now`` (fractional: 0.5 means half-way to the next grant)."""
        self._refill(self._at(now))
        return self._tokens

    def try_take(self, now: float | None = None) -> float:
        """Take one token and return 0.0, or return the seconds to wait for one (``math.inf`` at rate 0)."""
        self._refill(self._at(now))
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        if self._rate_per_s <= 0.0:
            return math.inf
        return (1.0 - self._tokens) / self._rate_per_s

    def ready_at(self) -> float:
        """When the bucket holds (or last held) a whole token, refilling at the current rate: its last update
        if it held one then, else the moment refilling completes one (``math.inf`` at rate 0)."""
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            return self._updated_at
        if self._rate_per_s <= 0.0:
            return math.inf
        return self._updated_at + (1.0 - self._tokens) / self._rate_per_s

    def set_rate(self, rate_per_s: float, *, burst: float | None = None, now: float | None = None) -> None:
        """Change the rate (and optionally the burst) from ``now`` on.

        Tokens earned so far are credited at the old rate first, then capped at the new burst, so a rate
        change neither forgets accumulated tokens nor creates any.
        """
        check_rate(rate_per_s)
        if burst is not None:
            _check_burst(burst)
        self._refill(self._at(now))
        self._rate_per_s = rate_per_s
        if burst is not None:
            self._burst = burst
            self._tokens = min(self._tokens, burst)

    def drain(self, now: float | None = None) -> None:
        """Drop every accumulated token, e.g. after a throttle so the release after it is not a burst."""
        self._refill(self._at(now))
        self._tokens = 0.0

    def _at(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _refill(self, now: float) -> None:
        # A clock that steps back (it should not: it is monotonic) must not remove tokens.
        if now > self._updated_at:
            self._tokens = min(self._burst, self._tokens + (now - self._updated_at) * self._rate_per_s)
            self._updated_at = now


class AimdRate:
    """The rate a replica may call at: ``target_per_s`` times a fraction that throttles lower, time restores.

    A throttle at ``now`` blocks calls until ``now + retry_after_s`` and lowers the fraction:

    - when the rate the service admitted just before is known (``observed_per_s``): to
      ``min(current, observed) * (1 - ceiling_margin)``, capped there for ``ceiling_hold_s`` after the block.
      The service has just told us its capacity, and every probe above it costs a whole Retry-After of
      nothing; a throttle at the cap lowers it gently again, so the cap settles below the jitter;
    - otherwise by ``decrease_factor`` (classic multiplicative decrease), without a cap.

    The fraction never drops below ``floor_fraction``. From the end of the block it grows by
    ``increase_per_s`` (a fraction of the target per second) up to the cap while the hold lasts, then up to 1,
    never above. A throttle that arrives while calls are already blocked comes from a call sent before the
    block: it extends the block but does not decrease again, so a burst of in-flight 429s is one signal.
    """

    def __init__(
        self,
        target_per_s: float,
        *,
        decrease_factor: float = 0.5,
        increase_per_s: float = 0.05,
        floor_fraction: float = 0.05,
        default_retry_after_s: float = 1.0,
        ceiling_hold_s: float = 30.0,
        ceiling_margin: float = 0.03,
    ) -> None:
        check_rate(target_per_s)
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if not increase_per_s > 0.0:
            raise ValueError(f"increase_per_s must be positive, got {increase_per_s}")
        if not 0.0 < floor_fraction <= 1.0:
            raise ValueError(f"floor_fraction must be in (0, 1], got {floor_fraction}")
        self._target_per_s = target_per_s
        self._decrease_factor = decrease_factor
        self._increase_per_s = increase_per_s
        self._floor_fraction = floor_fraction
        self._default_retry_after_s = default_retry_after_s
        self._ceiling_hold_s = ceiling_hold_s
        self._ceiling_keep = 1.0 - ceiling_margin
        self._fraction_at_anchor = 1.0
        self._anchor_s = -math.inf  # additive increase runs from here (the end of the last block)
        self._blocked_until = -math.inf
        self._cap = 1.0  # the fraction may not exceed this until _hold_until
        self._hold_until = -math.inf

    @property
    def target_per_s(self) -> float:
        """The rate this replica is entitled to (its share of the quota)."""
        return self._target_per_s

    @property
    def blocked_until(self) -> float:
        """Monotonic time before which no call may start; ``-inf`` if never throttled."""
        return self._blocked_until

    def fraction(self, now: float) -> float:
        """The share of the target allowed at ``now`` once unblocked, in ``[floor_fraction, 1]``."""
        start = self._fraction_at_anchor
        if start >= 1.0 or now <= self._anchor_s:
            return start
        hold_end = max(self._hold_until, self._anchor_s)
        if now <= hold_end:
            return min(self._cap, start + self._increase_per_s * (now - self._anchor_s))
        at_hold_end = min(self._cap, start + self._increase_per_s * (hold_end - self._anchor_s))
        return min(1.0, max(start, at_hold_end) + self._increase_per_s * (now - hold_end))

    def rate_at(self, now: float) -> float:
        """Calls per second allowed at ``now``: 0 while blocked, else target times the fraction."""
        if now < self._blocked_until:
            return 0.0
        return self._target_per_s * self.fraction(now)

    def on_throttle(
        self,
        now: float,
        retry_after_s: float | None = None,
        *,
        observed_per_s: float | None = None,
        decrease: bool = True,
    ) -> bool:
        """Record a throttle at ``now``; return whether it decreased the rate (False: already blocked).

        ``observed_per_s``: calls the service admitted per second just before, if the caller measured it.
        ``decrease=False``: the throttle says nothing about this caller's rate; it only blocks.
        """
        block_s = self._default_retry_after_s if retry_after_s is None else max(0.0, retry_after_s)
        decrease = decrease and now >= self._blocked_until
        fraction = self.fraction(now)
        self._blocked_until = max(self._blocked_until, now + block_s)
        if decrease and observed_per_s and self._target_per_s > 0.0:
            measured = min(fraction, observed_per_s / self._target_per_s) * self._ceiling_keep
            fraction = max(self._floor_fraction, measured)
            self._cap = fraction
            self._hold_until = self._blocked_until + self._ceiling_hold_s
        elif decrease:
            fraction = max(self._floor_fraction, fraction * self._decrease_factor)
            self._hold_until = -math.inf
        elif self._hold_until > now:
            self._hold_until = self._blocked_until + self._ceiling_hold_s
        self._fraction_at_anchor = fraction
        self._anchor_s = self._blocked_until
        return decrease

    def set_target(self, target_per_s: float) -> None:
        """Change the target (on rebalance); the fraction carries over, a measured cap no longer applies."""
        check_rate(target_per_s)
        self._target_per_s = target_per_s
        self._hold_until = -math.inf


def check_rate(rate_per_s: float) -> None:
    if not (rate_per_s >= 0.0 and math.isfinite(rate_per_s)):
        raise ValueError(f"a rate must be finite and >= 0, got {rate_per_s}")


def _check_burst(burst: float) -> None:
    if not (burst >= 1.0 and math.isfinite(burst)):
        raise ValueError(f"burst must be finite and >= 1 (one whole call), got {burst}")
