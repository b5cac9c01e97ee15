"""Moderating beyond the quota: a stream where 40 % of the submissions repeat earlier images (Zipf-like), at
quota R, through worker-side fetch and the analysis cache.

The replica's quota limiter is set to R = 30 calls/s and the vision emulator counts every call (it has no
rate limit of its own here: how exactly the limiter meets a service's limit is the quota benchmark's
subject, and a 429 hold would measure that instead of the cache). 1,000 submissions are moderated by the
known-content path in process (``Moderator.complete`` behind the guarded fetcher, hashing, the cache with
single-flight, the guarded analyzer with the real SDK; no Kafka: the loop is measured by the other
benchmarks), at most 128 in flight, in stream order. 600 distinct 320 x 240 photo-like JPEGs are served
over https on the loopback (store and emulator in a child process, as remote servers are: their CPU does
not compete with the worker's event loop); each repeat picks an earlier image with Zipf weights
(rank ** -1.1 by first appearance). The baseline, measured in the same run, is the same stream with the
cache off: every submission is one call, so it routes at R. Both rates are over the whole stream, from the
first submission to the last result. Targets: routed images/s >= 1.6 R (the ceiling is R / 0.6 = 1.67 R)
while analyzer calls/s <= R (with 2 % for the limiter's one-token burst).
"""

from __future__ import annotations

import asyncio
import io
import random
import time

import numpy as np
from PIL import Image

from bench.common import BenchContext, BenchResult
from bench.known_content_cpu import Servers, servers_process
from tests.fixtures.emulator import TEST_KEY
from tests.integration.content_harness import fetch_mode_moderator, moderate
from worker.content.cache import AnalysisCache

NAME = "known_content_repeats"
KEY = TEST_KEY  # the key content_harness' analyzer sends
QUOTA_PER_S = 30
SUBMISSIONS = 1_000
REPEAT_SHARE = 0.4
ZIPF_EXPONENT = 1.1
IN_FLIGHT = 128
MIN_ROUTED_R = 1.6
CALLS_TOLERANCE = 1.02  # the limiter's one-token burst


def _images(count: int, rng: np.random.Generator) -> dict[str, bytes]:
    """``count`` distinct JPEGs: smooth gradients with noise, so each has its own bytes and PDQ hash."""
    images = {}
    base = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None]
    for index in range(count):
        noise = rng.normal(0, 40, (240, 320, 3)).astype(np.float32)
        pixels = np.clip(base * rng.uniform(0.3, 1.0, 3) + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
        images[f"img-{index:04d}.jpg"] = buffer.getvalue()
    return images


def stream(names: list[str], rng: random.Random) -> list[str]:
    """The submission order: exactly ``REPEAT_SHARE`` of them repeat an earlier image, Zipf-weighted by
    first appearance; the others are the new images in order."""
    repeats = set(rng.sample(range(1, SUBMISSIONS), round(SUBMISSIONS * REPEAT_SHARE)))
    fresh = iter(names)
    seen: list[str] = []
    weights: list[float] = []
    order = []
    for position in range(SUBMISSIONS):
        if position in repeats:
            order.append(rng.choices(seen, weights=weights)[0])
        else:
            name = next(fresh)
            seen.append(name)
            weights.append(len(seen) ** -ZIPF_EXPONENT)
            order.append(name)
    return order


async def _phase(servers: Servers, order: list[str], *, cached: bool) -> dict[str, float]:
    """Moderate ``order``: routed/s and analyzer calls/s from the first submission to the last result."""
    cache = AnalysisCache(max_entries=10_000, ttl_s=3600.0, version="azure:tags") if cached else None
    slots = asyncio.Semaphore(IN_FLIGHT)
    from_cache = 0

    async def one(offset: int, name: str) -> None:
        nonlocal from_cache
        async with slots:
            _, document = await moderate(moderator, servers.url_for(name), offset)
        from_cache += document["analysis_source"] == "cache"

    async with fetch_mode_moderator(
        servers.endpoint, servers.certificate, cache=cache, quota_per_s=QUOTA_PER_S
    ) as moderator:
        before = await servers.emulator_stats()
        started = time.monotonic()
        await asyncio.gather(*(one(offset, name) for offset, name in enumerate(order)))
        elapsed = time.monotonic() - started
        after = await servers.emulator_stats()
    calls = int(after["calls_total"]) - int(before["calls_total"])
    return {
        "routed_per_s": len(order) / elapsed,
        "calls_per_s": calls / elapsed,
        "calls": calls,
        "seconds": elapsed,
        "from_cache": from_cache,
    }


async def run(ctx: BenchContext) -> BenchResult:
    """The baseline (cache off), then the cached run, on the same stream against the same emulator."""
    images = _images(round(SUBMISSIONS * (1 - REPEAT_SHARE)), np.random.default_rng(14))
    order = stream(list(images), random.Random(14))
    async with servers_process(ctx.workdir, images, key=KEY) as servers:
        baseline = await _phase(servers, order, cached=False)
        cached = await _phase(servers, order, cached=True)
    ratio = cached["routed_per_s"] / QUOTA_PER_S
    calls_ok = cached["calls_per_s"] <= QUOTA_PER_S * CALLS_TOLERANCE
    return BenchResult(
        name=NAME,
        ratio=ratio,
        target=f">= {MIN_ROUTED_R} R routed, calls <= R (R = {QUOTA_PER_S}/s)",
        met=ratio >= MIN_ROUTED_R and calls_ok,
        baseline=f"cache off: {baseline['routed_per_s']:.1f} routed/s, {baseline['calls_per_s']:.1f} calls/s",
        measured=(
            f"{cached['routed_per_s']:.1f} routed/s with {cached['calls_per_s']:.1f} calls/s, "
            f"{int(cached['from_cache'])} of {SUBMISSIONS} from the cache"
        ),
        figures={
            **{f"cached_{key}": round(value, 3) for key, value in cached.items()},
            **{f"baseline_{key}": round(value, 3) for key, value in baseline.items()},
        },
    )
