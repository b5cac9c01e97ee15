"""The known-content step (``worker.moderation.KnownContent``): fetch the image, hash it, match the hash
banks, then the analysis cache, and only then call the guarded analyzer with the bytes (single-flight: one
call for concurrent arrivals of the same new image).

A bank match or a cache hit costs no quota: the guarded analyzer, which takes the quota token, is called
only for an image neither knows. A fetch refusal is translated at this boundary: an unsafe reference
(not https, no usable host, an address that is not public) becomes the ``unsafe_url`` dead letter, any
other refusal an image error whose code is ``fetch:<reason>`` (decided by the policy's ``on_image_error``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

from worker.content.banks import HashBanks
from worker.content.cache import AnalysisCache
from worker.content.fetch import FetchedImage, FetchRefusal, FetchRefused
from worker.contracts import DeadLetterReason, InvalidSubmission
from worker.domain import Analysis
from worker.errors import ImageAnalysisRejected
from worker.moderation import Sighting
from worker.records import AnalysisSource, ContentHashes, SideRecord, Stall

UNSAFE_REFERENCE: Final = frozenset(
    {FetchRefusal.NOT_HTTPS, FetchRefusal.BAD_URL, FetchRefusal.ADDRESS_NOT_ALLOWED}
)
"""Refusals that say the reference itself is unsafe: dead-lettered as ``unsafe_url``, never analyzed."""
IMAGE_ERROR_PREFIX: Final = "fetch:"
_JSON_HEADERS: Final = (("content-type", b"application/json"),)


class ImageFetcher(Protocol):
    """``worker.content.fetch.GuardedFetcher``: the image's bytes, or ``FetchRefused``."""

    async def fetch(self, url: str) -> FetchedImage: ...


class GuardedDataAnalysis(Protocol):
    """``worker.analysis.guarded.GuardedAnalyzer.analyze_guarded_data``: quota, breaker and retries."""

    async def analyze_guarded_data(self, image_data: bytes, stall: Stall) -> Analysis: ...


def translate_refusal(refused: FetchRefused) -> InvalidSubmission | ImageAnalysisRejected:
    """The error the pipeline already knows for a fetch refusal: a dead letter or an image error."""
    if refused.reason in UNSAFE_REFERENCE:
        return InvalidSubmission(DeadLetterReason.UNSAFE_URL, f"worker-side fetch: {refused}")
    return ImageAnalysisRejected(str(refused), code=f"{IMAGE_ERROR_PREFIX}{refused.reason}")


class KnownContentStep:
    """Implements ``worker.moderation.KnownContent`` over a fetcher, the hash banks and the guarded
    analyzer. ``hash_image`` is ``worker.content.hashes.content_hashes`` in production; it runs in a worker
    thread, off the event loop."""

    def __init__(
        self,
        fetcher: ImageFetcher,
        analyzer: GuardedDataAnalysis,
        *,
        hash_image: Callable[[bytes], ContentHashes],
        banks: HashBanks | None = None,
        cache: AnalysisCache | None = None,
        cache_topic: str | None = None,
    ) -> None:
        """``cache_topic``: share each new analysis there (a side record of its result); ``None``: keep it
        in this replica's cache only."""
        self._fetcher = fetcher
        self._analyzer = analyzer
        self._banks = banks
        self._hash_image = hash_image
        self._cache = cache
        self._cache_topic = cache_topic

    async def look(self, image_url: str, stall: Stall) -> Sighting:
        """Fetch, hash, match the banks, else analyze the bytes; raises ``InvalidSubmission`` or
        ``ImageAnalysisRejected`` for a refused fetch (``translate_refusal``), and whatever the guarded
        analyzer raises."""
        try:
            image = await self._fetcher.fetch(image_url)
        except FetchRefused as refused:
            raise translate_refusal(refused) from None
        hashes = await asyncio.to_thread(self._hash_image, image.data)
        match = self._banks.match(hashes) if self._banks is not None else None
        if match is not None:
            return Sighting(None, AnalysisSource.BANK, hashes, match.verdict())
        if self._cache is None:
            analysis = await self._analyzer.analyze_guarded_data(image.data, stall)
            return Sighting(analysis, AnalysisSource.ANALYZER, hashes)
        analysis, cached = await self._cache.get_or_analyze(
            hashes.sha256, lambda: self._analyzer.analyze_guarded_data(image.data, stall)
        )
        if cached:
            return Sighting(analysis, AnalysisSource.CACHE, hashes)
        side: tuple[SideRecord, ...] = ()
        if self._cache_topic is not None:
            key, value = self._cache.record(hashes.sha256, analysis)
            side = (SideRecord(self._cache_topic, key, value, _JSON_HEADERS),)
        return Sighting(analysis, AnalysisSource.ANALYZER, hashes, side=side)
