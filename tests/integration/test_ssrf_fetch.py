"""The SSRF guard of the worker-side fetch against a real https server on the loopback.

Every refusal is shown with its typed reason, and where the server could have been reached, that it was not
(its request counter stays at zero). Tests that must succeed allow the server's one address by name in the
``AddressPolicy``; the default policy stays public-only.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from worker.content.addresses import AddressPolicy, IPAddress
from worker.content.fetch import FetchedImage, FetchRefusal, FetchRefused, GuardedFetcher
from worker.dev.tlsfiles import Certificate, make_self_signed

pytestmark = pytest.mark.integration

HOST = "images.ssrf-test.test"
LOOPBACK = ipaddress.ip_address("127.0.0.1")
SERVER_ONLY = AddressPolicy(exceptions=frozenset({LOOPBACK}))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ImageServer:
    """An https server on 127.0.0.1 with one route per case; ``hits`` counts requests by path."""

    port: int
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str, host: str = HOST) -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
async def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A certificate for ``HOST`` made by openssl."""
    return await make_self_signed(HOST, tmp_path_factory.mktemp("ssrf-tls"))


async def _streamed_big(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(8):
        await response.write(b"\x89PNG\r\n\x1a\n" + bytes(1024))
    await response.write_eof()
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


@pytest.fixture(scope="module")
async def server(certificate: Certificate) -> AsyncIterator[ImageServer]:
    """The local https server the cases fetch from."""
    never = asyncio.Event()
    state = ImageServer(port=0)

    async def hang(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=503)

    def fixed(response: Callable[[], web.Response]) -> Handler:
        async def answer(_: web.Request) -> web.Response:
            return response()

        return answer

    routes: dict[str, Handler] = {
        "/image.png": fixed(lambda: web.Response(body=PNG, content_type="image/png")),
        "/octet": fixed(lambda: web.Response(body=PNG, content_type="application/octet-stream")),
        "/redirect-private": fixed(lambda: _redirect("https://10.0.0.1/image.png")),
        "/redirect-metadata": fixed(lambda: _redirect("https://169.254.169.254/latest/meta-data/")),
        "/redirect-ok": fixed(lambda: _redirect("/image.png")),
        "/loop": fixed(lambda: _redirect("/loop")),
        "/declared-big": fixed(
            lambda: web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(2048), content_type="image/png")
        ),
        "/streamed-big": _streamed_big,
        "/html": fixed(lambda: web.Response(text="<html></html>", content_type="text/html")),
        "/fake-png": fixed(lambda: web.Response(body=b"<?php echo 1; ?>" * 4, content_type="image/png")),
        "/hang": hang,
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        if request.path == "/redirect-http":
            return _redirect(f"http://{HOST}:{state.port}/image.png")
        handler = routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.server_context())
    await site.start()
    state.port = int(runner.addresses[0][1])
    yield state
    never.set()
    await runner.cleanup()


class ScriptedResolver:
    """A DNS stand-in: answers each lookup of a name with the next of its scripted answers (the last one
    repeats), and records every lookup."""

    def __init__(self, answers: dict[str, Sequence[Sequence[str]]]) -> None:
        self._answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, _port: int) -> Sequence[IPAddress]:
        self.lookups.append(host)
        script = self._answers.get(host)
        if not script:
            raise OSError(-2, "Name or service not known")
        answer = script[min(self.lookups.count(host), len(script)) - 1]
        return [ipaddress.ip_address(text) for text in answer]


def _fetcher(certificate: Certificate, **options: object) -> GuardedFetcher:
    settings: dict[str, object] = {
        "policy": SERVER_ONLY,
        "resolve": ScriptedResolver({HOST: [["127.0.0.1"]]}),
        "ssl_context": certificate.client_context(),
        "timeout_s": 5.0,
    }
    settings.update(options)
    return GuardedFetcher(**settings)  # type: ignore[arg-type]


async def _refusal(fetcher: GuardedFetcher, url: str) -> FetchRefused:
    try:
        await fetcher.fetch(url)
    except FetchRefused as refused:
        return refused
    finally:
        await fetcher.aclose()
    raise AssertionError(f"{url} was fetched")


