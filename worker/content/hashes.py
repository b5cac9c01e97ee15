"""Content hashes of an image's bytes: SHA-256 (the exact bytes) and PDQ (what the picture looks like).

PDQ is Meta's perceptual hash (the one its hash-matcher and ThreatExchange share): 256 bits, close in
Hamming distance for the same picture after resizing, re-encoding or a small crop, with a quality score
(0-100; below 50 the picture has too little structure for the hash to say much). It is computed with the
``pdqhash`` binding of Meta's reference C++ code, on the picture decoded by Pillow and reduced to at most
``PDQ_MAX_SIDE`` pixels on its long side first (PDQ itself works on a 64 x 64 reduction, so this changes a
hash by a few bits at most and saves most of the decoding). CPU-bound: call ``content_hashes`` off the event
loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Final

import numpy as np
import pdqhash
from PIL import Image

from worker.records import ContentHashes

PDQ_BITS: Final = 256
PDQ_MAX_SIDE: Final = 512
MAX_PIXELS: Final = 16_000 * 16_000
"""Largest picture hashed: Image Analysis refuses bigger ones anyway."""


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def pdq_hash(data: bytes) -> tuple[str, int] | None:
    """``(pdq hex, quality)`` of the picture in ``data``, or ``None`` when it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            # A large picture is expected here (up to Image Analysis' limit), not a decompression bomb.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    return None
                image.draft("RGB", (PDQ_MAX_SIDE, PDQ_MAX_SIDE))  # JPEG: decode at a reduced scale
                rgb = image.convert("RGB")
        rgb.thumbnail((PDQ_MAX_SIDE, PDQ_MAX_SIDE), Image.Resampling.BILINEAR)
        bits, quality = pdqhash.compute(np.asarray(rgb))
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ):  # what Pillow raises for bad bytes
        return None
    return pdq_hex(np.asarray(bits, dtype=np.uint8)), int(quality)


def pdq_hex(bits: np.ndarray) -> str:
    """256 hash bits (0/1, first bit most significant) as the 64 hex digits PDQ tools exchange."""
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def content_hashes(data: bytes) -> ContentHashes:
    """Both hashes of ``data``; the PDQ fields are ``None`` for bytes that are no decodable picture."""
    pdq = pdq_hash(data)
    if pdq is None:
        return ContentHashes(sha256_hex(data))
    return ContentHashes(sha256_hex(data), pdq[0], pdq[1])


def pdq_distance(first: str, second: str) -> int:
    """The Hamming distance of two PDQ hashes in hex (0-256)."""
    return (int(first, 16) ^ int(second, 16)).bit_count()
