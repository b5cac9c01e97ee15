"""The vision emulator's configuration, its seams and its mutable state: scripts, rate limiter, counters.

No HTTP here: ``worker.dev.emulator.server`` serves this state. The rate limiter is pure with an injected
clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from worker.dev.emulator.contract import MODEL_VERSION
from worker.dev.emulator.fixtures import HashTagSource, ScriptBook, Scripts


class TagSource(Protocol):
    """Where default answers come from when no fixture scripts an image (the seam for a "model mode")."""

    async def tags_for(self, image: bytes) -> list[tuple[str, float]]:
        """Tags ``(name, confidence in [0, 1])`` for the image bytes, most confident first.

        May raise ``worker.errors.ImageAnalysisRejected``: the emulator answers the named error of its
        ``code`` (``InvalidImageFormat``, ``InvalidImageSize``, ...), or InvalidImageFormat for other codes.
        """
        ...


class ImageNotAccessibleError(Exception):
    """An ``ImageFetcher`` could not get the image; the emulator answers 400 "not accessible"."""


class ImageFetcher(Protocol):
    """Fetches the image behind a URL body. Without one (fixture mode) URLs are never fetched."""

    async def fetch(self, url: str) -> bytes:
        """The image bytes; raises ``ImageNotAccessibleError`` when the URL cannot be read."""
        ...


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves.

    - ``key``: the accepted ``Ocp-Apim-Subscription-Key``; any ``Authorization: Bearer`` token passes too.
    - ``fixtures``: the scripts at start and after a reset.
    - ``latency_ms``: added to every analyze-route call.
    - ``rate_limit_per_s``: at most that many analyze calls in any ``rate_window_s`` seconds; ``None`` is
      unlimited. Calls above it get 429 with ``Retry-After``.
    - ``tag_source`` / ``fetcher``: where unscripted images' tags come from; no fetcher means URLs are never
      fetched and their tags follow from the URL (fixture mode).
    - ``default_size``: the metadata of URL images no fixture sizes.
    - ``route_prefix``: ``None`` serves the route under any path prefix (docs/azure-contract.md §6.1); a
      string serves only ``prefix + /computervision/imageanalysis:analyze``, so a wrong endpoint gets 404.
    - ``clock``: monotonic seconds, for the rate limit.
    """

    key: str = field(default="emulator-key", repr=False)
    fixtures: Scripts = field(default_factory=dict)
    latency_ms: int = 0
    rate_limit_per_s: int | None = None
    rate_window_s: float = 1.0
    tag_source: TagSource = field(default_factory=HashTagSource)
    fetcher: ImageFetcher | None = None
    default_size: tuple[int, int] = (864, 576)
    route_prefix: str | None = None
    model_version: str = MODEL_VERSION
    clock: Callable[[], float] = time.monotonic


class SlidingWindowLimiter:
    """Admits at most ``max_calls`` in any ``window_s`` seconds; refused calls do not use up the quota."""

    def __init__(self, max_calls: int, window_s: float, clock: Callable[[], float]) -> None:
        if max_calls < 1 or window_s <= 0:
            raise ValueError("a rate limit needs max_calls >= 1 and window_s > 0")
        self._max_calls, self._window_s, self._clock = max_calls, window_s, clock
        self._admitted: deque[float] = deque()

    def try_admit(self) -> int | None:
        """``None`` if the call is admitted, else the whole seconds (>= 1) until a slot frees up."""
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - self._window_s:
            self._admitted.popleft()
        if len(self._admitted) < self._max_calls:
            self._admitted.append(now)
            return None
        wait_s = self._admitted[0] + self._window_s - now
        return max(1, -int(-wait_s // 1))  # ceiling: a client waiting that long finds a free slot


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """Counters since start or the last reset. ``by_status`` counts answered analyze-route calls (admin calls
    excluded); hung calls are in ``hung_total`` only; ``rate_limited_total`` are the 429s of the rate limit;
    ``scripted_total`` the calls answered from a fixture."""

    by_status: Mapping[int, int]
    hung_total: int = 0
    rate_limited_total: int = 0
    scripted_total: int = 0

    @property
    def calls_total(self) -> int:
        """Every analyze-route call, answered or hung."""
        return sum(self.by_status.values()) + self.hung_total

    def as_json(self) -> dict[str, object]:
        """The ``GET /_emulator/stats`` document (status codes as string keys)."""
        return {
            "calls_total": self.calls_total,
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "hung_total": self.hung_total,
            "rate_limited_total": self.rate_limited_total,
            "scripted_total": self.scripted_total,
        }


class EmulatorState:
    """The mutable state behind one app: scripts, rate limiter and counters. One event loop only."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.book = ScriptBook(config.fixtures)
        self.closing = asyncio.Event()  # set on shutdown so hung calls end instead of holding it up
        self.reset()

    def reset(self) -> None:
        """Back to a fresh start: configured fixtures from their first step, zero counters, empty window."""
        self.book.replace(self.config.fixtures)
        limit = self.config.rate_limit_per_s
        window_s = self.config.rate_window_s
        self.limiter = None if limit is None else SlidingWindowLimiter(limit, window_s, self.config.clock)
        self.by_status: Counter[int] = Counter()
        self.hung_total = self.rate_limited_total = self.scripted_total = 0

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        return EmulatorStats(
            dict(self.by_status), self.hung_total, self.rate_limited_total, self.scripted_total
        )


EMULATOR_STATE = web.AppKey("emulator_state", EmulatorState)
