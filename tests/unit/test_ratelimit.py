"""Specification of the analyzer rate limiter: token bucket, AIMD recovery and the async quota limiter.

All timing runs on ``VirtualTime``: a fake monotonic clock whose ``sleep`` returns when the test advances it.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.analysis.bucket import AimdRate, TokenBucket
from worker.analysis.limiter import QuotaLimiter


class VirtualTime:
    """A monotonic clock plus a ``sleep`` whose timers fire only when ``advance`` moves time past them.

    ``timer_slack_s`` makes every timer fire that much later than asked, as a busy event loop does; a
    callable gives each timer its own slack.
    """

    def __init__(self, timer_slack_s: float | Callable[[], float] = 0.0) -> None:
        self.now = 0.0
        self.timer_slack_s = timer_slack_s
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay_s: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slack_s = self.timer_slack_s() if callable(self.timer_slack_s) else self.timer_slack_s
        fires_at = self.now + delay_s + slack_s
        heapq.heappush(self._timers, (fires_at, next(self._sequence), future))
        await future

    def pending_timers(self) -> int:
        return sum(1 for _, _, future in self._timers if not future.done())

    def fire_next_timer(self) -> None:
        """Move time to the earliest live timer and fire it, without letting any task run yet."""
        while self._timers:
            when, _, future = heapq.heappop(self._timers)
            if not future.done():
                self.now = max(self.now, when)
                future.set_result(None)
                return
        raise AssertionError("no timer pending")

    async def settle(self) -> None:
        """Let every runnable task run until it blocks again (enough rounds for the few tasks used here)."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, delta_s: float) -> None:
        """Move time forward by ``delta_s``, firing due timers in order and letting tasks react to each."""
        target = self.now + delta_s
        await self.settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, future = heapq.heappop(self._timers)
            if future.done():
                continue
            self.now = max(self.now, when)
            future.set_result(None)
            await self.settle()
        self.now = target
        await self.settle()

    async def run_until_done(self, task: asyncio.Future[Any], limit_s: float = 1000.0) -> None:
        """Jump from timer to timer until ``task`` finishes (fails if it would take more than ``limit_s``)."""
        await self.settle()
        while not task.done():
            live = [when for when, _, future in self._timers if not future.done()]
            assert live, "task is blocked with no timer pending"
            assert min(live) <= limit_s, "task needs more virtual time than the limit"
            await self.advance(min(live) - self.now)


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


# --- TokenBucket -------------------------------------------------------------------------------------------


def test_full_bucket_grants_burst_then_says_how_long_to_wait() -> None:
    """A full bucket of 3 at 2/s grants 3 calls at once; the 4th must wait 1/2 s."""
    bucket = TokenBucket(2.0, 3.0, lambda: 0.0)
    granted = [bucket.try_take(0.0) for _ in range(3)]
    assert granted == [0.0, 0.0, 0.0]
    assert bucket.try_take(0.0) == 0.5


def test_refusal_takes_nothing_so_the_wait_shrinks_with_time() -> None:
    """Non-reserving: asking twice does not double the wait, and after the wait a token is there."""
    bucket = TokenBucket(4.0, 1.0, lambda: 0.0, initial_tokens=0.0)
    assert bucket.try_take(0.0) == 0.25
    assert bucket.try_take(0.0) == 0.25
    assert bucket.try_take(0.125) == 0.125
    assert bucket.try_take(0.25) == 0.0


def test_ready_at_is_when_the_next_whole_token_is_or_was_there() -> None:
    """At 4/s an empty bucket updated at t=1 has its token at 1.25; half a token at t=2 means 2.125; a full
    bucket's token was there at its last update, however long it has been full; rate 0: never."""
    bucket = TokenBucket(4.0, 1.0, lambda: 1.0, initial_tokens=0.0)
    assert 1.25 == bucket.ready_at()
    bucket.tokens(1.875)  # full since 1.25; updated now
    assert 1.875 == bucket.ready_at()
    bucket.try_take(1.875)
    bucket.tokens(2.0)  # half a token at t=2
    assert pytest.approx(2.125) == bucket.ready_at()
    assert math.inf == TokenBucket(0.0, 1.0, lambda: 0.0, initial_tokens=0.0).ready_at()