async def test_an_image_from_an_allowed_address_is_fetched(
    certificate: Certificate, server: ImageServer
) -> None:
    """The happy path: https, an allowed address, an image type and PNG bytes give the bytes back."""
    fetcher = _fetcher(certificate)
    try:
        fetched = await fetcher.fetch(server.url("/image.png"))
        octet = await fetcher.fetch(server.url("/octet"))
        redirected = await fetcher.fetch(server.url("/redirect-ok"))
    finally:
        await fetcher.aclose()
    assert FetchedImage(PNG, "image/png") == fetched
    assert FetchedImage(PNG, "application/octet-stream") == octet
    assert PNG == redirected.data


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "017700000001",  # octal
        "0177.0.0.1",  # octal part
        "0x7f.0.0.1",  # hex part
        "127.1",  # short form
        "127.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[64:ff9b::7f00:1]",  # NAT64
        "[2002:7f00:1::]",  # 6to4 around loopback
    ],
)
async def test_loopback_in_every_notation_is_refused_without_a_connection(
    certificate: Certificate, server: ImageServer, host: str
) -> None:
    """An IP literal is read as resolvers read it, so no notation of loopback reaches the server."""
    before = server.hits["/image.png"]
    refused = await _refusal(
        _fetcher(certificate, policy=AddressPolicy()), server.url("/image.png", host=host)
    )
    assert (FetchRefusal.ADDRESS_NOT_ALLOWED, before) == (refused.reason, server.hits["/image.png"])
    assert "loopback" in refused.message


@pytest.mark.parametrize(
    ("host", "address_class"),
    [
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "cgnat"),
        ("169.254.169.254", "cloud_metadata"),
        ("[fd00:ec2::254]", "cloud_metadata"),
        ("168.63.129.16", "cloud_metadata"),
        ("169.254.10.10", "link_local"),
        ("[fe80::1]", "link_local"),
        ("224.0.0.251", "multicast"),
        ("[ff02::1]", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[2002:a00:1::]", "private"),
        ("[fc00::1]", "private"),
    ],
)
async def test_non_public_literals_are_refused_with_their_class(
    certificate: Certificate, host: str, address_class: str
) -> None:
    """Private, CGNAT, metadata, link-local, multicast and unspecified addresses are never fetched."""
    refused = await _refusal(_fetcher(certificate, policy=AddressPolicy()), f"https://{host}/image.png")
    assert FetchRefusal.ADDRESS_NOT_ALLOWED == refused.reason
    assert f"a {address_class} address" in refused.message


async def test_a_name_that_resolves_to_loopback_is_refused(
    certificate: Certificate, server: ImageServer
) -> None:
    """``localhost`` through the event loop's own resolver: loopback, refused before any connection."""
    before = server.hits["/image.png"]
    refused = await _refusal(
        GuardedFetcher(ssl_context=certificate.client_context()), server.url("/image.png", host="localhost")
    )
    assert (FetchRefusal.ADDRESS_NOT_ALLOWED, before) == (refused.reason, server.hits["/image.png"])


async def test_a_name_with_one_private_address_among_public_ones_is_refused(certificate: Certificate) -> None:
    """ANY address not allowed refuses the host: a client may connect to whichever it likes."""
    resolver = ScriptedResolver({HOST: [["8.8.8.8", "10.0.0.7"]]})
    refused = await _refusal(_fetcher(certificate, resolve=resolver), f"https://{HOST}/image.png")
    assert FetchRefusal.ADDRESS_NOT_ALLOWED == refused.reason
    assert "10.0.0.7" in refused.message


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect-private", FetchRefusal.ADDRESS_NOT_ALLOWED),
        ("/redirect-metadata", FetchRefusal.ADDRESS_NOT_ALLOWED),
        ("/redirect-http", FetchRefusal.NOT_HTTPS),
        ("/loop", FetchRefusal.TOO_MANY_REDIRECTS),
    ],
)
async def test_every_redirect_is_checked_again(
    certificate: Certificate, server: ImageServer, path: str, reason: FetchRefusal
) -> None:
    """A redirect is a new fetch: its target must pass the same guard, and at most three are followed."""
    refused = await _refusal(_fetcher(certificate), server.url(path))
    assert reason == refused.reason


