"""The vision emulator's admin endpoints and command line: counters, fixtures swapped at run time, reset,
and ``moderation-worker dev emulator`` as a process that serves until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.fixtures.emulator import TEST_KEY, sdk_client
from worker.cli import main
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator, EmulatorConfig

pytestmark = pytest.mark.integration

TAGS = [VisualFeatures.TAGS]
CAT = "https://img.example/cat.jpg"


def tag_pairs(result: ImageAnalysisResult) -> list[tuple[str, float]]:
    assert result.tags is not None
    return [(tag.name, tag.confidence) for tag in result.tags.list]


async def admin(endpoint: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    """Status and JSON answer of one admin call."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, endpoint + path, json=body) as reply,
    ):
        return reply.status, await reply.json()


async def test_posted_fixtures_shift_the_answers_at_run_time(emulator: Emulator) -> None:
    """A drift test replaces the tag mix mid-run; merge adds scripts and keeps the others."""
    dog = "https://img.example/dog.jpg"
    replaced = await admin(emulator.endpoint, "POST", "/_emulator/fixtures", {"*": {"tags": [["cat", 0.9]]}})
    merged = await admin(
        emulator.endpoint, "POST", "/_emulator/fixtures?mode=merge", {dog: {"tags": [["weapon", 0.8]]}}
    )
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        answers = [tag_pairs(await client.analyze_from_url(url, TAGS)) for url in (CAT, dog)]
    assert replaced == (200, {"mode": "replace", "images": 1})
    assert merged == (200, {"mode": "merge", "images": 1})
    assert answers == [[("cat", 0.9)], [("weapon", 0.8)]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_emulator/fixtures", {CAT: {"error": "Teapot"}}),
        ("/_emulator/fixtures", ["not", "a", "map"]),
        ("/_emulator/fixtures?mode=append", {CAT: {"tags": []}}),
    ],
)
async def test_bad_fixtures_are_refused_and_change_nothing(
    emulator: Emulator, path: str, body: object
) -> None:
    """A malformed document is a 400 naming the problem; the scripts in force stay."""
    emulator.load_fixtures(parse_fixtures({CAT: {"tags": [["kept", 0.5]]}}))
    status, answer = await admin(emulator.endpoint, "POST", path, body)
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        result = await client.analyze_from_url(CAT, TAGS)
    assert isinstance(answer, dict)
    assert (status, answer["error"]["code"]) == (400, "InvalidFixtures")
    assert tag_pairs(result) == [("kept", 0.5)]


async def test_stats_count_calls_by_status_and_reset_restarts_the_configured_scripts() -> None:
    """``GET /_emulator/stats`` equals the Python attribute (a refused key never reaches the scripts); reset
    zeroes counters, drops scripts posted at run time and starts configured scripts from their first step."""
    configured = parse_fixtures({CAT: [{"status": 500}, {"tags": []}]})
    async with Emulator(EmulatorConfig(key=TEST_KEY, fixtures=configured)) as emulator:
        async with sdk_client(emulator.endpoint, TEST_KEY) as client:
            with pytest.raises(HttpResponseError):
                await client.analyze_from_url(CAT, TAGS)
        async with sdk_client(emulator.endpoint, "wrong-key") as client:
            with pytest.raises(ClientAuthenticationError):
                await client.analyze_from_url(CAT, TAGS)
        stats = await admin(emulator.endpoint, "GET", "/_emulator/stats")
        attribute = emulator.stats.as_json()
        await admin(emulator.endpoint, "POST", "/_emulator/fixtures?mode=merge", {"*": {"status": 503}})
        reset = await admin(emulator.endpoint, "POST", "/_emulator/reset")
        async with sdk_client(emulator.endpoint, TEST_KEY) as client:
            with pytest.raises(HttpResponseError) as again:
                await client.analyze_from_url(CAT, TAGS)
            unscripted = await client.analyze_from_url("https://img.example/other.jpg", TAGS)
        after_reset = emulator.stats
    expected = {
        "calls_total": 2,
        "by_status": {"401": 1, "500": 1},
        "hung_total": 0,
        "rate_limited_total": 0,
        "scripted_total": 1,
    }
    assert ((200, expected), expected) == (stats, attribute)
    assert reset == (200, {"reset": True})
    assert (again.value.status_code, after_reset.by_status) == (500, {500: 1, 200: 1})
    assert unscripted.metadata.width == 864


async def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    """``moderation-worker dev emulator --port 0 --key K --fixtures F`` prints its endpoint, answers the SDK
    from the fixtures file, and exits 0 on SIGTERM."""
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(json.dumps({CAT: {"tags": [["from-file", 0.7]]}}), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker.cli", "dev", "emulator", "--port", "0", "--key", "cli-key",
        "--fixtures", str(fixtures), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("emulator ready endpoint=http://127.0.0.1:")
        async with sdk_client(line.strip().split("=", 1)[1], "cli-key") as client:
            result = await client.analyze_from_url(CAT + "?sig=abc", TAGS)
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tag_pairs(result), exit_code) == ([("from-file", 0.7)], 0)


def test_bad_options_exit_2_without_serving(tmp_path: Path) -> None:
    """A fixtures file that does not parse, or a zero rate limit, is reported before binding a port."""
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    exit_codes = [
        main(["dev", "emulator", "--fixtures", str(broken)]),
        main(["dev", "emulator", "--rate-limit", "0"]),
    ]
    assert exit_codes == [2, 2]