def test_zero_rate_bucket_waits_forever_once_empty() -> None:
    """At rate 0 the remaining tokens are still granted, then the wait is infinite."""
    bucket = TokenBucket(0.0, 1.0, lambda: 0.0)
    assert bucket.try_take(0.0) == 0.0
    assert math.inf == bucket.try_take(100.0)


def test_set_rate_credits_tokens_earned_at_the_old_rate() -> None:
    """Tokens earned before a rate change are kept: 0.5 s at 1/s = half a token; 10/s needs 0.05 s more."""
    bucket = TokenBucket(1.0, 5.0, lambda: 0.0, initial_tokens=0.0)
    bucket.set_rate(10.0, now=0.5)
    assert bucket.tokens(0.5) == 0.5
    assert pytest.approx(bucket.try_take(0.5)) == 0.05


def test_set_rate_with_smaller_burst_caps_accumulated_tokens() -> None:
    """Shrinking the burst never leaves more tokens than the new burst."""
    bucket = TokenBucket(1.0, 10.0, lambda: 0.0)
    bucket.set_rate(1.0, burst=2.0, now=0.0)
    assert bucket.tokens(0.0) == 2.0


def test_clock_argument_defaults_to_the_injected_clock() -> None:
    """Without ``now`` the bucket reads its clock: 1 s later at 1/s one token has come back."""
    times = iter([0.0, 0.0, 1.0])
    bucket = TokenBucket(1.0, 1.0, lambda: next(times))
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == 0.0


def test_bucket_rejects_burst_below_one_call() -> None:
    """A burst below one token could never grant anything, so it is refused."""
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, 0.5, lambda: 0.0)


@given(
    rate=st.floats(min_value=0.1, max_value=1000.0),
    burst=st.floats(min_value=1.0, max_value=50.0),
    steps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=60),
)
def test_bucket_never_grants_more_than_rate_times_interval_plus_burst(
    rate: float, burst: float, steps: list[float]
) -> None:
    """Property: over any interval [a, b] of calls, grants <= rate * (b - a) + burst."""
    bucket = TokenBucket(rate, burst, lambda: 0.0)
    now = 0.0
    grant_times: list[float] = []
    for step in steps:
        now += step
        while bucket.try_take(now) == 0.0:
            grant_times.append(now)
    for first, start in enumerate(grant_times):
        for last in range(first, len(grant_times)):
            granted = last - first + 1
            assert granted <= rate * (grant_times[last] - start) + burst + 1e-6


# --- AimdRate ----------------------------------------------------------------------------------------------


def test_throttle_blocks_until_retry_after_then_halves_the_rate() -> None:
    """A 429 with Retry-After 2 s at t=10: rate 0 until t=12, then half the target."""
    aimd = AimdRate(20.0)
    aimd.on_throttle(10.0, 2.0)
    assert aimd.rate_at(11.999) == 0.0
    assert aimd.rate_at(12.0) == 10.0


def test_rate_recovers_additively_to_the_target_and_never_above() -> None:
    """+5 % of target per second after the block: 50 % -> 75 % after 5 s -> 100 % after 10 s, then capped."""
    aimd = AimdRate(20.0, increase_per_s=0.05)
    aimd.on_throttle(0.0, 1.0)
    assert pytest.approx(aimd.rate_at(6.0)) == 15.0
    assert aimd.rate_at(11.0) == 20.0
    assert aimd.rate_at(1000.0) == 20.0


def test_throttles_while_blocked_decrease_only_once() -> None:
    """Ten in-flight calls all answered 429 are one signal: the rate halves once and the block extends."""
    aimd = AimdRate(20.0)
    decreased = [aimd.on_throttle(0.0 + i * 0.01, 1.0) for i in range(10)]
    assert decreased == [True] + [False] * 9
    assert pytest.approx(aimd.blocked_until) == 1.09
    assert aimd.rate_at(1.09) == 10.0


