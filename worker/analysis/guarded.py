"""An Analyzer wrapped in the worker's call discipline: quota, circuit breaker, retries within a budget.

Every call first passes the circuit breaker and takes a token from the quota limiter. Throttling (429)
holds the whole replica until Retry-After (the limiter's job); other transient failures back off with
jitter. Past the per-message budget the message is neither dropped nor approved: the caller is told to
stall its partition, and retries go on with backoff until the service answers or the worker shuts down.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from worker.analysis.analyzer import Analyzer, ImageDataAnalyzer
from worker.analysis.backoff import compute_backoff
from worker.analysis.breaker import CircuitBreaker
from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis
from worker.errors import AnalyzerError, AnalyzerThrottled, ImageAnalysisRejected, TransientAnalyzerError
from worker.records import Stall


class CallObserver(Protocol):
    """Metrics hooks for analyzer calls."""

    def call(self, outcome: str, seconds: float, waited_s: float) -> None:
        """One call ended in ``outcome`` after ``seconds``; it waited ``waited_s`` for its quota token."""

    def retry(self) -> None: ...


class GuardedAnalyzer:
    """``analyze_guarded(image_url, stall)``: the ``Analyzer`` seam's call with quota, breaker and retries;
    raises only image or fatal errors."""

    def __init__(
        self,
        analyzer: Analyzer,
        limiter: QuotaLimiter,
        breaker: CircuitBreaker,
        observer: CallObserver,
        *,
        budget_s: float,
        base_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._analyzer = analyzer
        self._data_analyzer = analyzer if isinstance(analyzer, ImageDataAnalyzer) else None
        self._limiter = limiter
        self._breaker = breaker
        self._observer = observer
        self._budget_s = budget_s
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._sleep = sleep

    async def analyze_guarded(self, image_url: str, stall: Stall) -> Analysis:
        """Analyze until success, an image error or a fatal error; never gives up on transient errors."""
        return await self._guarded(lambda: self._analyzer.analyze(image_url), stall)

    async def analyze_guarded_data(self, image_data: bytes, stall: Stall) -> Analysis:
        """The same for an image given as its bytes; the analyzer must be an ``ImageDataAnalyzer``."""
        analyzer = self._data_analyzer
        if analyzer is None:
            raise TypeError(f"{type(self._analyzer).__name__} cannot analyze image bytes")
        return await self._guarded(lambda: analyzer.analyze_data(image_data), stall)

    async def _guarded(self, call: Callable[[], Awaitable[Analysis]], stall: Stall) -> Analysis:
        started = self._clock()
        attempt = 0
        while True:
            if not self._breaker.allow():
                await self._pass_breaker()
            waited_s = 0.0 if self._limiter.try_acquire() else await self._limiter.acquire()
            called = self._clock()
            try:
                analysis = await call()
            except AnalyzerError as exc:
                self._observer.call(exc.outcome, self._clock() - called, waited_s)
                delay = self._retry_delay(exc, attempt, stall)
            else:
                self._observer.call("ok", self._clock() - called, waited_s)
                self._breaker.record_success()
                self._limiter.on_success()
                stall.unstall()
                return analysis
            attempt += 1
            self._observer.retry()
            if self._clock() - started >= self._budget_s:
                stall.stall()
            await self._sleep(delay)

    def _retry_delay(self, error: AnalyzerError, attempt: int, stall: Stall) -> float:
        """Seconds to wait before retrying after ``error``; re-raises image and fatal errors."""
        if isinstance(error, ImageAnalysisRejected):
            self._breaker.record_success()  # the service answered: it is healthy, the image is not
            stall.unstall()
            raise error
        if isinstance(error, AnalyzerThrottled):
            self._breaker.record_success()  # a 429 is a live service pacing us, not a failing one
            self._limiter.on_throttled(error.retry_after_s)
            return 0.0  # the limiter itself holds the next call until Retry-After
        if not isinstance(error, TransientAnalyzerError):
            raise error
        self._breaker.record_failure()
        delay = compute_backoff(
            attempt, base_s=self._base_backoff_s, max_s=self._max_backoff_s, rng=self._rng
        )
        return delay if error.retry_after_s is None else max(delay, error.retry_after_s)

    async def _pass_breaker(self) -> None:
        """Wait until the breaker lets a call through (it just refused one)."""
        while True:
            await self._sleep(max(self._breaker.seconds_until_probe, 0.05))
            if self._breaker.allow():
                return
