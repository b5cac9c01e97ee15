"""Pacing of analyzer calls: a token bucket, an AIMD rate after throttles and the limiter the pipeline awaits.

``TokenBucket`` and ``AimdRate`` are pure (time is passed in); ``QuotaLimiter`` adds FIFO waiting on an
injected clock (monotonic seconds) and ``sleep`` coroutine function, so every test runs on virtual time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

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
        _check_rate(rate_per_s)
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

    def set_rate(self, rate_per_s: float, *, burst: float | None = None, now: float | None = None) -> None:
        """Change the rate (and optionally the burst) from ``now`` on.

        Tokens earned so far are credited at the old rate first, then capped at the new burst, so a rate
        change neither forgets accumulated tokens nor creates any.
        """
        _check_rate(rate_per_s)
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
        _check_rate(target_per_s)
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
        _check_rate(target_per_s)
        self._target_per_s = target_per_s
        self._hold_until = -math.inf


class _Waiter:
    """One caller queued in ``QuotaLimiter.acquire``; ``turn`` is set when it reaches the queue's head."""

    __slots__ = ("turn",)

    def __init__(self) -> None:
        self.turn = asyncio.Event()


class QuotaLimiter:
    """Gates analyzer calls at this replica's share of the service quota; one instance per replica.

    ``share_per_s = quota_per_s * assigned / total`` partitions (the whole quota until ``set_share``); calls
    are paced at ``share * (1 - headroom_fraction)``: a service counting calls per window throttles a client
    paced at exactly its limit on the first network jitter, and every throttle costs a whole Retry-After. The
    burst is ``share * burst_s`` tokens, at least one: against a per-second window a burst is paid back
    by a throttle, so the default is the minimum. On a throttle, the successes of the last
    ``capacity_window_s`` tell ``AimdRate`` what the service admits.

    Callers queue FIFO; only the head of the queue sleeps, for exactly the time until a token or the end of a
    throttle block, and is woken early when the share or the block changes. Tokens are taken only when
    granted, so a cancelled waiter leaves nothing reserved and the next in line takes its place.

    A rebalance hands partitions from replica to replica, so for one ``capacity_window_s`` after
    ``set_share`` the service still counts calls the previous owners made: a throttle then blocks for its
    Retry-After but lowers neither the rate nor the ceiling. The bucket starts empty after ``set_share``,
    so replicas assigned together do not each spend a token at once (one call each above the quota).

    A head that the event loop wakes late is granted as of the time it was due, up to ``late_credit_s``
    earlier than now: with a burst of one token the bucket is full when the head wakes, so every
    millisecond of timer slack would otherwise be lost and the achieved rate would fall below the paced one
    (by 4 % at 50/s with 1 ms of slack per grant). The credit is bounded, so grants in any window of ``t``
    seconds stay within ``rate * (t + late_credit_s) + burst``.
    """

    def __init__(
        self,
        quota_per_s: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst_s: float = 0.0,
        headroom_fraction: float = 0.015,
        utilization_window_s: float = 10.0,
        capacity_window_s: float = 1.0,
        decrease_factor: float = 0.5,
        increase_per_s: float = 0.05,
        floor_fraction: float = 0.05,
        default_retry_after_s: float = 1.0,
        ceiling_hold_s: float = 30.0,
        late_credit_s: float = 0.005,
    ) -> None:
        _check_rate(quota_per_s)
        if burst_s < 0.0 or not 0.0 <= headroom_fraction < 1.0:
            raise ValueError("burst_s must be >= 0 and headroom_fraction in [0, 1)")
        if late_credit_s < 0.0:
            raise ValueError(f"late_credit_s must be >= 0, got {late_credit_s}")
        if not (utilization_window_s > 0.0 and capacity_window_s > 0.0):
            raise ValueError("utilization_window_s and capacity_window_s must be positive")
        self._clock = clock
        self._sleep = sleep
        self._quota_per_s = quota_per_s
        self._share_per_s = quota_per_s
        self._burst_s = burst_s
        self._pace = 1.0 - headroom_fraction
        self._window_s = utilization_window_s
        self._capacity_window_s = capacity_window_s
        self._late_credit_s = late_credit_s
        self._aimd = AimdRate(
            quota_per_s * self._pace,
            decrease_factor=decrease_factor,
            increase_per_s=increase_per_s,
            floor_fraction=floor_fraction,
            default_retry_after_s=default_retry_after_s,
            ceiling_hold_s=ceiling_hold_s,
        )
        # One token to start: the first call goes at once, but replicas starting together do not burst.
        self._bucket = TokenBucket(quota_per_s, self._capacity(quota_per_s), clock, initial_tokens=1.0)
        self._waiters: deque[_Waiter] = deque()
        self._head_wait: asyncio.Future[None] | None = None
        self._grant_times: deque[float] = deque()
        self._success_times: deque[float] = deque()
        self._created_at = clock()
        self._share_changed_at = -math.inf
        self.granted_total = 0
        self.throttled_total = 0
        self.successes_total = 0

    @property
    def quota_per_s(self) -> float:
        """Calls per second allowed for the whole service resource, across all replicas."""
        return self._quota_per_s

    @property
    def share_per_s(self) -> float:
        """This replica's entitlement: the quota times its share of the input partitions."""
        return self._share_per_s

    @property
    def rate_per_s(self) -> float:
        """Calls per second paced right now: 0 while blocked or without a share, else the AIMD rate."""
        return self._aimd.rate_at(self._clock()) if self._share_per_s > 0.0 else 0.0

    @property
    def blocked_until(self) -> float:
        """Monotonic time before which no call is granted after a throttle; ``-inf`` if never throttled."""
        return self._aimd.blocked_until

    @property
    def waiting(self) -> int:
        """Callers queued in ``acquire``."""
        return len(self._waiters)

    @property
    def utilization(self) -> float:
        """Calls granted per second over the last window (at least 1 s, at most the window) / the share.

        0.0 without a share. Above 1.0 only by the burst allowance.
        """
        now = self._clock()
        _forget_before(self._grant_times, now - self._window_s)
        if self._share_per_s <= 0.0:
            return 0.0
        span_s = max(1.0, min(self._window_s, now - self._created_at))
        return len(self._grant_times) / span_s / self._share_per_s

    def try_acquire(self) -> bool:
        """Take permission for one call now if it is there and nobody waits before us; never waits."""
        return not self._waiters and self._try_grant(self._clock()) == 0.0

    async def acquire(self) -> float:
        """Wait for permission to make one analyzer call; return the seconds waited.

        FIFO across concurrent callers; blocks while throttled and while this replica has no share.
        """
        if self.try_acquire():
            return 0.0
        started = self._clock()
        waiter = _Waiter()
        self._waiters.append(waiter)
        due: float | None = None  # when the head's timer was meant to fire
        try:
            while True:
                if self._waiters[0] is waiter:
                    now = self._clock()
                    delay_s = self._try_grant(now, due)
                    if delay_s == 0.0:
                        break
                    due = now + delay_s
                    await self._wait_as_head(delay_s)
                else:
                    waiter.turn.clear()
                    await waiter.turn.wait()
        finally:
            self._leave(waiter)
        return self._clock() - started

    def on_throttled(self, retry_after_s: float | None = None) -> None:
        """The service answered 429: no grants for ``retry_after_s``, then a reduced, recovering rate."""
        now = self._clock()
        self.throttled_total += 1
        self._sync_bucket(now)
        self._bucket.drain(now)
        _forget_before(self._success_times, now - self._capacity_window_s)
        observed_per_s = len(self._success_times) / self._capacity_window_s
        handing_over = now - self._share_changed_at < self._capacity_window_s
        self._aimd.on_throttle(now, retry_after_s, observed_per_s=observed_per_s, decrease=not handing_over)
        self._sync_bucket(now)
        self._wake_head()

    def on_success(self) -> None:
        """A granted call succeeded: the recent success rate is what a throttle lowers the rate to."""
        now = self._clock()
        self.successes_total += 1
        self._success_times.append(now)
        if not len(self._success_times) % _FORGET_EVERY:
            _forget_before(self._success_times, now - self._capacity_window_s)

    def set_share(self, assigned_partitions: int, total_partitions: int) -> None:
        """Recompute the share after a rebalance: ``quota * assigned / total`` (0 partitions -> no calls).

        The bucket starts empty at the new share and the next ``capacity_window_s`` is a hand-over (see the
        class docstring).
        """
        if assigned_partitions < 0 or total_partitions < 0 or assigned_partitions > total_partitions:
            raise ValueError(
                f"need 0 <= assigned <= total partitions, got {assigned_partitions} of {total_partitions}"
            )
        now = self._clock()
        share = self._quota_per_s * assigned_partitions / total_partitions if total_partitions else 0.0
        self._sync_bucket(now)
        self._share_per_s = share
        self._aimd.set_target(share * self._pace)
        self._bucket.set_rate(self._bucket.rate_per_s, burst=self._capacity(share), now=now)
        self._bucket.drain(now)
        self._share_changed_at = now
        self._sync_bucket(now)
        self._wake_head()

    def _capacity(self, share_per_s: float) -> float:
        # At least one whole token, or a small share could never be granted anything.
        return max(1.0, share_per_s * self._burst_s)

    def _sync_bucket(self, now: float) -> None:
        rate = self._aimd.rate_at(now) if self._share_per_s > 0.0 else 0.0
        if rate != self._bucket.rate_per_s:  # unchanged (nearly always): taking a token refills the bucket
            self._bucket.set_rate(rate, now=now)

    def _try_grant(self, now: float, due: float | None = None) -> float:
        """Take a token and return 0.0, or return the seconds until one could be there.

        ``due``: when the head waiter's timer was meant to fire; a late head is first tried as of then.
        """
        if self._share_per_s <= 0.0:
            return math.inf
        blocked_until = self._aimd.blocked_until
        if now < blocked_until:
            return blocked_until - now
        delay_s = math.inf
        if due is not None and due < now:
            delay_s = self._take_as_of(max(due, now - self._late_credit_s, blocked_until))
        if delay_s != 0.0:
            delay_s = self._take_as_of(now)
        if delay_s == 0.0:
            self.granted_total += 1
            self._grant_times.append(now)
            if not len(self._grant_times) % _FORGET_EVERY:
                _forget_before(self._grant_times, now - self._window_s)
        return delay_s

    def _take_as_of(self, moment: float) -> float:
        self._sync_bucket(moment)
        return self._bucket.try_take(moment)

    async def _wait_as_head(self, delay_s: float) -> None:
        """Sleep ``delay_s`` (forever if infinite) unless ``_wake_head`` cuts it short; either way return."""
        wait: asyncio.Future[None]
        if math.isinf(delay_s):
            wait = asyncio.get_running_loop().create_future()
        else:
            wait = asyncio.ensure_future(self._sleep(delay_s))
        self._head_wait = wait
        try:
            await asyncio.wait({wait})
            if not wait.cancelled():
                wait.result()  # surface a failing sleep instead of leaving its exception unretrieved
        finally:
            self._head_wait = None
            wait.cancel()

    def _wake_head(self) -> None:
        if self._head_wait is not None:
            self._head_wait.cancel()

    def _leave(self, waiter: _Waiter) -> None:
        was_head = self._waiters[0] is waiter
        self._waiters.remove(waiter)
        if was_head and self._waiters:
            self._waiters[0].turn.set()


_FORGET_EVERY = 256
"""Grant and success times are read (after forgetting old ones) every few seconds but appended per call:
forgetting on every 256th append bounds them at the window's calls + 256 for a call less per append."""


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()


def _check_rate(rate_per_s: float) -> None:
    if not (rate_per_s >= 0.0 and math.isfinite(rate_per_s)):
        raise ValueError(f"a rate must be finite and >= 0, got {rate_per_s}")


def _check_burst(burst: float) -> None:
    if not (burst >= 1.0 and math.isfinite(burst)):
        raise ValueError(f"burst must be finite and >= 1 (one whole call), got {burst}")
