"""The worker-side image fetch behind an SSRF guard: ``GuardedFetcher.fetch(url) -> FetchedImage``.

Every hop (the URL and each redirect, at most ``max_redirects``) is https; its host is resolved once (a
numeric host in any notation is read as ``worker.content.addresses.parse_host`` reads it) and refused if ANY
of its addresses is not allowed by the ``AddressPolicy``; the connection then goes to exactly those checked
addresses: aiohttp asks ``_PinnedResolver``, which answers only what this hop checked, so there is no second
lookup a rebinding DNS server could answer differently. TLS still verifies the certificate against the host
name (SNI). The body is streamed up to ``max_bytes``, all hops together under one deadline, and must carry an
image content type and the magic bytes of a format Image Analysis reads. Every refusal is a ``FetchRefused``
whose ``reason`` is a ``FetchRefusal``; no message carries a URL's query string.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from worker.content.addresses import PUBLIC_ONLY, AddressPolicy, IPAddress, parse_host
from worker.content.formats import ACCEPTED_CONTENT_TYPES, image_format
from worker.redact import redact_url

DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
"""Image Analysis 4.0 accepts images up to 20 MB."""
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_REDIRECTS: Final = 3
_CHUNK_BYTES: Final = 65_536
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

Resolve = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""``resolve(host, port)``: every address of a DNS name (tests inject one; the default asks the loop)."""


class FetchRefusal(StrEnum):
    """Why an image was not fetched. ``worker.content.known`` maps the first three to the ``unsafe_url``
    dead letter (the reference itself is unsafe) and the rest to an image error (docs/known-content.md)."""

    NOT_HTTPS = "not_https"
    BAD_URL = "bad_url"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    UNRESOLVABLE = "unresolvable"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    HTTP_STATUS = "http_status"
    CONNECTION_FAILED = "connection_failed"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    WRONG_CONTENT_TYPE = "wrong_content_type"
    NOT_AN_IMAGE = "not_an_image"
    NOT_FOUND = "not_found"
    """Storage has no such blob or container (``worker.content.blob``)."""
    FORBIDDEN = "forbidden"
    """Storage refused the identity, or no token could be had for it (``worker.content.blob``)."""


