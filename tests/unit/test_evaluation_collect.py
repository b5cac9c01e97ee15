"""Collecting analyses for `evaluate`: each image analyzed once, refusals cached, transient errors retried."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis, Decision, Tag
from worker.errors import ImageAnalysisRejected, TransientAnalyzerError
from worker.evaluation.analysis_cache import FILE_NAME, AnalysisCache
from worker.evaluation.collect import Collector
from worker.evaluation.labeled_set import LabeledImage

SECRET_URL = "https://images.example/cat.jpg?sv=2024&sig=TOPSECRETSIGNATURE"


class FakeAnalyzer:
    """Counts calls; answers a cat, refuses bytes starting with b"bad", fails transiently `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[str] = []
        self._failures = failures

    @property
    def identity(self) -> str:
        return "fake:1"

    async def analyze_url(self, url: str) -> Analysis:
        self.calls.append(url)
        return self._answer(b"")

    async def analyze_bytes(self, data: bytes) -> Analysis:
        self.calls.append(f"bytes:{data!r}")
        return self._answer(data)

    def _answer(self, data: bytes) -> Analysis:
        if self._failures:
            self._failures -= 1
            raise TransientAnalyzerError("connection reset")
        if data.startswith(b"bad"):
            raise ImageAnalysisRejected("not an image", code="InvalidImageFormat")
        return Analysis("fake-model", (Tag("cat", 0.9),), 64, 64)

    async def aclose(self) -> None:
        return None


class CountingProgress:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, images: int) -> None:
        self.done += images


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _images(tmp_path: Path) -> list[LabeledImage]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "good.png").write_bytes(b"good image")
    (tmp_path / "bad.png").write_bytes(b"bad bytes")
    return [
        LabeledImage(str(tmp_path / "good.png"), Decision.APPROVED, line=1),
        LabeledImage(str(tmp_path / "bad.png"), Decision.NEEDS_REVIEW, line=2),
        LabeledImage(SECRET_URL, Decision.APPROVED, line=3),
    ]


def _collector(
    analyzer: FakeAnalyzer, cache: AnalysisCache, sleep: RecordingSleep | None = None
) -> Collector:
    return Collector(
        analyzer, cache, QuotaLimiter(1000.0), sleep=sleep or RecordingSleep(), rng=random.Random(7)
    )


async def test_a_second_run_is_served_from_the_cache_with_no_analyzer_call(tmp_path: Path) -> None:
    """Run 1 calls the analyzer once per image; run 2 (a new cache object on the same folder) calls it zero
    times and returns the same answers, refusal included."""
    images = _images(tmp_path / "set")
    first_analyzer, second_analyzer = FakeAnalyzer(), FakeAnalyzer()
    with AnalysisCache(tmp_path / "cache") as cache:
        first = await _collector(first_analyzer, cache).collect(images, CountingProgress())
    progress = CountingProgress()
    with AnalysisCache(tmp_path / "cache") as cache:
        second = await _collector(second_analyzer, cache).collect(images, progress)
    answers = [(o.analysis, o.error_code) for o in second.observations]
    assert (3, 0, 3, 3, [(o.analysis, o.error_code) for o in first.observations]) == (
        first.analyzer_calls,
        second.analyzer_calls,
        second.cached,
        progress.done,
        answers,
    )


async def test_a_refused_image_is_an_answer_not_a_failure(tmp_path: Path) -> None:
    """The analyzer refusing an image gives an observation with its error code and no analysis."""
    with AnalysisCache(tmp_path / "cache") as cache:
        collected = await _collector(FakeAnalyzer(), cache).collect(_images(tmp_path), CountingProgress())
    refused = collected.observations[1]
    assert (None, "InvalidImageFormat") == (refused.analysis, refused.error_code)


async def test_the_cache_file_never_holds_an_image_url_or_its_signature(tmp_path: Path) -> None:
    """A URL is hashed into the key: neither the host nor the SAS signature is written to disk."""
    with AnalysisCache(tmp_path / "cache") as cache:
        await _collector(FakeAnalyzer(), cache).collect(_images(tmp_path), CountingProgress())
    stored = (tmp_path / "cache" / FILE_NAME).read_bytes()
    assert (False, False) == (b"TOPSECRETSIGNATURE" in stored, b"images.example" in stored)


async def test_changed_bytes_of_a_local_file_are_analyzed_again(tmp_path: Path) -> None:
    """Local images are keyed by their bytes: an edited file is a new image; the others stay cached."""
    images = _images(tmp_path / "set")
    with AnalysisCache(tmp_path / "cache") as cache:
        await _collector(FakeAnalyzer(), cache).collect(images, CountingProgress())
        (tmp_path / "set" / "good.png").write_bytes(b"good image, edited")
        analyzer = FakeAnalyzer()
        await _collector(analyzer, cache).collect(images, CountingProgress())
    assert [f"bytes:{b'good image, edited'!r}"] == analyzer.calls


async def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    """Two transient failures, then an answer: three calls, two backoff sleeps, one analysis."""
    sleep = RecordingSleep()
    analyzer = FakeAnalyzer(failures=2)
    image = LabeledImage(SECRET_URL, Decision.APPROVED)
    with AnalysisCache(tmp_path / "cache") as cache:
        collected = await _collector(analyzer, cache, sleep).collect([image], CountingProgress())
    assert (3, 2, "fake-model") == (
        collected.analyzer_calls,
        len(sleep.delays),
        collected.observations[0].analysis and collected.observations[0].analysis.model_version,
    )


async def test_a_run_stops_with_the_error_after_the_last_attempt(tmp_path: Path) -> None:
    """An analyzer that keeps failing stops the run after `max_attempts` calls, with its error."""
    analyzer = FakeAnalyzer(failures=100)
    with AnalysisCache(tmp_path / "cache") as cache:
        collector = Collector(analyzer, cache, QuotaLimiter(1000.0), max_attempts=3, sleep=RecordingSleep())
        with pytest.raises(TransientAnalyzerError, match="connection reset"):
            await collector.collect([LabeledImage(SECRET_URL, Decision.APPROVED)], CountingProgress())
    assert 3 == len(analyzer.calls)


async def test_rows_with_the_same_image_share_one_call(tmp_path: Path) -> None:
    """Two files with the same bytes and one other: two calls, one row served by the other's call."""
    tmp_path.joinpath("a.png").write_bytes(b"same image")
    tmp_path.joinpath("b.png").write_bytes(b"same image")
    tmp_path.joinpath("c.png").write_bytes(b"other image")
    images = [LabeledImage(str(tmp_path / name), Decision.APPROVED) for name in ("a.png", "b.png", "c.png")]
    analyzer = FakeAnalyzer()
    with AnalysisCache(tmp_path / "cache") as cache:
        collected = await _collector(analyzer, cache).collect(images, CountingProgress())
    assert (2, 2, 1) == (len(analyzer.calls), collected.analyzer_calls, collected.cached)
