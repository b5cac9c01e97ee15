"""The analyzer's overall deadline through the real SDK: a server that keeps sending a byte at a time never
trips the SDK's read timeout, so only the worker's deadline (connect + read timeouts) ends the call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from azure.core.credentials import AzureKeyCredential

from worker.analysis.azure import AzureAnalyzer
from worker.errors import TransientAnalyzerError

BYTE_EVERY_S = 0.05


async def _dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer any request with a 200 whose 10,000-byte body arrives one byte every ``BYTE_EVERY_S``."""
    with contextlib.suppress(ConnectionError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n")
        for _ in range(10_000):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(BYTE_EVERY_S)
    writer.close()


@pytest.fixture
async def dribbling_endpoint() -> AsyncIterator[str]:
    server = await asyncio.start_server(_dribble, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


async def test_a_response_that_never_ends_is_cut_at_the_deadline(dribbling_endpoint: str) -> None:
    analyzer = AzureAnalyzer(
        dribbling_endpoint, AzureKeyCredential("key"), connect_timeout_s=0.2, read_timeout_s=0.3
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TransientAnalyzerError) as raised:
            await analyzer.analyze("https://images.example.com/a.jpg")
    finally:
        await analyzer.aclose()
    elapsed = loop.time() - started
    assert "timeout" == raised.value.outcome
    assert 0.5 <= elapsed < 2.0  # the deadline is connect + read = 0.5 s; the body would take 500 s
    task = asyncio.current_task()
    assert task is not None
    assert 0 == task.cancelling()
