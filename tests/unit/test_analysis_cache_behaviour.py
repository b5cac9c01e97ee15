"""The analysis cache: bounded, aged, single-flight, and shared through topic records."""

from __future__ import annotations

import asyncio

import pytest

from worker.content.cache import AnalysisCache
from worker.domain import Analysis, Tag
from worker.errors import ImageAnalysisRejected
from worker.kafka.topics import topic_specs
from worker.settings import Settings

ANALYSIS = Analysis("2023-10-01", (Tag("cat", 0.9), Tag("indoor", 0.6)), 640, 480)
SHA = "a" * 64


class Clock:
    """Wall-clock seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class GatedAnalyzer:
    """Counts calls; each waits until ``release`` is set, then answers ``ANALYSIS`` or raises ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self._error = error

    async def __call__(self) -> Analysis:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self._error is not None:
            raise self._error
        return ANALYSIS


def _cache(
    clock: Clock, *, entries: int = 3, ttl_s: float = 60.0, version: str = "azure:tags"
) -> AnalysisCache:
    return AnalysisCache(max_entries=entries, ttl_s=ttl_s, version=version, clock=clock)


def test_entries_expire_after_the_ttl() -> None:
    """A cached analysis decides for ``ttl_s`` seconds, then it is gone."""
    clock = Clock()
    cache = _cache(clock)
    cache.put(SHA, ANALYSIS)
    clock.now += 59.9
    fresh = cache.get(SHA)
    clock.now += 0.1
    assert (ANALYSIS, None) == (fresh, cache.get(SHA))


def test_the_least_recently_used_entry_goes_first() -> None:
    """Bounded: the fourth image pushes out the one used longest ago."""
    cache = _cache(Clock(), entries=3)
    for digit in "123":
        cache.put(digit * 64, ANALYSIS)
    cache.get("1" * 64)
    cache.put("4" * 64, ANALYSIS)
    assert [True, False, True, True] == [cache.get(digit * 64) is not None for digit in "1234"]


async def test_concurrent_arrivals_of_a_new_image_make_one_call() -> None:
    """Ten arrivals while the first call is in flight: one call, ten analyses, nine from the cache."""
    cache, analyzer = _cache(Clock()), GatedAnalyzer()
    tasks = [asyncio.create_task(cache.get_or_analyze(SHA, analyzer)) for _ in range(10)]
    await analyzer.started.wait()
    analyzer.release.set()
    results = await asyncio.gather(*tasks)
    later = await cache.get_or_analyze(SHA, analyzer)
    assert (1, [ANALYSIS] * 10, 9, (ANALYSIS, True)) == (
        analyzer.calls,
        [analysis for analysis, _ in results],
        sum(cached for _, cached in results),
        later,
    )


async def test_an_image_error_reaches_every_waiter_from_one_call() -> None:
    """The service refused the image once: every arrival gets that refusal, and nothing is cached."""
    refusal = ImageAnalysisRejected("bad", code="InvalidImageFormat")
    cache, analyzer = _cache(Clock()), GatedAnalyzer(refusal)
    tasks = [asyncio.create_task(cache.get_or_analyze(SHA, analyzer)) for _ in range(4)]
    await analyzer.started.wait()
    analyzer.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert (1, [refusal] * 4, 0) == (analyzer.calls, outcomes, len(cache))


async def test_a_cancelled_leader_hands_the_call_to_a_waiter() -> None:
    """The first arrival's task is cancelled (its partition revoked): a waiter makes the call instead."""
    cache, analyzer = _cache(Clock()), GatedAnalyzer()
    leader = asyncio.create_task(cache.get_or_analyze(SHA, analyzer))
    await analyzer.started.wait()
    waiter = asyncio.create_task(cache.get_or_analyze(SHA, analyzer))
    await asyncio.sleep(0)  # let the waiter join the in-flight call
    leader.cancel()
    analyzer.release.set()
    result = await waiter
    assert (True, (ANALYSIS, False), 2) == (leader.cancelled(), result, analyzer.calls)


def test_a_topic_record_shares_the_analysis_with_another_replica() -> None:
    """What one replica analyzed, another keeps from the record: same tags, sizes and model version."""
    clock = Clock()
    first, second = _cache(clock), _cache(clock)
    key, value = first.record(SHA, ANALYSIS)
    assert (b"azure:tags/" + SHA.encode(), True, ANALYSIS) == (key, second.apply(key, value), second.get(SHA))


@pytest.mark.parametrize("case", ["other version", "stale", "tombstone", "garbage"])
def test_records_that_cannot_be_used_are_skipped(case: str) -> None:
    """Another analyzer version's analysis, one older than the TTL, a tombstone or garbage is not kept."""
    clock = Clock()
    key, value = _cache(
        clock, version="azure:tags+caption" if case == "other version" else "azure:tags"
    ).record(SHA, ANALYSIS)
    receiver = _cache(clock)
    if case == "stale":
        clock.now += 61
    arguments = {"tombstone": (key, None), "garbage": (key, b"{")}.get(case, (key, value))
    assert (False, 0) == (receiver.apply(*arguments), len(receiver))


def test_the_shared_cache_topic_is_compacted_and_ages_with_the_ttl() -> None:
    """``topics create`` makes the cache topic only when the cache is shared; its records live one TTL."""
    shared = {
        spec.name: spec
        for spec in topic_specs(Settings.defaults(analysis_cache_shared=True, analysis_cache_ttl_s=600))
    }
    plain = {spec.name for spec in topic_specs(Settings.defaults())}
    assert ({"cleanup.policy": "compact,delete", "retention.ms": "600000"}, False) == (
        shared["moderation.analysis-cache"].topic_configs,
        "moderation.analysis-cache" in plain,
    )