class FetchRefused(Exception):
    """The image at a URL was not fetched; ``reason`` says why, the message says so with the URL redacted."""

    def __init__(self, reason: FetchRefusal, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """An image's bytes and the content type its server declared (lower case, without parameters)."""

    data: bytes
    content_type: str


async def collect_image(
    chunks: AsyncIterator[bytes], *, url: str, max_bytes: int, content_type: str
) -> FetchedImage:
    """The image a body's ``chunks`` make up: ``TOO_LARGE`` as soon as they pass ``max_bytes``, then
    ``NOT_AN_IMAGE`` unless the bytes start with a known image signature (web fetch and blob reads alike)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(FetchRefusal.TOO_LARGE, f"{redact_url(url)} is over {max_bytes} bytes")
        parts.append(chunk)
    data = b"".join(parts)
    if image_format(data) is None:
        raise FetchRefused(FetchRefusal.NOT_AN_IMAGE, f"{redact_url(url)} has no known image signature")
    return FetchedImage(data, content_type)


async def resolve_with_loop(host: str, port: int) -> Sequence[IPAddress]:
    """Every address ``getaddrinfo`` gives for ``host`` (the event loop's resolver, as aiohttp's default)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_host(str(sockaddr[0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


def static_resolver(hosts: Mapping[str, Sequence[str]]) -> Resolve:
    """A ``Resolve`` answering fixed addresses for the names in ``hosts`` (tests, the local demo); any
    other name does not resolve. Its answers are checked by the policy like any others."""
    table = {
        name.lower().rstrip("."): [ipaddress.ip_address(text) for text in texts]
        for name, texts in hosts.items()
    }

    async def resolve(host: str, _port: int) -> Sequence[IPAddress]:
        addresses = table.get(host.lower().rstrip("."))
        if addresses is None:
            raise OSError(-2, f"{host} is not a static host")
        return addresses

    return resolve


# The addresses the current hop checked, by host: set by ``fetch`` in its own task, read by the resolver
# aiohttp calls in that same task (the connector's DNS cache is off, so every connection asks).
_PINNED: contextvars.ContextVar[Mapping[str, Sequence[IPAddress]]] = contextvars.ContextVar("pinned")


class _PinnedResolver(AbstractResolver):
    """Answers only with the addresses the guard checked for this hop; any other host has none."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        """The checked addresses of ``host`` of ``family`` (``AF_UNSPEC``: any); none: OSError."""
        results = [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in _PINNED.get({}).get(host, ())
        ]
        results = [result for result in results if family in (socket.AF_UNSPEC, result["family"])]
        if not results:
            raise OSError(f"no checked address for {host}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


class GuardedFetcher:
    """Fetches images over https from allowed addresses only; one aiohttp session, opened on first use.

    ``policy`` says which addresses are allowed (public only by default); ``resolve`` looks up DNS names;
    ``ssl_context`` verifies servers (the system trust store by default). Sizes are bytes, times seconds.
    """

    def __init__(
        self,
        *,
        policy: AddressPolicy = PUBLIC_ONLY,
        resolve: Resolve = resolve_with_loop,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._max_redirects = max_redirects
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> FetchedImage:
        """The image at ``url``, following at most ``max_redirects`` redirects; raises ``FetchRefused``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise FetchRefused(
                FetchRefusal.TIMEOUT, f"{redact_url(url)} took longer than {self._timeout_s:g} s"
            ) from None

    async def _follow(self, url: str) -> FetchedImage:
        current = url
        for _hop in range(self._max_redirects + 1):
            host, port = self._checked_target(current)
            pinned = await self._checked_addresses(current, host, port)
            token = _PINNED.set({host: pinned})
            try:
                response_or_next = await self._get(current)
            finally:
                _PINNED.reset(token)
            if isinstance(response_or_next, FetchedImage):
                return response_or_next
            current = response_or_next
        raise FetchRefused(
            FetchRefusal.TOO_MANY_REDIRECTS,
            f"{redact_url(url)} redirected more than {self._max_redirects} times",
        )

    def _checked_target(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError:
            raise FetchRefused(FetchRefusal.BAD_URL, f"cannot parse {redact_url(url)}") from None
        if parts.scheme.lower() != "https":
            raise FetchRefused(FetchRefusal.NOT_HTTPS, f"{redact_url(url)} is not https")
        host = (parts.hostname or "").rstrip(".")
        if not host or parts.username is not None or parts.password is not None:
            raise FetchRefused(FetchRefusal.BAD_URL, f"{redact_url(url)} has no host or carries userinfo")
        return host, port

    async def _checked_addresses(self, url: str, host: str, port: int) -> Sequence[IPAddress]:
        numeric = parse_host(host)
        if numeric is not None:
            addresses: Sequence[IPAddress] = (numeric,)
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise FetchRefused(
                    FetchRefusal.UNRESOLVABLE, f"cannot resolve the host of {redact_url(url)}: {exc.strerror}"
                ) from None
            if not addresses:
                raise FetchRefused(FetchRefusal.UNRESOLVABLE, f"the host of {redact_url(url)} has no address")
        refused = self._policy.first_refusal(addresses)
        if refused is not None:
            address, address_class = refused
            raise FetchRefused(
                FetchRefusal.ADDRESS_NOT_ALLOWED,
                f"{redact_url(url)} resolves to {address}, a {address_class} address",
            )
        return addresses

    async def _get(self, url: str) -> FetchedImage | str:
        """The image, or the URL the server redirects to."""
        session = self._open_session()
        numeric = parse_host(urlsplit(url).hostname or "")
        # aiohttp connects to an IP literal without asking the resolver: hand it the canonical checked form.
        target = _with_host(url, numeric) if numeric is not None else url
        try:
            async with session.get(
                target, allow_redirects=False, headers={"Accept-Encoding": "identity", "Accept": "image/*"}
            ) as response:
                if response.status in _REDIRECTS and "Location" in response.headers:
                    return urljoin(url, response.headers["Location"])
                if response.status != 200:
                    raise FetchRefused(
                        FetchRefusal.HTTP_STATUS, f"{redact_url(url)} answered HTTP {response.status}"
                    )
                return await self._body(url, response)
        except aiohttp.ClientError as exc:
            raise FetchRefused(
                FetchRefusal.CONNECTION_FAILED, f"cannot fetch {redact_url(url)}: {type(exc).__name__}"
            ) from None

    async def _body(self, url: str, response: aiohttp.ClientResponse) -> FetchedImage:
        content_type = response.content_type.lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            raise FetchRefused(
                FetchRefusal.WRONG_CONTENT_TYPE, f"{redact_url(url)} is {content_type[:64]!r}, not an image"
            )
        declared = response.content_length
        if declared is not None and declared > self._max_bytes:
            raise FetchRefused(FetchRefusal.TOO_LARGE, f"{redact_url(url)} declares {declared} bytes")
        chunks = response.content.iter_chunked(_CHUNK_BYTES)
        return await collect_image(chunks, url=url, max_bytes=self._max_bytes, content_type=content_type)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PinnedResolver(), use_dns_cache=False, ssl=self._ssl, limit=0
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _with_host(url: str, address: IPAddress) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
