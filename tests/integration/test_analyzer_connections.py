"""Specification of the production analyzer's connection pool: the SDK client adds no concurrency bound.

The pipeline bounds the calls in flight (``MODERATION_MAX_IN_FLIGHT``); the SDK's default aiohttp session
would queue every call past its 100th connection inside aiohttp. Real SDK, real emulator whose calls hang,
so each call in progress holds one connection at the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from azure.core.credentials import AzureKeyCredential

from tests.fixtures.emulator import TEST_KEY
from tests.pipeline_harness import wait_until
from worker.analysis.azure import AzureAnalyzer
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator, EmulatorConfig

HANGING_URL = "https://images.example.com/hangs.jpg"
CALLS = 130
"""More than aiohttp's default connection limit (100), as many as a worker with 130 in flight makes."""


@pytest.fixture
async def hanging_emulator() -> AsyncIterator[Emulator]:
    """An emulator that never answers ``HANGING_URL``."""
    config = EmulatorConfig(key=TEST_KEY, fixtures=parse_fixtures({HANGING_URL: {"hang": True}}))
    async with Emulator(config, host="127.0.0.1", port=0) as running:
        yield running


async def test_every_concurrent_call_reaches_the_service_beyond_aiohttps_default_100(
    hanging_emulator: Emulator,
) -> None:
    """130 concurrent calls are all in progress at the emulator at once (none queued in the client)."""
    analyzer = AzureAnalyzer(
        hanging_emulator.endpoint, AzureKeyCredential(TEST_KEY), connect_timeout_s=5.0, read_timeout_s=60.0
    )
    calls = [asyncio.create_task(analyzer.analyze(HANGING_URL)) for _ in range(CALLS)]
    try:
        await wait_until(lambda: hanging_emulator.stats.hung_total >= CALLS, timeout_s=20.0, interval_s=0.05)
        assert CALLS == hanging_emulator.stats.hung_total
    finally:
        for call in calls:
            call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*calls, return_exceptions=True)
        await analyzer.aclose()
