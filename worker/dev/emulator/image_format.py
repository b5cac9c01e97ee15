"""Recognise an image container from its first bytes and read its pixel size from the header alone.

Pure functions over ``bytes``: no decoding of pixel data, no third-party imaging library. Covers the formats
Image Analysis 4.0 accepts (JPEG and its MPO variant, PNG, GIF, BMP, WEBP, ICO, TIFF).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class ImageFormat(StrEnum):
    """A container format the service accepts; the value is a lowercase short name."""

    JPEG = "jpeg"
    PNG = "png"
    GIF = "gif"
    BMP = "bmp"
    WEBP = "webp"
    ICO = "ico"
    TIFF = "tiff"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says: the format and the size in pixels (both >= 1)."""

    format: ImageFormat
    width: int
    height: int


def sniff_format(data: bytes) -> ImageFormat | None:
    """Return the format named by the magic bytes at the start of ``data``, or ``None`` if none matches."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # the only magic with a gap (the RIFF size) in it
        return ImageFormat.WEBP
    return next((fmt for magic, fmt in _MAGIC_PREFIXES if data.startswith(magic)), None)


_MAGIC_PREFIXES: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\xff\xd8\xff", ImageFormat.JPEG),  # MPO files are JPEGs with extra frames and start the same
    (b"\x89PNG\r\n\x1a\n", ImageFormat.PNG),
    (b"GIF87a", ImageFormat.GIF),
    (b"GIF89a", ImageFormat.GIF),
    (b"BM", ImageFormat.BMP),
    (b"\x00\x00\x01\x00", ImageFormat.ICO),
    (b"II*\x00", ImageFormat.TIFF),
    (b"MM\x00*", ImageFormat.TIFF),
)


def probe(data: bytes) -> ImageInfo | None:
    """Return the format and size of the image in ``data``.

    ``None`` means the bytes are not an image the service could decode: unknown magic, or a known magic with a
    truncated or malformed header, or a zero dimension. Both cases get the same answer from the service
    (``InvalidImageFormat``), so callers need not tell them apart.
    """
    image_format = sniff_format(data)
    if image_format is None:
        return None
    try:
        size = _SIZE_READERS[image_format](data)
    except (struct.error, IndexError):
        return None  # the header ends before the size fields: a truncated file
    if size is None or size[0] < 1 or size[1] < 1:
        return None
    return ImageInfo(image_format, size[0], size[1])


_Size = tuple[int, int] | None


def _png_size(data: bytes) -> _Size:
    # The IHDR chunk must come first: length (4), type (4), then width and height as big-endian u32.
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return int(width), int(height)


def _gif_size(data: bytes) -> _Size:
    width, height = struct.unpack_from("<HH", data, 6)
    return int(width), int(height)


def _bmp_size(data: bytes) -> _Size:
    (dib_header_bytes,) = struct.unpack_from("<I", data, 14)
    if dib_header_bytes == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit fields
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return abs(int(width)), abs(int(height))  # a negative height marks a top-down bitmap


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers RST0-7 (SOI/EOI are handled by the loop bounds).
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(data: bytes) -> _Size:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (segment_bytes,) = struct.unpack_from(">H", data, position + 2)
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return int(width), int(height)
        position += 2 + int(segment_bytes)
    return None


def _webp_size(data: bytes) -> _Size:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame: start code, 14-bit sizes
        width, height = struct.unpack_from("<HH", data, 26)
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: signature, width-1 and height-1 in 14 bits each
        (bits,) = struct.unpack_from("<I", data, 21)
        return (int(bits) & 0x3FFF) + 1, ((int(bits) >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:  # extended: canvas width-1 and height-1 as little-endian u24
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _ico_size(data: bytes) -> _Size:
    (count,) = struct.unpack_from("<H", data, 4)
    if count < 1:
        return None
    # First directory entry; a stored 0 means 256 pixels.
    return data[6] or 256, data[7] or 256


_TIFF_IMAGE_WIDTH = 256
_TIFF_IMAGE_LENGTH = 257
_TIFF_SHORT = 3
_TIFF_LONG = 4


def _tiff_size(data: bytes) -> _Size:
    order = "<" if data.startswith(b"II") else ">"
    (ifd_offset,) = struct.unpack_from(order + "I", data, 4)
    (entry_count,) = struct.unpack_from(order + "H", data, ifd_offset)
    fields: dict[int, int] = {}
    for index in range(int(entry_count)):
        entry = int(ifd_offset) + 2 + 12 * index
        tag, field_type = struct.unpack_from(order + "HH", data, entry)
        if tag in (_TIFF_IMAGE_WIDTH, _TIFF_IMAGE_LENGTH):
            value_format = order + ("H" if field_type == _TIFF_SHORT else "I")
            if field_type not in (_TIFF_SHORT, _TIFF_LONG):
                return None
            (fields[int(tag)],) = struct.unpack_from(value_format, data, entry + 8)
    if _TIFF_IMAGE_WIDTH not in fields or _TIFF_IMAGE_LENGTH not in fields:
        return None
    return fields[_TIFF_IMAGE_WIDTH], fields[_TIFF_IMAGE_LENGTH]


_SIZE_READERS: dict[ImageFormat, Callable[[bytes], _Size]] = {
    ImageFormat.JPEG: _jpeg_size,
    ImageFormat.PNG: _png_size,
    ImageFormat.GIF: _gif_size,
    ImageFormat.BMP: _bmp_size,
    ImageFormat.WEBP: _webp_size,
    ImageFormat.ICO: _ico_size,
    ImageFormat.TIFF: _tiff_size,
}
