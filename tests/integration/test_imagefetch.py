"""The emulator's image fetcher against a real https server on the loopback with a throwaway certificate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from worker.dev.emulator.image_fetch import HttpImageFetcher
from worker.dev.emulator.state import ImageNotAccessibleError
from worker.dev.tlsfiles import Certificate, HttpsFileServer, make_self_signed

pytestmark = pytest.mark.integration

HOST = "images.fetch-test.test"
IMAGE = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
async def certificate(tmp_path: Path) -> Certificate:
    """A certificate for ``HOST`` made by openssl."""
    return await make_self_signed(HOST, tmp_path / "tls")


@pytest.fixture
async def files(tmp_path: Path, certificate: Certificate) -> AsyncIterator[HttpsFileServer]:
    """An https server holding ``image.bin``."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "image.bin").write_bytes(IMAGE)
    async with HttpsFileServer(tmp_path / "files", certificate) as server:
        yield server


def _fetcher(certificate: Certificate, **options: object) -> HttpImageFetcher:
    settings: dict[str, object] = {
        "ssl_context": certificate.client_context(),
        "static_hosts": {HOST: "127.0.0.1"},
        "static_hosts_only": True,
    } | options
    return HttpImageFetcher(**settings)  # type: ignore[arg-type]


async def _refusal(fetcher: HttpImageFetcher, url: str) -> str:
    with pytest.raises(ImageNotAccessibleError) as refused:
        await fetcher.fetch(url)
    return str(refused.value)


async def test_fetches_over_https_from_a_static_host_with_the_trusted_certificate(
    certificate: Certificate, files: HttpsFileServer
) -> None:
    """The URL names the certificate's host; the fetcher resolves it to the loopback and verifies TLS."""
    async with _fetcher(certificate) as fetcher:
        assert IMAGE == await fetcher.fetch(files.url_for("image.bin"))


async def test_a_certificate_it_does_not_trust_is_not_accessible(
    files: HttpsFileServer, tmp_path: Path
) -> None:
    """Another throwaway certificate for the same name does not vouch for this server."""
    stranger = await make_self_signed(HOST, tmp_path / "other-tls")
    async with _fetcher(stranger) as fetcher:
        message = await _refusal(fetcher, files.url_for("image.bin"))
    assert "ClientConnectorCertificateError" in message


async def test_missing_file_unknown_host_and_ip_literal_are_not_accessible(
    certificate: Certificate, files: HttpsFileServer
) -> None:
    """404; a name outside the static hosts (no DNS fallback); the IP itself (the certificate names only
    the host) - each is "not accessible", and the message never carries the query string."""
    port = files.port
    async with _fetcher(certificate) as fetcher:
        messages = [
            await _refusal(fetcher, files.url_for("absent.png") + "?sig=SECRET"),
            await _refusal(fetcher, f"https://elsewhere.test:{port}/image.bin"),
            await _refusal(fetcher, f"https://127.0.0.1:{port}/image.bin"),
        ]
    assert messages[0].endswith("absent.png?<redacted> answered 404")
    assert ["ClientConnectorDNSError", "ClientConnectorCertificateError"] == [
        m.split(": ")[-1] for m in messages[1:]
    ]
    assert not any("SECRET" in message for message in messages)


async def test_reads_at_most_one_byte_past_the_limit(
    certificate: Certificate, files: HttpsFileServer
) -> None:
    """A body over ``max_image_bytes`` comes back cut at limit + 1: the emulator's size check refuses it."""
    async with _fetcher(certificate, max_image_bytes=1000) as fetcher:
        body = await fetcher.fetch(files.url_for("image.bin"))
    assert IMAGE[:1001] == body


async def test_a_host_that_never_answers_is_not_accessible_after_the_deadline() -> None:
    """The whole exchange is bounded by ``timeout_s``; a server that holds the request gives up no slot."""
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=b"late")

    app = web.Application()
    app.router.add_get("/slow.png", hold)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with HttpImageFetcher(timeout_s=0.3) as fetcher:
            message = await _refusal(fetcher, f"http://127.0.0.1:{port}/slow.png")
    finally:
        release.set()
        await runner.cleanup()
    assert f"fetching http://127.0.0.1:{port}/slow.png took over 0.3 s" == message
