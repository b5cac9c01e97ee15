"""The demo's sample images and a loopback HTTP server for them; nothing is downloaded.

Real photos come from the data files scikit-image ships inside its wheel (the ``demo`` extra; CC0 or public
domain, see docs/model.md); the rest are drawn with Pillow so that, with the offline model's tags
(``worker.analysis.offline``), the demo policy reaches every decision. The demo policy assumed by the expected
decisions is ``DEMO_POLICY_THRESHOLDS``.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from aiohttp import web

from worker.domain import Decision
from worker.errors import ConfigurationError

if TYPE_CHECKING:
    from PIL import Image

#: The blocklist the expected decisions assume: tag -> (review_at, reject_at); images need some tag at or
#: above ``min_confidence`` 0.5 to be approved (``sfw`` is that tag for ordinary photos).
DEMO_POLICY_THRESHOLDS: dict[str, tuple[float, float | None]] = {"adult": (0.3, 0.8), "dark": (0.9, None)}

_SIDE_PX = 256
# Skin tones (0-3) and a shadow (4) for the abstract images; open_nsfw reacts to large smooth areas of them.
_PALETTE = ((225, 170, 140), (235, 185, 155), (200, 140, 115), (180, 120, 95), (150, 90, 80))
_SHADOW = 4


@dataclass(frozen=True, slots=True)
class Sample:
    """One demo image: its file name, what the demo policy should decide (None: not asserted), provenance."""

    filename: str
    expected: Decision | None
    source: str


@dataclass(frozen=True, slots=True)
class _Photo:
    filename: str
    expected: Decision | None
    credit: str


# Photos bundled in scikit-image's wheel (skimage/data); credits and licences as scikit-image documents them.
PHOTOS: tuple[_Photo, ...] = (
    _Photo("astronaut.png", Decision.APPROVED, "NASA, Eileen Collins; public domain"),
    _Photo("coffee.png", Decision.APPROVED, "Rachel Michetti; CC0"),
    _Photo("chelsea.png", Decision.APPROVED, "Stefan van der Walt; CC0"),
    _Photo("rocket.jpg", Decision.APPROVED, "SpaceX; public domain"),
    _Photo("camera.png", Decision.APPROVED, "Lav Varshney; CC0"),
    _Photo("coins.png", Decision.APPROVED, "Brooklyn Museum collection; no known copyright restrictions"),
    _Photo("hubble_deep_field.jpg", Decision.NEEDS_REVIEW, "NASA/ESA Hubble; public domain"),
)


def skimage_data_dir() -> Path:
    """Where scikit-image keeps its bundled images, found without importing scikit-image.

    Raises ``ConfigurationError`` when scikit-image (the ``demo`` extra) is not installed.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the demo's photos need the `demo` extra: pip install 'moderation-worker[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def write_samples(directory: Path) -> list[tuple[str, Decision | None]]:
    """Write every sample image into ``directory`` (created if needed); return (filename, expected decision).

    Deterministic: the same files, byte for byte, on every call with the same Pillow version.
    """
    return [(sample.filename, sample.expected) for sample in write_sample_set(directory)]


def write_sample_set(directory: Path) -> list[Sample]:
    """Like ``write_samples`` but also returns where each image comes from."""
    directory.mkdir(parents=True, exist_ok=True)
    data_dir = skimage_data_dir()
    samples: list[Sample] = []
    for photo in PHOTOS:
        (directory / photo.filename).write_bytes((data_dir / photo.filename).read_bytes())
        samples.append(Sample(photo.filename, photo.expected, f"photo: {photo.credit}"))
    for filename, (expected, draw) in GENERATED.items():
        (directory / filename).write_bytes(_png(draw()))
        samples.append(Sample(filename, expected, f"generated: {draw.__doc__}"))
    return samples


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


Ellipse = tuple[int, int, int, int, int]  # x0, y0, x1, y1, colour index into _PALETTE


def _abstract(background: int, ellipses: tuple[Ellipse, ...], blur_px: int) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFilter  # noqa: PLC0415 - Pillow comes with the model extra

    image = Image.new("RGB", (_SIDE_PX, _SIDE_PX), _PALETTE[background])
    pen = ImageDraw.Draw(image)
    for x0, y0, x1, y1, colour in ellipses:
        pen.ellipse((x0, y0, x1, y1), fill=_PALETTE[colour])
    return image.filter(ImageFilter.GaussianBlur(blur_px))


def skin_tone_abstract_strong() -> Image.Image:
    """skin-tone ellipses, blurred; open_nsfw scores them as adult (a false positive by design)"""
    ellipses = (
        (-12, 246, 142, 394, 0),
        (238, 20, 283, 193, 3),
        (248, -47, 384, 120, 2),
        (113, 44, 167, 141, _SHADOW),
        (244, 11, 279, 208, 3),
        (60, 215, 199, 354, 1),
    )
    return _abstract(1, ellipses, blur_px=10)


def skin_tone_abstract_wide() -> Image.Image:
    """skin-tone ellipses on a skin-tone field, blurred; open_nsfw scores them as adult"""
    ellipses = ((5, 192, 204, 300, 1), (144, 5, 252, 97, 3), (83, 59, 248, 171, 0), (131, 90, 165, 266, 3))
    return _abstract(0, ellipses, blur_px=7)


def skin_tone_abstract_soft() -> Image.Image:
    """one shadow ellipse on a skin-tone field, heavily blurred; scored between review and reject"""
    return _abstract(1, ((-14, 22, 98, 173, _SHADOW),), blur_px=16)


def night_sky() -> Image.Image:
    """a near-black sky with a few stars: too dark to judge"""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - Pillow comes with the model extra

    image = Image.new("RGB", (_SIDE_PX, _SIDE_PX), (8, 10, 24))
    pen = ImageDraw.Draw(image)
    for index in range(40):
        x, y = (index * 73) % _SIDE_PX, (index * 151) % _SIDE_PX
        pen.ellipse((x, y, x + 2, y + 2), fill=(230, 230, 210))
    return image


def colour_bars() -> Image.Image:
    """eight saturated vertical colour bars, like a test card"""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - Pillow comes with the model extra

    bars = (
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
    )
    image = Image.new("RGB", (_SIDE_PX, _SIDE_PX), (16, 16, 16))
    pen = ImageDraw.Draw(image)
    width = _SIDE_PX // len(bars)
    for index, colour in enumerate(bars):
        pen.rectangle((index * width, 0, (index + 1) * width - 1, _SIDE_PX - 1), fill=colour)
    return image


GENERATED: dict[str, tuple[Decision | None, Callable[[], Image.Image]]] = {
    "colour-bars.png": (Decision.APPROVED, colour_bars),
    "night-sky.png": (Decision.NEEDS_REVIEW, night_sky),
    "skin-tone-abstract-soft.png": (Decision.NEEDS_REVIEW, skin_tone_abstract_soft),
    "skin-tone-abstract-strong.png": (Decision.REJECTED, skin_tone_abstract_strong),
    "skin-tone-abstract-wide.png": (Decision.REJECTED, skin_tone_abstract_wide),
}


class SampleServer:
    """Serves the files of one directory over HTTP on 127.0.0.1 (an ephemeral port) while entered.

    ``url_for(name)`` is the URL producers put in submissions; unknown names answer 404, as a real store does.
    """

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._directory = directory
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if not self._base_url:
            raise RuntimeError("SampleServer is not started")
        return self._base_url

    def url_for(self, name: str) -> str:
        """The URL of the file ``name`` in the served directory."""
        return f"{self.base_url}/{quote(name)}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_static("/", self._directory, show_index=False, follow_symlinks=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError:  # the port is taken: release the runner before saying so
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._base_url = ""
