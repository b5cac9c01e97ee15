"""Specification of image sniffing: magic bytes name the format, headers alone give the pixel size."""

from __future__ import annotations

import struct

import pytest

from tests.fixtures.emulator import png_image
from worker.dev.emulator.image_format import ImageFormat, ImageInfo, probe, sniff_format


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + bytes(7)


def bmp(width: int, height: int, *, core: bool = False) -> bytes:
    if core:  # OS/2 BITMAPCOREHEADER, 16-bit sizes
        return b"BM" + bytes(12) + struct.pack("<IHH", 12, width, height) + bytes(4)
    return b"BM" + bytes(12) + struct.pack("<Iii", 40, width, -height) + bytes(28)  # top-down bitmap


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof2 = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, height, width, 1) + bytes(3)  # progressive frame
    return b"\xff\xd8" + app0 + b"\xff\xff" + sof2  # with a fill byte before the SOF marker


def riff(chunk: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_lossy(width: int, height: int) -> bytes:
    return riff(
        b"VP8 " + struct.pack("<I", 10) + bytes(3) + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    )


def webp_lossless(width: int, height: int) -> bytes:
    return riff(
        b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14)
    )


def webp_extended(width: int, height: int) -> bytes:
    sizes = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff(b"VP8X" + struct.pack("<I", 10) + bytes(4) + sizes)


def tiff(width: int, height: int, order: str) -> bytes:
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    width_entry = struct.pack(order + "HHIH", 256, 3, 1, width) + bytes(2)  # SHORT, left-justified
    height_entry = struct.pack(order + "HHII", 257, 4, 1, height)  # LONG
    return magic + struct.pack(order + "IH", 8, 2) + width_entry + height_entry + bytes(4)


ICO_32_BY_256 = b"\x00\x00\x01\x00" + struct.pack("<H", 1) + bytes([32, 0]) + bytes(14)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_image(864, 576), ImageInfo(ImageFormat.PNG, 864, 576)),
        (gif(300, 200), ImageInfo(ImageFormat.GIF, 300, 200)),
        (bmp(640, 480), ImageInfo(ImageFormat.BMP, 640, 480)),
        (bmp(70, 60, core=True), ImageInfo(ImageFormat.BMP, 70, 60)),
        (jpeg(1920, 1080), ImageInfo(ImageFormat.JPEG, 1920, 1080)),
        (webp_lossy(550, 368), ImageInfo(ImageFormat.WEBP, 550, 368)),
        (webp_lossless(16000, 51), ImageInfo(ImageFormat.WEBP, 16000, 51)),
        (webp_extended(4000, 3000), ImageInfo(ImageFormat.WEBP, 4000, 3000)),
        (ICO_32_BY_256, ImageInfo(ImageFormat.ICO, 32, 256)),
        (tiff(800, 600, "<"), ImageInfo(ImageFormat.TIFF, 800, 600)),
        (tiff(800, 70000, ">"), ImageInfo(ImageFormat.TIFF, 800, 70000)),
    ],
    ids=[
        "png",
        "gif",
        "bmp",
        "bmp-core",
        "jpeg",
        "webp-vp8",
        "webp-vp8l",
        "webp-vp8x",
        "ico",
        "tiff-le",
        "tiff-be",
    ],
)
def test_probe_reads_format_and_size_from_the_header(data: bytes, expected: ImageInfo) -> None:
    """Each accepted container yields its format and its width and height in pixels."""
    assert expected == probe(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"%PDF-1.7\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"RIFF\x00\x00\x00\x00WAVE",
    ],
    ids=["empty", "text", "pdf", "svg", "riff-wave"],
)
def test_unknown_magic_is_not_an_image(data: bytes) -> None:
    """Bytes without an accepted magic have no format and no probe result."""
    assert (sniff_format(data), probe(data)) == (None, None)


@pytest.mark.parametrize(
    "data",
    [png_image(100, 100)[:20], jpeg(100, 100)[:30], b"\xff\xd8\xff\xd9", gif(0, 10), tiff(10, 10, "<")[:12]],
    ids=["png-cut", "jpeg-cut", "jpeg-without-frame", "gif-zero-width", "tiff-cut"],
)
def test_known_magic_with_a_broken_header_is_not_an_image(data: bytes) -> None:
    """A recognised magic whose size cannot be read (truncated, missing frame, zero side) probes as None."""
    assert sniff_format(data) is not None
    assert probe(data) is None
