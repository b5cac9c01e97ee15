"""Azure Blob Storage images read with an Entra ID identity, and the dispatch in front of the web fetcher.

``BlobOrWebFetcher.fetch(url) -> FetchedImage`` reads a URL whose host is one of the configured storage
account hosts with ``BlobReader`` (``azure.storage.blob.aio`` with an ``AsyncTokenCredential``, in
production ``azure.identity.aio.DefaultAzureCredential``: managed identity, workload identity or a service
principal), so no SAS token exists; every other URL goes to ``GuardedFetcher`` unchanged, so the identity's
token never reaches a host nobody named. A storage token's audience is every storage account, which is why
the hosts are exact names, never patterns.

An identity read drops the URL's query (a SAS, if one came anyway; only ``snapshot`` is kept), asks for the
blob's properties first (size over ``max_bytes`` or a content type that is not an image: refused before a
byte of the body is read), then downloads exactly that version (``If-Match`` its ETag) in chunks, counting
the bytes as they arrive, all under one deadline; the body must carry an image's magic bytes
(``worker.content.formats``, as ``GuardedFetcher`` checks). Every refusal is a ``FetchRefused`` with the
same ``FetchRefusal`` reasons as the web fetch (``NOT_FOUND`` and ``FORBIDDEN`` for what only storage
says); no message carries a query string or a token.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob.aio import BlobClient

from worker.content.fetch import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
    FetchedImage,
    FetchRefusal,
    FetchRefused,
    Resolve,
    collect_image,
)
from worker.content.formats import ACCEPTED_CONTENT_TYPES
from worker.content.known import ImageFetcher
from worker.errors import ConfigurationError
from worker.redact import redact_url

if TYPE_CHECKING:
    from pathlib import Path

    from azure.core.credentials_async import AsyncTokenCredential

_CHUNK_BYTES: Final = 4 * 1024 * 1024
"""The first GET and each further one: small enough that the streamed size check bites early."""
_KEPT_QUERY: Final = frozenset({"snapshot"})
_FORBIDDEN_STATUS: Final = frozenset({401, 403})


def account_hosts(names: Iterable[str]) -> frozenset[str]:
    """The allowlist in its compared form: lower case, no trailing dot; ``ValueError`` for an entry that is
    not a bare host name (a scheme, a path, a port, a wildcard)."""
    hosts: set[str] = set()
    for name in names:
        host = name.strip().lower().rstrip(".")
        if not host or any(character in host for character in "/:*@?# "):
            raise ValueError(
                f"{name!r} is not a storage account host name (e.g. account.blob.core.windows.net)"
            )
        hosts.add(host)
    return frozenset(hosts)


def is_account_url(url: str, hosts: frozenset[str]) -> bool:
    """Whether ``url`` is read with the identity: https, no userinfo, and its host one of ``hosts``
    (compared as ``account_hosts`` writes them; the port does not matter)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    if parts.scheme.lower() != "https" or parts.username is not None or parts.password is not None:
        return False
    return (parts.hostname or "").rstrip(".") in hosts


def without_sas(url: str) -> str:
    """``url`` with its query reduced to ``snapshot``: a SAS (or anything else) is never sent, so the
    identity is the only authority of the read. The fragment goes too."""
    parts = urlsplit(url)
    kept = [(name, value) for name, value in parse_qsl(parts.query) if name in _KEPT_QUERY]
    return parts._replace(query=urlencode(kept), fragment="").geturl()


def refusal_for(error: AzureError) -> FetchRefusal:
    """The fetch refusal an Azure SDK error is: missing blob or container ``NOT_FOUND``; a token that was
    refused or could not be had (no identity, no role) ``FORBIDDEN``; another status ``HTTP_STATUS``;
    no answer at all ``CONNECTION_FAILED``."""
    if isinstance(error, ResourceNotFoundError):
        return FetchRefusal.NOT_FOUND
    if isinstance(error, ClientAuthenticationError):
        return FetchRefusal.FORBIDDEN
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        if error.status_code in _FORBIDDEN_STATUS:
            return FetchRefusal.FORBIDDEN
        return FetchRefusal.NOT_FOUND if error.status_code == 404 else FetchRefusal.HTTP_STATUS
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return FetchRefusal.CONNECTION_FAILED
    return FetchRefusal.CONNECTION_FAILED


def _describe(error: AzureError) -> str:
    """What storage said, without its message (which may quote the request)."""
    status = error.status_code if isinstance(error, HttpResponseError) else None
    code = getattr(error, "error_code", None)
    code = getattr(code, "value", code)  # a StorageErrorCode member, or the service's own text
    said = " ".join(part for part in (f"HTTP {status}" if status else "", str(code or "")) if part)
    return said or type(error).__name__


