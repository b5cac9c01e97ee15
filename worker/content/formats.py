"""The image formats Image Analysis 4.0 reads, told by their magic bytes, and the content types accepted.

Pure. The service reads JPEG, PNG, GIF, BMP, WEBP, ICO, TIFF and MPO (a JPEG container); the fetcher
refuses anything else before it costs a call, as the service would refuse it with ``InvalidImageFormat``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ImageFormat(StrEnum):
    """A format Image Analysis accepts."""

    JPEG = "jpeg"
    PNG = "png"
    GIF = "gif"
    BMP = "bmp"
    WEBP = "webp"
    TIFF = "tiff"
    ICO = "ico"


_SIGNATURES: Final = (
    (b"\xff\xd8\xff", ImageFormat.JPEG),
    (b"\x89PNG\r\n\x1a\n", ImageFormat.PNG),
    (b"GIF87a", ImageFormat.GIF),
    (b"GIF89a", ImageFormat.GIF),
    (b"BM", ImageFormat.BMP),
    (b"II*\x00", ImageFormat.TIFF),
    (b"MM\x00*", ImageFormat.TIFF),
    (b"\x00\x00\x01\x00", ImageFormat.ICO),
)

ACCEPTED_CONTENT_TYPES: Final = frozenset(
    {
        "image/jpeg",
        "image/pjpeg",
        "image/png",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/webp",
        "image/tiff",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        # Object stores serve uploads without a declared type as this; the magic bytes decide then.
        "application/octet-stream",
    }
)
"""Declared types a fetched image may carry (lower case, without parameters)."""


def image_format(data: bytes) -> ImageFormat | None:
    """The format ``data`` starts like, or ``None`` if it is none Image Analysis reads."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    for signature, image_type in _SIGNATURES:
        if data.startswith(signature):
            return image_type
    return None
