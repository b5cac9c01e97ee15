"""The analyzers `evaluate` calls, against the vision emulator: uploads, refusals, a wrong key, throttling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.emulator import TEST_KEY, png_image
from worker.analysis.limiter import QuotaLimiter
from worker.cli import main
from worker.dev.emulator.contract import MODEL_VERSION
from worker.dev.emulator.server import Emulator, EmulatorConfig
from worker.domain import Decision
from worker.errors import FatalAnalyzerError, ImageAnalysisRejected
from worker.evaluation.analysis_cache import AnalysisCache
from worker.evaluation.analyzers import AzureImageAnalyzer
from worker.evaluation.collect import Collector
from worker.evaluation.labeled_set import LabeledImage

pytestmark = pytest.mark.integration


class Done:
    def __init__(self) -> None:
        self.images = 0

    def advance(self, images: int) -> None:
        self.images += images


async def test_an_upload_is_analyzed_and_names_the_service_model(emulator: Emulator) -> None:
    """A 64 x 64 PNG sent as bytes comes back with the emulator's model version and the image's size."""
    analyzer = AzureImageAnalyzer(emulator.endpoint, TEST_KEY, kind="emulator")
    try:
        analysis = await analyzer.analyze_bytes(png_image(64, 64))
    finally:
        await analyzer.aclose()
    assert (MODEL_VERSION, 64, 64) == (analysis.model_version, analysis.width, analysis.height)


async def test_an_image_the_service_refuses_is_an_image_error_with_its_code(emulator: Emulator) -> None:
    """10 x 10 px is below the service's 50 px: ImageAnalysisRejected with code InvalidImageSize."""
    analyzer = AzureImageAnalyzer(emulator.endpoint, TEST_KEY, kind="emulator")
    try:
        with pytest.raises(ImageAnalysisRejected) as raised:
            await analyzer.analyze_bytes(png_image(10, 10))
    finally:
        await analyzer.aclose()
    assert "InvalidImageSize" == raised.value.code


async def test_a_wrong_key_is_fatal(emulator: Emulator) -> None:
    """A 401 is no image's fault and will not pass by retrying: FatalAnalyzerError, the key not in it."""
    analyzer = AzureImageAnalyzer(emulator.endpoint, "wrong-key", kind="emulator")
    try:
        with pytest.raises(FatalAnalyzerError) as raised:
            await analyzer.analyze_bytes(png_image(64, 64))
    finally:
        await analyzer.aclose()
    assert "wrong-key" not in str(raised.value)


async def test_evaluate_with_a_wrong_key_exits_3_with_one_line(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command stops at the first fatal answer: exit 3, one stderr line, no traceback, no key."""
    (tmp_path / "a.png").write_bytes(png_image(64, 64))
    (tmp_path / "set.csv").write_text("image,expected\na.png,approved\n")
    monkeypatch.setenv("MODERATION_AZURE_KEY", "wrong-key")
    argv = ["evaluate", "--set", str(tmp_path / "set.csv"), "--analyzer", "emulator"]
    code = await asyncio.to_thread(
        main, [*argv, "--endpoint", emulator.endpoint, "--cache-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("moderation-worker:")]
    assert (3, 1, False, False) == (code, len(lines), "Traceback" in err, "wrong-key" in err)


async def test_throttled_calls_wait_for_retry_after_and_every_image_is_analyzed(tmp_path: Path) -> None:
    """The emulator admits 2 calls per second, the limiter is told 100/s: the 429s hold the limiter for their
    Retry-After and every image is still analyzed exactly once with a 200."""
    images = []
    for index in range(4):
        (tmp_path / f"{index}.png").write_bytes(png_image(60 + index, 60))
        images.append(LabeledImage(str(tmp_path / f"{index}.png"), Decision.APPROVED))
    config = EmulatorConfig(key=TEST_KEY, rate_limit_per_s=2)
    async with Emulator(config) as emulator:
        analyzer = AzureImageAnalyzer(emulator.endpoint, TEST_KEY, kind="emulator")
        try:
            with AnalysisCache(tmp_path / "cache") as cache:
                collector = Collector(analyzer, cache, QuotaLimiter(100.0), concurrency=4)
                collected = await collector.collect(images, Done())
        finally:
            await analyzer.aclose()
        stats = emulator.stats
    assert (4, True, 4) == (
        stats.by_status.get(200, 0),
        stats.rate_limited_total > 0,
        sum(o.analysis is not None for o in collected.observations),
    )
