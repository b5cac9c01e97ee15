"""Collecting the analyses of a labeled set: each image analyzed at most once, under the quota limiter.

For every image: its digest (local files are read here), then the analysis cache; only on a miss one call
of the ``ImageAnalyzer`` (rows with the same image share it), after a token from
``worker.analysis.limiter.QuotaLimiter``. A refusal (image error) is an answer and is cached too.
Throttling holds the limiter until Retry-After; other transient errors back off with jitter and are
retried ``max_attempts`` times in all before the run stops with the error (what was analyzed so far stays
cached, so the next run resumes). ``Progress`` is told of every image done, so a caller can draw a bar
with an ETA.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from worker.analysis.backoff import compute_backoff
from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis
from worker.errors import AnalyzerThrottled, ConfigurationError, ImageAnalysisRejected, TransientAnalyzerError
from worker.evaluation.analysis_cache import AnalysisCache, CachedAnswer, bytes_digest, url_digest
from worker.evaluation.analyzers import ImageAnalyzer
from worker.evaluation.labeled_set import LabeledImage, Observation

DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5


class Progress(Protocol):
    """Told of each image done (from the cache or the analyzer)."""

    def advance(self, images: int) -> None:
        """``images`` more images are done."""
        ...


@dataclass(frozen=True, slots=True)
class Collected:
    """The observations in the labeled set's order, and how many analyzer calls they cost."""

    observations: tuple[Observation, ...]
    analyzer_calls: int

    @property
    def cached(self) -> int:
        """Observations that cost no call: served from the cache, or sharing another row's image."""
        return sum(observation.cached for observation in self.observations)


class Collector:
    """Runs ``collect``; at most ``concurrency`` images in flight. ``sleep`` and ``rng`` are injected for
    tests (backoff between transient failures)."""

    def __init__(
        self,
        analyzer: ImageAnalyzer,
        cache: AnalysisCache,
        limiter: QuotaLimiter,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1 or max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        self._analyzer = analyzer
        self._cache = cache
        self._limiter = limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._calls = 0
        self._pending: dict[str, asyncio.Future[CachedAnswer]] = {}

    async def collect(self, images: Sequence[LabeledImage], progress: Progress) -> Collected:
        """One observation per image, in order; raises the analyzer error that stopped the run, or
        ``ConfigurationError`` for a local image that cannot be read."""
        self._calls = 0
        self._pending.clear()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._observe(image, progress)) for image in images]
        except ExceptionGroup as failed:  # the first failure stopped the others: report that one
            raise failed.exceptions[0] from None
        return Collected(tuple(task.result() for task in tasks), self._calls)

    async def _observe(self, image: LabeledImage, progress: Progress) -> Observation:
        async with self._slots:
            data = None if image.is_url else await asyncio.to_thread(_read, image)
            digest = url_digest(image.reference) if data is None else bytes_digest(data)
            identity = self._analyzer.identity
            answer = self._cache.get(identity, digest)
            cached = answer is not None
            if answer is None:
                # Two rows with the same image share one call; the first stores it, the others wait for it.
                pending = self._pending.get(digest)
                cached = pending is not None
                if pending is None:
                    pending = self._pending[digest] = asyncio.ensure_future(self._answer(image, data))
                    answer = await pending
                    self._cache.put(identity, digest, answer)
                else:
                    answer = await pending
        progress.advance(1)
        return Observation(image, answer.analysis, answer.error_code, cached=cached)

    async def _answer(self, image: LabeledImage, data: bytes | None) -> CachedAnswer:
        attempt = 0
        while True:
            await self._limiter.acquire()
            self._calls += 1
            try:
                analysis = await self._call(image, data)
            except ImageAnalysisRejected as refused:
                self._limiter.on_success()  # the service answered
                return CachedAnswer(error_code=refused.code)
            except AnalyzerThrottled as throttled:
                self._limiter.on_throttled(throttled.retry_after_s)
                continue  # the limiter holds the next call until Retry-After
            except TransientAnalyzerError:
                attempt += 1
                if attempt >= self._max_attempts:
                    raise
                delay_s = compute_backoff(
                    attempt - 1, base_s=self._base_backoff_s, max_s=self._max_backoff_s, rng=self._rng
                )
                await self._sleep(delay_s)
                continue
            self._limiter.on_success()
            return CachedAnswer(analysis)

    async def _call(self, image: LabeledImage, data: bytes | None) -> Analysis:
        if data is None:
            return await self._analyzer.analyze_url(image.reference)
        return await self._analyzer.analyze_bytes(data)


def _read(image: LabeledImage) -> bytes:
    try:
        return Path(image.reference).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"labeled set line {image.line}: cannot read image {image.reference}: {exc.strerror}"
        ) from exc