def test_throttle_after_the_block_decreases_again_down_to_the_floor() -> None:
    """Still throttled at the reduced rate: each new episode halves again, never below the floor."""
    aimd = AimdRate(100.0, floor_fraction=0.2)
    aimd.on_throttle(0.0, 0.0)
    aimd.on_throttle(0.0, 0.0)
    aimd.on_throttle(0.0, 0.0)
    assert aimd.rate_at(0.0) == 20.0


def test_missing_retry_after_blocks_for_the_default() -> None:
    """A 429 without Retry-After blocks for ``default_retry_after_s``."""
    aimd = AimdRate(10.0, default_retry_after_s=3.0)
    aimd.on_throttle(5.0, None)
    assert aimd.blocked_until == 8.0


def test_measured_capacity_sets_a_held_ceiling_just_below_it() -> None:
    """Target 100/s, throttled at t=0 (Retry-After 1 s) after the service admitted 50/s.

    Rate after the block: min(1.0, 50/100) * (1 - 0.03) = 0.485 -> 48.5/s, held until 1 + 30 = 31 s; then
    additive increase of 5 %/s of the target: at t=32, 48.5 + 5 = 53.5/s.
    """
    aimd = AimdRate(100.0, ceiling_hold_s=30.0, ceiling_margin=0.03)
    aimd.on_throttle(0.0, 1.0, observed_per_s=50.0)
    assert [aimd.rate_at(t) for t in (1.0, 30.0, 31.0)] == pytest.approx([48.5, 48.5, 48.5])
    assert aimd.rate_at(32.0) == pytest.approx(53.5)


def test_throttled_again_at_the_ceiling_lowers_it_gently() -> None:
    """A second throttle at the 48.5/s cap with 48 admitted: min(0.485, 0.48) * 0.97 = 0.4656 -> 46.56/s."""
    aimd = AimdRate(100.0)
    aimd.on_throttle(0.0, 1.0, observed_per_s=50.0)
    aimd.on_throttle(5.0, 1.0, observed_per_s=48.0)
    assert aimd.rate_at(6.0) == pytest.approx(46.56)


def test_new_target_keeps_the_recovery_fraction() -> None:
    """A rebalance during recovery scales the rate: at 50 % of 20/s, a new target of 40/s gives 20/s."""
    aimd = AimdRate(20.0)
    aimd.on_throttle(0.0, 0.0)
    aimd.set_target(40.0)
    assert aimd.rate_at(0.0) == 20.0


# --- QuotaLimiter ------------------------------------------------------------------------------------------


