"""The analyzer behind an egress proxy: the proxy the standard variables name when the client is built is the
one every call goes through, ``no_proxy`` bypasses it, and variables set later are never read.

The proxy is a real HTTP forward proxy on 127.0.0.1 (absolute-form requests, as aiohttp sends them for an
``http://`` endpoint), in front of the emulator; the SDK talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AzureKeyCredential

from tests.fixtures.emulator import TEST_KEY
from worker.analysis.azure import AzureAnalyzer
from worker.dev.emulator.server import Emulator
from worker.domain import Analysis

IMAGE_URL = "https://images.example.com/cat.jpg?sv=2024&sig=SECRET"


@dataclass
class ForwardProxy:
    """One request per connection: read it, replay it to the origin in origin-form, relay the answer."""

    targets: list[str] = field(default_factory=list)
    proxy_authorizations: list[str | None] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = dict(line.split(": ", 1) for line in header_lines if line)
            body = await reader.readexactly(int(headers.get("Content-Length", "0")))
            self.targets.append(target)
            self.proxy_authorizations.append(headers.pop("Proxy-Authorization", None))
            origin = urlsplit(target)
            headers["Connection"] = "close"
            upstream_reader, upstream_writer = await asyncio.open_connection(origin.hostname, origin.port)
            path = origin.path + (f"?{origin.query}" if origin.query else "")
            lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
            upstream_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            writer.write(await upstream_reader.read())  # the origin closes after one answer
            upstream_writer.close()
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield proxy
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=1.0)


async def _analyze(analyzer: AzureAnalyzer, calls: int = 1) -> list[Analysis]:
    """``calls`` analyses of ``IMAGE_URL``, then the analyzer closed."""
    try:
        return [await analyzer.analyze(IMAGE_URL) for _ in range(calls)]
    finally:
        await analyzer.aclose()


def _analyzer(emulator: Emulator, environ: dict[str, str]) -> AzureAnalyzer:
    return AzureAnalyzer(emulator.endpoint, AzureKeyCredential(TEST_KEY), environ=environ)


def _assert_direct(emulator: Emulator, proxy: ForwardProxy) -> None:
    assert [] == proxy.targets
    assert 1 == emulator.stats.calls_total


async def test_calls_go_through_the_proxy_the_environment_names(
    emulator: Emulator, forward_proxy: ForwardProxy
) -> None:
    analyzer = _analyzer(emulator, {"HTTP_PROXY": forward_proxy.url, "NO_PROXY": "localhost"})
    analyses = await _analyze(analyzer, calls=2)

    assert all(analysis.tags for analysis in analyses)
    assert 2 == len(forward_proxy.targets)
    assert all(target.startswith(f"{emulator.endpoint}/computervision/") for target in forward_proxy.targets)
    assert 2 == emulator.stats.calls_total


async def test_proxy_credentials_from_the_url_are_sent_to_the_proxy_only(
    emulator: Emulator, forward_proxy: ForwardProxy
) -> None:
    authenticated = forward_proxy.url.replace("http://", "http://egress:s3cret@")
    await _analyze(_analyzer(emulator, {"http_proxy": authenticated}))

    assert ["Basic ZWdyZXNzOnMzY3JldA=="] == forward_proxy.proxy_authorizations  # egress:s3cret


async def test_no_proxy_bypasses_it(emulator: Emulator, forward_proxy: ForwardProxy) -> None:
    environ = {"HTTP_PROXY": forward_proxy.url, "NO_PROXY": "example.com,127.0.0.1"}
    await _analyze(_analyzer(emulator, environ))

    _assert_direct(emulator, forward_proxy)


async def test_variables_set_after_the_client_is_built_are_not_read(
    emulator: Emulator, forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer = _analyzer(emulator, {})
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    await _analyze(analyzer)

    _assert_direct(emulator, forward_proxy)
