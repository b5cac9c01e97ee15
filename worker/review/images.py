"""The image of an item, served through the console: the original URL never reaches the browser.

Results carry the image URL redacted (its SAS token removed), so the console finds the original submission by
the result's ``source`` coordinates (``SubmissionLocator``: one record read with a group-less consumer,
assign + seek) and fetches the image itself through an ``ImageFetcher``. ``HttpImageFetcher`` is the
console's own: the worker's URL guard (https, no userinfo, a public host, the host allowlist), one GET without
redirects under a timeout, a size cap, and a content type that must be an image format whose magic bytes the
body starts with. ``ItemImages`` ties the two together and keeps the last few images in memory, so a reload or
a reveal does not fetch again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.contracts import Contracts, InvalidSubmission
from worker.records import SourceCoordinates
from worker.urlguard import url_refusal

_CHUNK_BYTES: Final = 64 * 1024
#: Formats Image Analysis 4.0 reads that browsers show, by their leading bytes.
_MAGIC: Final[Mapping[str, tuple[bytes, ...]]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/bmp": (b"BM",),
    "image/webp": (b"RIFF",),
}


class RefusalReason(StrEnum):
    """Why an image is not served (the shared ``FetchRefused.reason`` vocabulary)."""

    UNSAFE_URL = "unsafe_url"
    HOST_NOT_ALLOWED = "host_not_allowed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    SUBMISSION_GONE = "submission_gone"


class FetchRefused(Exception):
    """The image cannot be served; ``reason`` is typed, the message never shows the URL's query."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """Image bytes and their content type as checked against the bytes."""

    data: bytes
    content_type: str


class ImageFetcher(Protocol):
    """Fetches one image URL; raises ``FetchRefused``."""

    async def fetch(self, url: str) -> FetchedImage: ...


def sniff(data: bytes, declared: str) -> str:
    """The content type of ``data`` when it is a supported image agreeing with ``declared``; else
    ``FetchRefused(NOT_AN_IMAGE)``."""
    declared = declared.split(";", 1)[0].strip().lower()
    for content_type, magics in _MAGIC.items():
        if any(data.startswith(magic) for magic in magics):
            if content_type == "image/webp" and data[8:12] != b"WEBP":
                continue
            if declared not in (content_type, "application/octet-stream"):
                raise FetchRefused(
                    RefusalReason.NOT_AN_IMAGE, f"declared {declared[:40]} but the bytes are {content_type}"
                )
            return content_type
    raise FetchRefused(
        RefusalReason.NOT_AN_IMAGE, f"the body is no supported image (declared {declared[:40]})"
    )


class HttpImageFetcher:
    """GETs an image with ``session`` under the URL guard, ``timeout_s`` and ``max_bytes``.

    ``allowed_hosts`` is the worker's host allowlist (empty: any public host). The session is the caller's
    (its connector decides DNS and TLS trust); redirects are never followed.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_bytes: int,
        timeout_s: float,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allowed_hosts = allowed_hosts

    async def fetch(self, url: str) -> FetchedImage:
        """The checked image at ``url``; ``FetchRefused`` naming why not."""
        refusal = url_refusal(url, self._allowed_hosts)
        if refusal is not None:
            raise FetchRefused(RefusalReason(refusal.reason), refusal.message)
        try:
            async with self._session.get(url, allow_redirects=False, timeout=self._timeout) as response:
                if response.status != 200:
                    raise FetchRefused(
                        RefusalReason.HTTP_STATUS, f"the image host answered HTTP {response.status}"
                    )
                if (response.content_length or 0) > self._max_bytes:
                    raise FetchRefused(
                        RefusalReason.TOO_LARGE, f"the image is larger than {self._max_bytes} bytes"
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise FetchRefused(
                            RefusalReason.TOO_LARGE, f"the image is larger than {self._max_bytes} bytes"
                        )
                declared = response.headers.get("Content-Type", "")
        except TimeoutError:
            raise FetchRefused(RefusalReason.TIMEOUT, "the image host did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise FetchRefused(
                RefusalReason.UNREACHABLE, f"cannot reach the image host ({type(exc).__name__})"
            ) from None
        data = bytes(body)
        return FetchedImage(data, sniff(data, declared))


class SubmissionLocator:
    """Reads the submission at given coordinates with a started group-less ``consumer``, one at a time."""

    def __init__(self, consumer: AIOKafkaConsumer, contracts: Contracts, *, timeout_s: float) -> None:
        self._consumer = consumer
        self._contracts = contracts
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()

    async def image_url(self, source: SourceCoordinates) -> str:
        """The original (unredacted) image URL of the submission at ``source``; ``FetchRefused`` when the
        record is gone (retention, compaction) or is no acceptable submission."""
        tp = TopicPartition(source.topic, source.partition)
        async with self._lock:
            self._consumer.assign([tp])
            self._consumer.seek(tp, source.offset)
            try:
                async with asyncio.timeout(self._timeout_s):
                    record = await self._consumer.getone(tp)
            except TimeoutError:
                raise FetchRefused(
                    RefusalReason.SUBMISSION_GONE, "the submission could not be read in time"
                ) from None
        if record.offset != source.offset:
            raise FetchRefused(RefusalReason.SUBMISSION_GONE, "the submission is no longer on its topic")
        try:
            return self._contracts.decode_submission(record.value).image_url
        except InvalidSubmission as exc:
            raise FetchRefused(
                RefusalReason.SUBMISSION_GONE, f"the submission is not usable ({exc.reason})"
            ) from None


class UrlLocator(Protocol):
    """``SubmissionLocator``'s shape."""

    async def image_url(self, source: SourceCoordinates) -> str: ...


class ItemImages:
    """The image of a submission: located, fetched, and the last ``keep`` of them kept in memory."""

    def __init__(self, locator: UrlLocator, fetcher: ImageFetcher, *, keep: int = 32) -> None:
        self._locator = locator
        self._fetcher = fetcher
        self._keep = keep
        self._cache: OrderedDict[SourceCoordinates, FetchedImage] = OrderedDict()

    async def image(self, source: SourceCoordinates) -> FetchedImage:
        """The image of the submission at ``source``; ``FetchRefused`` when it cannot be served."""
        key = SourceCoordinates(source.topic, source.partition, source.offset)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        image = await self._fetcher.fetch(await self._locator.image_url(key))
        self._cache[key] = image
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)
        return image