async def test_redirects_stop_after_the_limit(certificate: Certificate, server: ImageServer) -> None:
    """The loop is followed ``max_redirects`` times and then refused: four requests in all."""
    before = server.hits["/loop"]
    refused = await _refusal(_fetcher(certificate, max_redirects=3), server.url("/loop"))
    assert (FetchRefusal.TOO_MANY_REDIRECTS, 4) == (refused.reason, server.hits["/loop"] - before)


async def test_dns_rebinding_cannot_move_the_connection(
    certificate: Certificate, server: ImageServer
) -> None:
    """A resolver answering the allowed address first and others after: the name is looked up once per
    fetch and the connection goes to the address that was checked (nothing listens on 127.0.0.2)."""
    resolver = ScriptedResolver({HOST: [["127.0.0.1"], ["127.0.0.2"]]})
    fetcher = _fetcher(certificate, resolve=resolver)
    before = server.hits["/image.png"]
    try:
        fetched = await fetcher.fetch(server.url("/image.png"))
        lookups_after_first = list(resolver.lookups)
        with pytest.raises(FetchRefused) as second:
            await fetcher.fetch(server.url("/image.png"))
    finally:
        await fetcher.aclose()
    assert (PNG, [HOST], 1) == (fetched.data, lookups_after_first, server.hits["/image.png"] - before)
    assert FetchRefusal.ADDRESS_NOT_ALLOWED == second.value.reason
    assert 1 == server.hits["/image.png"] - before


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/declared-big", FetchRefusal.TOO_LARGE),
        ("/streamed-big", FetchRefusal.TOO_LARGE),
        ("/html", FetchRefusal.WRONG_CONTENT_TYPE),
        ("/fake-png", FetchRefusal.NOT_AN_IMAGE),
        ("/missing", FetchRefusal.HTTP_STATUS),
    ],
)
async def test_bodies_that_are_not_acceptable_images_are_refused(
    certificate: Certificate, server: ImageServer, path: str, reason: FetchRefusal
) -> None:
    """Over the size cap (declared or streamed), not an image type, no image signature, not a 200."""
    refused = await _refusal(_fetcher(certificate, max_bytes=1024), server.url(path))
    assert reason == refused.reason


async def test_a_server_that_never_answers_hits_the_deadline(
    certificate: Certificate, server: ImageServer
) -> None:
    """The whole fetch runs under one deadline."""
    refused = await _refusal(_fetcher(certificate, timeout_s=0.3), server.url("/hang"))
    assert FetchRefusal.TIMEOUT == refused.reason


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path, server: ImageServer) -> None:
    """TLS verifies the host name even though the connection goes to a pinned address."""
    stranger = await make_self_signed("other.ssrf-test.test", tmp_path / "other")
    refused = await _refusal(_fetcher(stranger), server.url("/image.png"))
    assert FetchRefusal.CONNECTION_FAILED == refused.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://images.ssrf-test.test/image.png", FetchRefusal.NOT_HTTPS),
        ("ftp://images.ssrf-test.test/image.png", FetchRefusal.NOT_HTTPS),
        ("https://user:secret@images.ssrf-test.test/image.png", FetchRefusal.BAD_URL),
        ("https://images.ssrf-test.test:99999/image.png", FetchRefusal.BAD_URL),
        ("https://unknown.ssrf-test.test/image.png", FetchRefusal.UNRESOLVABLE),
    ],
)
async def test_references_that_are_not_https_urls_to_a_known_host_are_refused(
    certificate: Certificate, url: str, reason: FetchRefusal
) -> None:
    """Scheme, userinfo, port and resolution are checked before anything is connected; no secret is echoed."""
    refused = await _refusal(_fetcher(certificate), url)
    assert reason == refused.reason
    assert "secret" not in str(refused)