async def test_first_acquire_is_immediate(vt: VirtualTime) -> None:
    """The limiter starts with one token: the first call waits 0 s."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    assert await limiter.acquire() == 0.0


async def test_try_acquire_takes_a_token_only_when_one_is_there_and_nobody_queues(vt: VirtualTime) -> None:
    """At 10/s: granted at once from a full bucket, refused when empty, refused while a caller queues even
    though a token is due (it goes to the queue's head), granted again once the queue is empty."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    queued = asyncio.create_task(limiter.acquire())
    await vt.settle()
    vt.now = 0.1  # a token is due, but the queued caller's timer has not fired
    assert not limiter.try_acquire()
    await vt.run_until_done(queued)
    await vt.advance(0.1)
    assert limiter.try_acquire()
    assert 3 == limiter.granted_total


async def test_sequential_calls_are_paced_at_the_quota(vt: VirtualTime) -> None:
    """At 10/s, 21 calls in a row take 2 s: the first at once, then one every 0.1 s."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)

    async def calls() -> None:
        for _ in range(21):
            await limiter.acquire()

    task = asyncio.create_task(calls())
    await vt.run_until_done(task)
    assert pytest.approx(vt.now) == 2.0
    assert limiter.granted_total == 21


async def test_acquire_returns_seconds_waited(vt: VirtualTime) -> None:
    """The second call at 4/s waits 0.25 s and says so."""
    limiter = QuotaLimiter(4.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    task = asyncio.create_task(limiter.acquire())
    await vt.run_until_done(task)
    assert pytest.approx(task.result()) == 0.25


async def test_concurrent_callers_are_granted_in_arrival_order(vt: VirtualTime) -> None:
    """FIFO: five callers queued in order are granted in that order, one per 1/rate."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    order: list[tuple[int, float]] = []

    async def caller(name: int) -> None:
        await limiter.acquire()
        order.append((name, round(vt.now, 6)))

    tasks = [asyncio.create_task(caller(name)) for name in range(5)]
    await vt.run_until_done(asyncio.gather(*tasks))
    assert order == [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (4, 0.5)]


async def test_waiting_is_not_a_busy_loop(vt: VirtualTime) -> None:
    """Ten queued callers hold exactly one timer between them: only the head of the queue sleeps."""
    limiter = QuotaLimiter(1.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(10)]
    await vt.settle()
    assert (limiter.waiting, vt.pending_timers()) == (10, 1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_cancelled_head_waiter_hands_its_turn_to_the_next_without_delay(vt: VirtualTime) -> None:
    """Cancelling the head at t=0.05 does not slow the next caller: granted at t=0.1 as the head would be."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    head = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await vt.advance(0.05)
    head.cancel()
    await vt.run_until_done(second)
    assert pytest.approx(vt.now) == 0.1
    assert (limiter.waiting, limiter.granted_total) == (0, 2)


async def test_cancelled_waiter_in_the_middle_leaves_the_queue(vt: VirtualTime) -> None:
    """A caller cancelled while queued behind others is removed; the rest keep their order and pace."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await vt.settle()
    tasks[1].cancel()
    await vt.run_until_done(tasks[2])
    assert pytest.approx(vt.now) == 0.2
    assert tasks[0].done()
    assert tasks[1].cancelled()


async def test_throttle_stops_grants_until_retry_after_then_resumes_at_half_rate(vt: VirtualTime) -> None:
    """On 429 with Retry-After 2 s at t=0 the queued call waits for the block, then one token at half rate.

    Rate after the block: 10/s * 0.5 = 5/s, so one token takes 0.2 s: granted at 2.0 + 0.2 = 2.2 s, when
    additive increase has lifted the rate to 10/s * (0.5 + 0.05/s * 0.2 s) = 5.1/s.
    """
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await vt.settle()
    limiter.on_throttled(2.0)
    assert limiter.blocked_until == 2.0
    await vt.run_until_done(waiting)
    assert pytest.approx(vt.now) == 2.2
    assert pytest.approx(limiter.rate_per_s) == 5.1


async def test_default_headroom_paces_just_below_the_share(vt: VirtualTime) -> None:
    """By default calls are paced at 98.5 % of the share, so jitter does not push a window over the quota."""
    limiter = QuotaLimiter(100.0, clock=vt.clock, sleep=vt.sleep)
    assert limiter.share_per_s == 100.0
    assert limiter.rate_per_s == pytest.approx(98.5)


async def test_throttle_after_successes_resumes_just_below_the_observed_rate(vt: VirtualTime) -> None:
    """50 successes in the last second, then a 429: after the block the rate is 50 * 0.97 = 48.5/s."""
    limiter = QuotaLimiter(100.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    for _ in range(50):
        limiter.on_success()
        await vt.advance(0.01)
    limiter.on_throttled(1.0)
    await vt.advance(1.0)
    assert limiter.rate_per_s == pytest.approx(48.5)


async def test_no_share_blocks_until_partitions_are_assigned(vt: VirtualTime) -> None:
    """With 0 of 6 partitions acquire blocks (no timer); assigning 2 of 6 grants at a third of the quota."""
    limiter = QuotaLimiter(30.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    limiter.set_share(0, 6)
    task = asyncio.create_task(limiter.acquire())
    await vt.advance(100.0)
    assert (task.done(), vt.pending_timers(), limiter.rate_per_s) == (False, 0, 0.0)
    limiter.set_share(2, 6)
    await vt.run_until_done(task)
    assert limiter.share_per_s == 10.0
    assert pytest.approx(vt.now) == 100.1


async def test_utilization_is_granted_rate_over_share(vt: VirtualTime) -> None:
    """Calls granted at the full share for a whole window read as utilization 1.0; idle reads 0."""
    limiter = QuotaLimiter(
        10.0, clock=vt.clock, sleep=vt.sleep, utilization_window_s=5.0, headroom_fraction=0.0
    )

    async def calls() -> None:
        for _ in range(100):
            await limiter.acquire()

    task = asyncio.create_task(calls())
    await vt.run_until_done(task)
    assert pytest.approx(limiter.utilization, abs=0.03) == 1.0
    await vt.advance(10.0)
    assert limiter.utilization == 0.0


async def test_success_and_throttle_counters(vt: VirtualTime) -> None:
    """The limiter counts outcomes reported to it so the metrics layer can export them."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    limiter.on_success()
    limiter.on_success()
    limiter.on_throttled(None)
    assert (limiter.successes_total, limiter.throttled_total) == (2, 1)


def test_set_share_rejects_more_assigned_than_total() -> None:
    """An impossible assignment is a bug upstream, reported loudly."""
    limiter = QuotaLimiter(10.0, clock=lambda: 0.0)
    with pytest.raises(ValueError, match="assigned"):
        limiter.set_share(4, 3)


@given(
    quota=st.floats(min_value=0.1, max_value=1000.0),
    owners=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=64),
)
def test_shares_of_all_replicas_sum_to_the_quota(quota: float, owners: list[int]) -> None:
    """Property: however partitions spread over 5 replicas (unevenly, some with none), shares sum to quota."""
    total = len(owners)
    shares = []
    for replica in range(5):
        limiter = QuotaLimiter(quota, clock=lambda: 0.0)
        limiter.set_share(owners.count(replica), total)
        shares.append(limiter.share_per_s)
    assert quota == pytest.approx(sum(shares))


# --- QuotaLimiter: late timers, rebalance start, hand-over -------------------------------------------------


async def _acquire_in_a_row(limiter: QuotaLimiter, vt: VirtualTime, calls: int) -> float:
    """Make ``calls`` sequential acquires and return the virtual seconds they took."""
    started = vt.now

    async def calls_in_a_row() -> None:
        for _ in range(calls):
            await limiter.acquire()

    await vt.run_until_done(asyncio.create_task(calls_in_a_row()))
    return vt.now - started


async def test_timer_slack_does_not_lower_the_achieved_rate() -> None:
    """Every timer fires 2 ms late; 51 calls at 50/s still take 50 * 1/50 = 1.0 s, not 50 * 0.022 = 1.1 s.

    The late head is granted as of when it was due, so the next token is due 20 ms after the last one.
    Only the last grant shows the 2 ms of slack.
    """
    vt = VirtualTime(timer_slack_s=0.002)
    limiter = QuotaLimiter(50.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    elapsed_s = await _acquire_in_a_row(limiter, vt, 51)
    assert pytest.approx(1.002, abs=1e-6) == elapsed_s
    assert limiter.granted_total == 51


async def test_late_timer_credit_is_bounded_by_late_credit_s() -> None:
    """Timers 20 ms late at 50/s, credit at most 5 ms: 11 calls take 0.04 + 9 * 0.035 = 0.355 s.

    The first wait has nothing to credit yet (20 ms asked, 40 ms slept); each later grant is credited 5 ms of
    its 20 ms lateness, so intervals are 20 + 20 - 5 = 35 ms. An unbounded credit would keep the 20 ms grid
    (0.22 s); no credit at all would give 40 ms intervals (0.4 s).
    """
    vt = VirtualTime(timer_slack_s=0.020)
    limiter = QuotaLimiter(50.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0, late_credit_s=0.005)
    elapsed_s = await _acquire_in_a_row(limiter, vt, 11)
    assert pytest.approx(0.355, abs=1e-6) == elapsed_s


async def test_without_late_credit_every_grant_loses_the_timer_slack() -> None:
    """``late_credit_s=0`` switches the credit off: 2 ms late timers stretch 50 intervals of 20 ms to 1.1 s.

    The counterpart of the test above, showing that the 2 ms of slack would be lost on every grant.
    """
    vt = VirtualTime(timer_slack_s=0.002)
    limiter = QuotaLimiter(50.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0, late_credit_s=0.0)
    elapsed_s = await _acquire_in_a_row(limiter, vt, 51)
    assert pytest.approx(1.1, abs=1e-6) == elapsed_s


async def test_a_late_head_releases_every_call_that_fell_due_in_one_turn() -> None:
    """At 100/s, 5 callers queued at t=0, timers 35 ms late, credit 50 ms: the head's timer (asked for
    t=0.01) fires at 0.045; the calls due at 0.01 .. 0.04 are all granted then, the last of them one turn
    of the event loop after the first (not one turn per call); the fifth, due at 0.05, waits its turn.
    """
    vt = VirtualTime(timer_slack_s=0.035)
    limiter = QuotaLimiter(100.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0, late_credit_s=0.05)
    await limiter.acquire()
    callers = [asyncio.create_task(limiter.acquire()) for _ in range(5)]
    await vt.settle()
    vt.fire_next_timer()
    done_at_turn: dict[int, int] = {}
    for turn in range(20):
        await asyncio.sleep(0)
        for index, caller in enumerate(callers):
            if caller.done():
                done_at_turn.setdefault(index, turn)
    assert [0, 1, 2, 3] == sorted(done_at_turn)
    assert 1 >= done_at_turn[3] - done_at_turn[0]
    assert (4, 1) == (limiter.granted_total - 1, limiter.waiting)


async def test_a_caller_cancelled_after_the_head_granted_it_hands_its_token_on() -> None:
    """At 10/s with timers 100 ms late and a 200 ms credit, the head wakes at 0.2 and grants itself (due
    0.1) and the second caller (due 0.2); the second is cancelled before it resumes: the third caller, next
    in line, gets that token at once instead of waiting for its own at 0.3.
    """
    vt = VirtualTime(timer_slack_s=0.1)
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0, late_credit_s=0.2)
    await limiter.acquire()
    head, second, third = (asyncio.create_task(limiter.acquire()) for _ in range(3))
    await vt.settle()
    vt.fire_next_timer()
    for _ in range(20):  # turn by turn, until the head has its token and the second caller has not resumed
        if head.done():
            break
        await asyncio.sleep(0)
    assert head.done()
    assert not second.done()
    second.cancel()
    await vt.settle()
    assert second.cancelled()
    assert third.done()
    assert pytest.approx(0.2) == vt.now
    assert (0, 2) == (limiter.waiting, limiter.granted_total - 1)  # two tokens served head and third


async def test_random_timer_lateness_within_the_credit_costs_no_rate_and_no_window_above_the_bound() -> None:
    """200/s at the default headroom (197/s paced) and credit (15 ms), 40 callers always queued, every timer
    0-15 ms late at random: over 4 s the calls still come at >= 99 % of 197/s, and no one-second window
    holds more than ``rate * (1 s + late_credit_s) + burst`` = 197 * 1.015 + 1 grants.

    Crediting only the head's own timer lateness, up to 5 ms, gives 113/s here.
    """
    rng = random.Random(4)
    vt = VirtualTime(timer_slack_s=lambda: rng.uniform(0.0, 0.015))
    limiter = QuotaLimiter(200.0, clock=vt.clock, sleep=vt.sleep)
    grants: list[float] = []

    async def caller() -> None:
        while vt.now < 5.0:
            await limiter.acquire()
            grants.append(vt.now)

    callers = [asyncio.create_task(caller()) for _ in range(40)]
    await vt.run_until_done(asyncio.gather(*callers))
    measured = [at for at in grants if 1.0 <= at < 5.0]
    assert len(measured) / 4.0 >= 0.99 * 197.0
    busiest_window = max(bisect.bisect_right(grants, at + 1.0) - index for index, at in enumerate(grants))
    assert busiest_window <= 197.0 * 1.015 + 1


async def test_first_acquire_after_set_share_waits_one_token_at_the_new_rate(vt: VirtualTime) -> None:
    """After idling 5 s with a full bucket, a rebalance to 1 of 2 partitions (5/s) empties it: 0.2 s wait."""
    limiter = QuotaLimiter(10.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await vt.advance(5.0)
    limiter.set_share(1, 2)
    task = asyncio.create_task(limiter.acquire())
    await vt.run_until_done(task)
    assert pytest.approx(0.2) == task.result()


async def test_replicas_assigned_together_do_not_each_call_at_once(vt: VirtualTime) -> None:
    """Three idle replicas of a 30/s quota each get 1 of 3 partitions: no call before 1/10 s, then one each.

    With a token kept from before the rebalance all three would call at t=0, three calls above the quota.
    """
    replicas = [QuotaLimiter(30.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0) for _ in range(3)]
    await vt.advance(5.0)
    for limiter in replicas:
        limiter.set_share(1, 3)
    tasks = [asyncio.create_task(limiter.acquire()) for limiter in replicas]
    await vt.settle()
    assert [False, False, False] == [task.done() for task in tasks]
    await vt.run_until_done(asyncio.gather(*tasks))
    assert pytest.approx([0.1, 0.1, 0.1]) == [task.result() for task in tasks]


async def _throttle_after_rebalance(vt: VirtualTime, throttle_after_s: float) -> QuotaLimiter:
    """Quota 100/s rebalanced to 1 of 2 partitions (50/s) at t=10, a success every 50 ms from then on, and
    a 429 with Retry-After 1 s ``throttle_after_s`` later; return the limiter at the block's end.
    """
    limiter = QuotaLimiter(100.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await vt.advance(10.0)
    limiter.set_share(1, 2)
    rebalanced_at = vt.now
    success_offsets_s = [k * 0.05 for k in range(100) if k * 0.05 < throttle_after_s]
    for offset_s in success_offsets_s:
        await vt.advance(rebalanced_at + offset_s - vt.now)
        limiter.on_success()
    await vt.advance(rebalanced_at + throttle_after_s - vt.now)
    limiter.on_throttled(1.0)
    assert pytest.approx(rebalanced_at + throttle_after_s + 1.0) == limiter.blocked_until
    assert limiter.rate_per_s == 0.0
    await vt.advance(1.0)
    return limiter


async def test_throttle_during_the_hand_over_blocks_but_keeps_the_rate(vt: VirtualTime) -> None:
    """A 429 0.525 s after set_share (inside capacity_window_s = 1 s) counts the previous owner's calls.

    It blocks for its Retry-After, then the rate is the share again, 50/s, not the 11 successes seen
    (which would set a ceiling of 11 * 0.97 = 10.67/s); 30 s later it is still 50/s.
    """
    limiter = await _throttle_after_rebalance(vt, throttle_after_s=0.525)
    assert pytest.approx(50.0) == limiter.rate_per_s
    await vt.advance(30.0)
    assert pytest.approx(50.0) == limiter.rate_per_s


async def test_throttle_after_the_hand_over_lowers_the_rate(vt: VirtualTime) -> None:
    """The same 429 1.525 s after set_share is this replica's own: the 20 successes of the last second
    (t = 10.55 .. 11.5) set the rate, and its ceiling, to 20 * 0.97 = 19.4/s.
    """
    limiter = await _throttle_after_rebalance(vt, throttle_after_s=1.525)
    assert pytest.approx(19.4) == limiter.rate_per_s


async def test_queued_call_during_a_hand_over_throttle_waits_for_retry_after(vt: VirtualTime) -> None:
    """The hand-over throttle still blocks: a call queued when it arrives at t=10.01 waits until 11.01.

    Then, at the undiminished 50/s, one token takes 0.02 s: granted at 11.03 (at a halved 25/s: 11.05).
    """
    limiter = QuotaLimiter(100.0, clock=vt.clock, sleep=vt.sleep, headroom_fraction=0.0)
    await vt.advance(10.0)
    limiter.set_share(1, 2)
    await vt.advance(0.01)
    task = asyncio.create_task(limiter.acquire())
    await vt.settle()
    limiter.on_throttled(1.0)
    await vt.run_until_done(task)
    assert task.result() > 1.0
    assert pytest.approx(11.03) == vt.now
