"""The quota limiter analyzer calls await: this replica's share of the quota, FIFO waiting, throttle holds.

Built on the pure ``worker.analysis.bucket``; the clock (monotonic seconds) and ``sleep`` are injected, so
every test runs on virtual time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from worker.analysis.bucket import AimdRate, TokenBucket, check_rate
from worker.clock import Clock, Sleep


class _Waiter:
    """One caller queued in ``QuotaLimiter.acquire``; ``turn`` is set when it reaches the queue's head or
    when the head granted it a token on its way out (``granted``)."""

    __slots__ = ("granted", "turn")

    def __init__(self) -> None:
        self.turn = asyncio.Event()
        self.granted = False


class QuotaLimiter:
    """Gates analyzer calls at this replica's share of the service quota; one instance per replica.

    ``share_per_s = quota_per_s * assigned / total`` partitions (the whole quota until ``set_share``); calls
    are paced at ``share * (1 - headroom_fraction)``: a service counting calls per window throttles a client
    paced at exactly its limit on the first network jitter, and every throttle costs a whole Retry-After. The
    burst is ``share * burst_s`` tokens, at least one: against a per-second window a burst is paid back
    by a throttle, so the default is the minimum. On a throttle, the successes of the last
    ``capacity_window_s`` tell ``AimdRate`` what the service admits.

    Callers queue FIFO; only the head of the queue sleeps, for exactly the time until a token or the end of a
    throttle block, and is woken early when the share or the block changes. A head that is granted also
    grants, in the same turn of the event loop, every waiter behind it whose token is due already: a busy
    loop that wakes the head late then releases the calls that fell due meanwhile at once, instead of one
    per loop turn. Tokens are taken only when granted, so a cancelled waiter leaves nothing reserved and the
    next in line takes its place (a waiter cancelled after it was granted hands its token on).

    A rebalance hands partitions from replica to replica, so for one ``capacity_window_s`` after
    ``set_share`` the service still counts calls the previous owners made: a throttle then blocks for its
    Retry-After but lowers neither the rate nor the ceiling. The bucket starts empty after ``set_share``,
    so replicas assigned together do not each spend a token at once (one call each above the quota).

    A queued caller is granted as of the time its token was due, up to ``late_credit_s`` earlier than now:
    with a burst of one token the bucket is full when a late head wakes (or when the next in line gets its
    turn), so every millisecond of timer slack would otherwise be lost and the achieved rate would fall
    below the paced one (by 4 % at 50/s with 1 ms of slack per grant, by 10-20 % at 200/s on a loaded
    machine whose loop turns take several milliseconds). The credit is bounded, so grants in any window of
    ``t`` seconds stay within ``rate * (t + late_credit_s) + burst``. The default, 15 ms, is the default
    headroom of a one-second window: paced at 98.5 % of the share, one second then holds at most
    0.985 * 1.015 < 100 % of the share plus the one-token burst. It covers the p99 of the head's timer
    lateness measured on the 2-core benchmark machine under load (5-15 ms; docs/benchmarks.md).
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
        late_credit_s: float = 0.015,
    ) -> None:
        check_rate(quota_per_s)
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
        self._head_wait: asyncio.Future[object] | None = None
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
        return not self._waiters and self._try_grant(self._clock(), queued=False) == 0.0

    async def acquire(self) -> float:
        """Wait for permission to make one analyzer call; return the seconds waited.

        FIFO across concurrent callers; blocks while throttled and while this replica has no share.
        """
        if self.try_acquire():
            return 0.0
        started = self._clock()
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            while not waiter.granted:
                if self._waiters[0] is waiter:
                    delay_s = self._try_grant(self._clock(), queued=True)
                    if delay_s == 0.0:
                        waiter.granted = True
                        break
                    await self._wait_as_head(delay_s)
                else:
                    waiter.turn.clear()
                    await waiter.turn.wait()
        except asyncio.CancelledError:
            if waiter.granted:  # granted by the head, cancelled before it resumed: the token goes on
                self._hand_on_grant()
            raise
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

    def _try_grant(self, now: float, *, queued: bool) -> float:
        """Take a token and return 0.0, or return the seconds until one could be there.

        ``queued``: for a waiter, whose token is taken as of when it was due (at most ``late_credit_s``
        before now); a caller that did not queue takes it as of now.
        """
        if self._share_per_s <= 0.0:
            return math.inf
        blocked_until = self._aimd.blocked_until
        if now < blocked_until:
            return blocked_until - now
        delay_s = math.inf
        if queued:
            earliest = max(now - self._late_credit_s, blocked_until)
            self._sync_bucket(earliest)
            due = max(self._bucket.ready_at(), earliest)
            if due <= now:
                delay_s = self._take_as_of(due)
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
        wait: asyncio.Future[object]
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
        """Take ``waiter`` out of the queue. A head leaving with its token first grants the waiters whose
        tokens are due; whoever is first in the queue then gets its turn."""
        if self._waiters and self._waiters[0] is waiter:
            self._waiters.popleft()
            if waiter.granted:
                now = self._clock()
                while self._waiters and self._try_grant(now, queued=True) == 0.0:
                    self._grant_next()
            if self._waiters:
                self._waiters[0].turn.set()
        elif not waiter.granted:  # cancelled while queued behind the head
            self._waiters.remove(waiter)

    def _hand_on_grant(self) -> None:
        """Give a token granted to a caller that no longer wants it to the next in line, if any."""
        if self._waiters:
            self._wake_head()  # the next in line may be asleep as the head
            self._grant_next()
            if self._waiters:
                self._waiters[0].turn.set()

    def _grant_next(self) -> None:
        granted = self._waiters.popleft()
        granted.granted = True
        granted.turn.set()


_FORGET_EVERY = 256
"""Grant and success times are read (after forgetting old ones) every few seconds but appended per call:
forgetting on every 256th append bounds them at the window's calls + 256 for a call less per append."""


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()