class BlobReader:
    """Reads one blob with ``credential``; one aiohttp session for every read, opened on first use.

    ``ca_file`` is the PEM bundle that verifies storage (``None``: the system's); sizes are bytes, times
    seconds. Redirects are never followed, so the bearer token goes to the named host only.
    """

    def __init__(
        self,
        credential: AsyncTokenCredential,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ca_file: Path | None = None,
        resolve: Resolve | None = None,
    ) -> None:
        self._credential = credential
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._verify: bool | str = str(ca_file) if ca_file is not None else True
        self._resolver = AiohttpResolver(resolve) if resolve is not None else None
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> FetchedImage:
        """The blob at ``url`` read with the identity (its query dropped); raises ``FetchRefused``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._read(url)
        except TimeoutError:
            raise FetchRefused(
                FetchRefusal.TIMEOUT, f"{redact_url(url)} took longer than {self._timeout_s:g} s"
            ) from None
        except AzureError as error:
            raise FetchRefused(
                refusal_for(error), f"storage refused {redact_url(url)}: {_describe(error)}"
            ) from None
        except ValueError:
            raise FetchRefused(
                FetchRefusal.BAD_URL, f"{redact_url(url)} names no container and blob"
            ) from None

    async def _read(self, url: str) -> FetchedImage:
        transport = AioHttpTransport(
            session=self._open_session(), session_owner=False, connection_verify=self._verify
        )
        async with BlobClient.from_blob_url(
            without_sas(url),
            credential=self._credential,
            transport=transport,
            permit_redirects=False,
            retry_total=0,
            max_single_get_size=_CHUNK_BYTES,
            max_chunk_get_size=_CHUNK_BYTES,
        ) as client:
            properties = await client.get_blob_properties()
            content_type = (properties.content_settings.content_type or "").split(";")[0].strip().lower()
            if content_type not in ACCEPTED_CONTENT_TYPES:
                raise FetchRefused(
                    FetchRefusal.WRONG_CONTENT_TYPE,
                    f"{redact_url(url)} is {content_type[:64]!r}, not an image",
                )
            if properties.size > self._max_bytes:
                raise FetchRefused(FetchRefusal.TOO_LARGE, f"{redact_url(url)} is {properties.size} bytes")
            download = await client.download_blob(
                etag=properties.etag, match_condition=MatchConditions.IfNotModified, max_concurrency=1
            )
            return await collect_image(
                download.chunks(), url=url, max_bytes=self._max_bytes, content_type=content_type
            )

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._resolver, limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections (the credential is its owner's to close)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpResolver(AbstractResolver):
    """aiohttp's resolver interface over a ``Resolve``."""

    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        """Every address ``resolve`` gives for ``host`` of ``family`` (``AF_UNSPEC``: any)."""
        results = [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in await self._resolve(host, port)
        ]
        return [result for result in results if family in (socket.AF_UNSPEC, result["family"])]

    async def close(self) -> None:
        """Nothing to release."""


class ClosableFetcher(ImageFetcher, Protocol):
    """An ``ImageFetcher`` that holds connections until ``aclose``."""

    async def aclose(self) -> None: ...


class BlobOrWebFetcher:
    """``ImageFetcher``: URLs on ``hosts`` (``account_hosts``) through ``blob``, the rest through ``web``."""

    def __init__(self, blob: ClosableFetcher, web: ClosableFetcher, hosts: frozenset[str]) -> None:
        self._blob = blob
        self._web = web
        self._hosts = hosts

    async def fetch(self, url: str) -> FetchedImage:
        """The image at ``url`` from whichever fetcher its host belongs to; raises ``FetchRefused``."""
        fetcher = self._blob if is_account_url(url, self._hosts) else self._web
        return await fetcher.fetch(url)

    async def aclose(self) -> None:
        """Close both fetchers."""
        try:
            await self._blob.aclose()
        finally:
            await self._web.aclose()


def default_blob_credential() -> AsyncTokenCredential:
    """``azure.identity.aio.DefaultAzureCredential()``; ``ConfigurationError`` without the ``entra`` extra."""
    try:
        from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - the optional entra extra
    except ImportError as exc:
        raise ConfigurationError(
            "MODERATION_BLOB_AUTH=entra needs the azure-identity package:"
            " pip install 'moderation-worker[entra]'"
        ) from exc
    # Annotated so the check holds with and without azure-identity's own types installed.
    credential: AsyncTokenCredential = DefaultAzureCredential()
    return credential
