"""The vision emulator's image fetcher for model mode: one bounded GET of the submitted URL, as Azure does.

``HttpImageFetcher`` implements ``worker.dev.emulator.state.ImageFetcher``. ``static_hosts`` answers chosen
host names without DNS (like ``/etc/hosts`` lines), which lets the demo give its loopback file server a
reserved ``.test`` name with a certificate for that name; the worker's URL guard is not involved.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from worker.dev.emulator.contract import MAX_IMAGE_BYTES
from worker.dev.emulator.state import ImageNotAccessibleError
from worker.redact import redact_url

_CHUNK_BYTES = 64 * 1024


class StaticHostsResolver(AbstractResolver):
    """Resolves the names in ``hosts`` to their fixed IPv4 address; other names go to ``fallback``.

    With ``fallback`` None every other name fails to resolve (IP literals in a URL never reach a resolver).
    """

    def __init__(self, hosts: Mapping[str, str], fallback: AbstractResolver | None) -> None:
        self._hosts = {name.lower().rstrip("."): address for name, address in hosts.items()}
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """One result for a listed name; the fallback's answer otherwise; ``OSError`` if there is none."""
        address = self._hosts.get(host.lower().rstrip("."))
        if address is not None:
            return [
                ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)
            ]
        if self._fallback is None:
            raise OSError(f"{host} is not one of this fetcher's static hosts")
        return await self._fallback.resolve(host, port, family)

    async def close(self) -> None:
        """Close the fallback resolver."""
        if self._fallback is not None:
            await self._fallback.close()


class HttpImageFetcher:
    """GETs an image URL for the emulator; any failure to get a 200 body is ``ImageNotAccessibleError``.

    - One request, redirects not followed, ``connect_timeout_s`` to connect and ``timeout_s`` for the whole
      exchange; a timeout, a refused connection, a failed TLS handshake or a non-200 status all mean
      "not accessible", which is what Image Analysis answers for a URL it cannot read.
    - At most ``max_image_bytes + 1`` bytes are read: a larger image comes back cut just past the limit, so
      the emulator's own byte check answers ``InvalidImageBytes`` without this process buffering it whole.
    - ``ssl_context`` None verifies against the system's trust store; the demo passes a context that trusts
      exactly its throwaway certificate. ``static_hosts`` maps host names to IPv4 addresses (see
      ``StaticHostsResolver``); with ``static_hosts_only`` no other name resolves.
    - Messages name the URL only through ``redact_url`` (a SAS token never reaches a log).

    The aiohttp session is created on first use (it must be born in the running loop); ``aclose`` or
    ``async with`` releases it.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        static_hosts: Mapping[str, str] | None = None,
        static_hosts_only: bool = False,
    ) -> None:
        if timeout_s <= 0 or connect_timeout_s <= 0 or max_image_bytes < 1:
            raise ValueError("timeouts must be positive and max_image_bytes at least 1")
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_image_bytes = max_image_bytes
        self._ssl_context = ssl_context
        self._static_hosts = MappingProxyType(dict(static_hosts or {}))
        self._static_hosts_only = static_hosts_only
        self._session: aiohttp.ClientSession | None = None
        self._resolver: AbstractResolver | None = None

    async def fetch(self, url: str) -> bytes:
        """The body of a 200 answer to ``GET url``; raises ``ImageNotAccessibleError`` otherwise."""
        shown = redact_url(url)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._http().get(url, allow_redirects=False) as response:
                    if response.status != 200:
                        raise ImageNotAccessibleError(f"{shown} answered {response.status}")
                    return await self._read_bounded(response)
        except TimeoutError as exc:
            raise ImageNotAccessibleError(f"fetching {shown} took over {self._timeout_s} s") from exc
        except (aiohttp.ClientError, aiohttp.InvalidURL, OSError) as exc:
            raise ImageNotAccessibleError(f"cannot fetch {shown}: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Close the HTTP session (and its resolver) if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # a connector closes only a resolver it made itself
            await self._resolver.close()
            self._resolver = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._static_hosts:
                fallback = None if self._static_hosts_only else aiohttp.DefaultResolver()
                self._resolver = StaticHostsResolver(self._static_hosts, fallback)
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context if self._ssl_context is not None else True, resolver=self._resolver
            )
            timeout = aiohttp.ClientTimeout(sock_connect=self._connect_timeout_s)
            # trust_env False: a proxy variable must not send loopback or private fetches elsewhere.
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_image_bytes + 1
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body.extend(chunk[: limit - len(body)])
            if len(body) >= limit:  # past the limit is all the caller needs to know
                break
        return bytes(body)
