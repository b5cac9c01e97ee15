"""The image of an item, served through the console: the original URL never reaches the browser.

Results carry the image URL redacted (its SAS token removed), so the console finds the original submission by
the result's ``source`` coordinates (``SubmissionLocator``: one record read with a group-less consumer,
assign + seek) and fetches the image itself through an ``ImageFetcher``. ``GuardedImageFetcher`` is the
console's: the worker's URL guard (https, no userinfo, a public host, the host allowlist), then the worker's
own fetch (``worker.content.fetch``: every address checked and pinned, no redirect followed, a deadline, a
size cap), and a content type that must be an image format the browser shows whose magic bytes the body starts
with. ``ItemImages`` ties the two together and keeps the last few images in memory, so a reload or a reveal
does not fetch again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.content import fetch
from worker.contracts import Contracts, InvalidSubmission
from worker.records import SourceCoordinates
from worker.urlguard import url_refusal

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


class WebFetcher(Protocol):
    """``worker.content.fetch.GuardedFetcher``'s shape (and ``BlobOrWebFetcher``'s): one image per URL,
    ``content.fetch.FetchRefused`` when not."""

    async def fetch(self, url: str) -> fetch.FetchedImage: ...

    async def aclose(self) -> None: ...


#: The content fetcher's refusals in the console's vocabulary (the metric label and the page's message).
_REASONS: Final[Mapping[fetch.FetchRefusal, RefusalReason]] = {
    fetch.FetchRefusal.NOT_HTTPS: RefusalReason.UNSAFE_URL,
    fetch.FetchRefusal.BAD_URL: RefusalReason.UNSAFE_URL,
    fetch.FetchRefusal.ADDRESS_NOT_ALLOWED: RefusalReason.UNSAFE_URL,
    fetch.FetchRefusal.UNRESOLVABLE: RefusalReason.UNREACHABLE,
    fetch.FetchRefusal.CONNECTION_FAILED: RefusalReason.UNREACHABLE,
    fetch.FetchRefusal.TOO_MANY_REDIRECTS: RefusalReason.HTTP_STATUS,
    fetch.FetchRefusal.HTTP_STATUS: RefusalReason.HTTP_STATUS,
    fetch.FetchRefusal.NOT_FOUND: RefusalReason.HTTP_STATUS,
    fetch.FetchRefusal.FORBIDDEN: RefusalReason.HTTP_STATUS,
    fetch.FetchRefusal.TIMEOUT: RefusalReason.TIMEOUT,
    fetch.FetchRefusal.TOO_LARGE: RefusalReason.TOO_LARGE,
    fetch.FetchRefusal.WRONG_CONTENT_TYPE: RefusalReason.NOT_AN_IMAGE,
    fetch.FetchRefusal.NOT_AN_IMAGE: RefusalReason.NOT_AN_IMAGE,
}


class GuardedImageFetcher:
    """The console's ``ImageFetcher``: the worker's URL guard (with ``allowed_hosts``, empty: any public
    host), then ``web`` - the worker's own SSRF-guarded fetch, which connects only to the addresses it
    checked, so a host that resolves differently the second time reaches nothing - and last a type the
    browser shows, agreeing with the bytes. ``aclose`` closes ``web``."""

    def __init__(self, web: WebFetcher, *, allowed_hosts: tuple[str, ...] = ()) -> None:
        self._web = web
        self._allowed_hosts = allowed_hosts

    async def fetch(self, url: str) -> FetchedImage:
        """The checked image at ``url``; ``FetchRefused`` naming why not."""
        refusal = url_refusal(url, self._allowed_hosts)
        if refusal is not None:
            raise FetchRefused(RefusalReason(refusal.reason), refusal.message)
        try:
            image = await self._web.fetch(url)
        except fetch.FetchRefused as exc:
            raise FetchRefused(_REASONS[exc.reason], exc.message) from None
        return FetchedImage(image.data, sniff(image.data, image.content_type))

    async def aclose(self) -> None:
        """Close the connections of the fetcher underneath."""
        await self._web.aclose()


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
