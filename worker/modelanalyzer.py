"""An ``Analyzer`` that runs the offline image model in the worker: fetch the image, compute tags, no cloud.

For air-gapped pre-screening and as the stand-in for Image Analysis 4.0 after it retires. It behaves like the
Azure analyzer at the seam: same ``Analysis`` shape, same ``worker.errors`` classes and image codes.

- not https, unless the host is in ``allow_http_hosts``: ``ImageAnalysisRejected`` ``InvalidImageUrl``;
- the image host answers 4xx or a redirect, or cannot be resolved or connected to: ``ImageAnalysisRejected``
  ``NotAccessible`` (what Azure answers as "The provided image url is not accessible.");
- the image host answers 408, 429 or 5xx, or drops the connection: ``TransientAnalyzerError``;
- the fetch exceeds its deadline: ``TransientAnalyzerError`` with outcome ``timeout``;
- an empty body or more than ``max_image_bytes``: ``ImageAnalysisRejected`` ``InvalidImageSize``;
- bytes the model cannot decode, or sides outside 50..16000 px: ``InvalidImageFormat`` / ``InvalidImageSize``.

Redirects are not followed: the URL was checked by the guard, the target of a redirect was not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from urllib.parse import urlsplit

import aiohttp

from worker.domain import Analysis, Tag
from worker.errors import ImageAnalysisRejected, TransientAnalyzerError
from worker.imagemodel import ImageModel
from worker.redact import redact_url

#: Azure's limit for an image file, kept so both analyzers accept the same images.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_RETRYABLE_STATUSES = frozenset({408, 429})


class ModelAnalyzer:
    """Fetches ``image_url`` with aiohttp and tags the bytes with ``ImageModel`` in a worker thread.

    ``model`` defaults to a freshly loaded ``ImageModel`` (about 0.3 s, blocking: build it before the event
    loop gets busy). At most ``max_concurrent_inferences`` model runs execute at once; fetches are bounded by
    the caller's in-flight limit. The fetch has ``connect_timeout_s`` to connect and ``read_timeout_s`` for
    the whole body. ``session`` lets tests and the composition root share an ``aiohttp.ClientSession``; one
    is created on first use otherwise and closed by ``aclose``.
    """

    def __init__(
        self,
        model: ImageModel | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_concurrent_inferences: int = 2,
        allow_http_hosts: Collection[str] = (),
    ) -> None:
        self._model = model if model is not None else ImageModel()
        self._session = session
        self._owns_session = session is None
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_image_bytes = max_image_bytes
        self._inferences = asyncio.Semaphore(max_concurrent_inferences)
        self._allow_http_hosts = frozenset(host.lower() for host in allow_http_hosts)

    @property
    def model_version(self) -> str:
        """The ``model_version`` every ``Analysis`` from this analyzer carries."""
        return self._model.version

    async def analyze(self, image_url: str) -> Analysis:
        """Fetch and tag one image; raise a ``worker.errors.AnalyzerError`` subclass on failure."""
        self._check_scheme(image_url)
        image = await self._fetch(image_url)
        async with self._inferences:
            output = await asyncio.to_thread(self._model.analyze, image)
        return Analysis(
            model_version=self._model.version,
            tags=tuple(Tag(name, confidence) for name, confidence in output.tags),
            width=output.width,
            height=output.height,
        )

    async def aclose(self) -> None:
        """Close the HTTP session if this analyzer created it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _check_scheme(self, image_url: str) -> None:
        parts = urlsplit(image_url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme == "https" and host:
            return
        if scheme == "http" and host in self._allow_http_hosts:
            return
        raise ImageAnalysisRejected(
            f"image URL must be https: {redact_url(image_url)}", code="InvalidImageUrl"
        )

    async def _fetch(self, image_url: str) -> bytes:
        shown = redact_url(image_url)
        session = self._http()
        try:
            async with asyncio.timeout(self._connect_timeout_s + self._read_timeout_s):
                async with session.get(image_url, allow_redirects=False) as response:
                    self._check_status(response.status, shown)
                    return await self._read_limited(response, shown)
        except TimeoutError as exc:
            raise TransientAnalyzerError(f"fetching {shown} timed out", outcome="timeout") from exc
        except aiohttp.ClientConnectorError as exc:  # DNS failure, refused: Azure calls this not accessible
            raise ImageAnalysisRejected(f"cannot connect to {shown}", code="NotAccessible") from exc
        except aiohttp.ClientError as exc:  # dropped connection, malformed response: worth another try
            raise TransientAnalyzerError(
                f"fetching {shown} failed: {type(exc).__name__}", outcome="connection"
            ) from exc

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession must be born inside the running event loop.
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                sock_connect=self._connect_timeout_s, sock_read=self._read_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        return self._session

    @staticmethod
    def _check_status(status: int, shown: str) -> None:
        if status == 200:
            return
        if status in _RETRYABLE_STATUSES or status >= 500:
            raise TransientAnalyzerError(f"image host answered {status} for {shown}", outcome="server")
        raise ImageAnalysisRejected(f"image host answered {status} for {shown}", code="NotAccessible")

    async def _read_limited(self, response: aiohttp.ClientResponse, shown: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self._max_image_bytes:
            raise self._too_large(shown)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body.extend(chunk)
            if len(body) > self._max_image_bytes:  # the header lied or was absent: stop reading now
                raise self._too_large(shown)
        if not body:
            raise ImageAnalysisRejected(f"image at {shown} is empty", code="InvalidImageSize")
        return bytes(body)

    def _too_large(self, shown: str) -> ImageAnalysisRejected:
        return ImageAnalysisRejected(
            f"image at {shown} is larger than {self._max_image_bytes} bytes", code="InvalidImageSize"
        )
