"""The analysis cache: analyses kept by the image's SHA-256 and the analyzer's version, so a repeated image
is decided by the current policy without a call.

Bounded (least recently used out first) with a time to live, on the wall clock so entries shared between
replicas age alike. Single-flight: while the first arrival of a new image is being analyzed, later arrivals
of the same bytes wait for that one call instead of making their own; if it fails with an image error they
all get that error, and if it is cancelled (a revoked partition) one of the waiters calls instead.

Shared across replicas through the compacted ``moderation.analysis-cache`` topic: each analysis from the
analyzer becomes a ``cache_record`` (the moderator sends it with the result as a side record), and every
replica applies the records it reads (``apply``). Pure apart from the futures; no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import orjson

from worker.domain import Analysis, Tag

RECORD_VERSION: Final = 1


class Cached(NamedTuple):
    """One cached analysis and when it was made (seconds since the epoch)."""

    analysis: Analysis
    analyzed_at_s: float


class AnalysisCache:
    """``max_entries`` analyses for at most ``ttl_s`` seconds each, under one analyzer ``version``."""

    def __init__(
        self, *, max_entries: int, ttl_s: float, version: str, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("an analysis cache needs max_entries >= 1 and ttl_s > 0")
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self.version = version
        self._clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[Analysis]] = {}
        self.hits = self.misses = self.joined = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sha256: str) -> Analysis | None:
        """The cached analysis of the image with ``sha256``, if there is a fresh one."""
        cached = self._entries.get(sha256)
        if cached is None:
            return None
        if self._clock() - cached.analyzed_at_s >= self._ttl_s:
            del self._entries[sha256]
            return None
        self._entries.move_to_end(sha256)
        return cached.analysis

    def put(self, sha256: str, analysis: Analysis, analyzed_at_s: float | None = None) -> None:
        """Keep ``analysis``; the least recently used entry goes when the cache is full."""
        at = self._clock() if analyzed_at_s is None else analyzed_at_s
        if self._clock() - at >= self._ttl_s:
            return
        self._entries[sha256] = Cached(analysis, at)
        self._entries.move_to_end(sha256)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def get_or_analyze(
        self, sha256: str, analyze: Callable[[], Awaitable[Analysis]]
    ) -> tuple[Analysis, bool]:
        """The image's analysis and whether it came from the cache (or another arrival's call): a cached
        one, the in-flight call's, or ``analyze()``'s, which is then kept. Raises what ``analyze`` raises."""
        while True:
            cached = self.get(sha256)
            if cached is not None:
                self.hits += 1
                return cached, True
            pending = self._in_flight.get(sha256)
            if pending is None:
                return await self._lead(sha256, analyze), False
            try:
                analysis = await asyncio.shield(pending)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if pending.cancelled() and (current is None or not current.cancelling()):
                    continue  # the leading call was cancelled, not this one: try again, maybe as the leader
                raise
            self.joined += 1
            return analysis, True

    async def _lead(self, sha256: str, analyze: Callable[[], Awaitable[Analysis]]) -> Analysis:
        future: asyncio.Future[Analysis] = asyncio.get_running_loop().create_future()
        self._in_flight[sha256] = future
        self.misses += 1
        try:
            analysis = await analyze()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: with no waiter, asyncio would log it as never retrieved
            raise
        finally:
            del self._in_flight[sha256]
        self.put(sha256, analysis)
        future.set_result(analysis)
        return analysis

    def record(self, sha256: str, analysis: Analysis) -> tuple[bytes, bytes]:
        """The topic record ``(key, value)`` that shares ``analysis`` with the other replicas."""
        value = {
            "v": RECORD_VERSION,
            "version": self.version,
            "sha256": sha256,
            "analyzed_at_s": self._clock(),
            "model_version": analysis.model_version,
            "tags": [[tag.name, tag.confidence] for tag in analysis.tags],
            "width": analysis.width,
            "height": analysis.height,
        }
        return f"{self.version}/{sha256}".encode(), orjson.dumps(value)

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Keep the analysis a topic record carries; False for a tombstone, another analyzer version, a
        stale entry or a record that is not one (skipped)."""
        if value is None or key is None or not key.startswith(f"{self.version}/".encode()):
            return False
        try:
            document = orjson.loads(value)
            analysis = Analysis(
                model_version=str(document["model_version"]),
                tags=tuple(Tag(str(name), float(confidence)) for name, confidence in document["tags"]),
                width=_int_or_none(document.get("width")),
                height=_int_or_none(document.get("height")),
            )
            sha256, analyzed_at_s = str(document["sha256"]), float(document["analyzed_at_s"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return False
        if document.get("version") != self.version or self._clock() - analyzed_at_s >= self._ttl_s:
            return False
        self.put(sha256, analysis, analyzed_at_s)
        return True


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
