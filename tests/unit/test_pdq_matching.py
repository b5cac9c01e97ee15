"""PDQ on real photographs (the demo's, bundled in scikit-image): the same picture after resizing, re-encoding
and small crops stays within the default match distance, different pictures stay far beyond it.

The distances are recorded (``record_property``) so the run's JUnit report shows them; docs/known-content.md
quotes a run.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import pytest
from PIL import Image

from worker.content.banks import DEFAULT_PDQ_THRESHOLD, MIN_PDQ_QUALITY
from worker.content.hashes import content_hashes, pdq_distance, sha256_hex
from worker.dev.demo.samples import PHOTOS as DEMO_PHOTOS
from worker.dev.demo.samples import skimage_data_dir
from worker.records import ContentHashes

PHOTOS = tuple(photo.filename for photo in DEMO_PHOTOS)


@functools.cache
def _photo(name: str) -> Image.Image:
    with Image.open(skimage_data_dir() / name) as photo:
        return photo.convert("RGB")


def _encoded(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _crop(fraction: float) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        width, height = image.size
        return image.crop((int(width * fraction), int(height * fraction), width, height))

    return crop


@functools.cache
def _original(name: str) -> ContentHashes:
    return content_hashes(_encoded(_photo(name)))


VARIANTS: dict[str, Callable[[Image.Image], bytes]] = {
    "half size": lambda image: _encoded(image.resize((image.width // 2, image.height // 2))),
    "three quarters": lambda image: _encoded(image.resize((image.width * 3 // 4, image.height * 3 // 4))),
    "double size": lambda image: _encoded(image.resize((image.width * 2, image.height * 2))),
    "jpeg quality 40": lambda image: _encoded(image, "JPEG", quality=40),
    "webp quality 50": lambda image: _encoded(image, "WEBP", quality=50),
    "1% crop": lambda image: _encoded(_crop(0.01)(image)),
}


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_transformed_photo_stays_within_the_match_distance(
    photo: str, variant: str, record_property: Callable[[str, object], None]
) -> None:
    """Resize, re-encode and a 1 % crop change a few bits: within ``DEFAULT_PDQ_THRESHOLD`` (31); the
    SHA-256 changes, which is why banks match PDQ too."""
    image = _photo(photo)
    original, transformed = _original(photo), content_hashes(VARIANTS[variant](image))
    assert original.pdq is not None
    assert transformed.pdq is not None
    distance = pdq_distance(original.pdq, transformed.pdq)
    record_property(f"pdq_distance[{photo}, {variant}]", distance)
    assert (True, True) == (distance <= DEFAULT_PDQ_THRESHOLD, original.sha256 != transformed.sha256)


def test_different_photos_are_far_apart(record_property: Callable[[str, object], None]) -> None:
    """Every pair of different photos is more than three times the match distance apart."""
    hashes = {name: _original(name) for name in PHOTOS}
    distances = {
        (first, second): pdq_distance(hashes[first].pdq or "", hashes[second].pdq or "")
        for first in PHOTOS
        for second in PHOTOS
        if first < second
    }
    record_property("pdq_nearest_different", min(distances.values()))
    assert {} == {
        pair: distance for pair, distance in distances.items() if distance <= 3 * DEFAULT_PDQ_THRESHOLD
    }


def test_photos_have_full_quality_and_a_flat_picture_has_little() -> None:
    """Real photos score 100; a flat colour scores below ``MIN_PDQ_QUALITY`` and is not matched by PDQ."""
    flat = content_hashes(_encoded(Image.new("RGB", (256, 256), (90, 90, 90))))
    photo = _original("astronaut.png")
    assert (100, True) == (photo.pdq_quality, (flat.pdq_quality or 0) < MIN_PDQ_QUALITY)


def test_bytes_that_are_no_picture_have_a_sha256_and_no_pdq() -> None:
    """A body that passed the magic-byte check but does not decode still gets its exact hash."""
    broken = b"\x89PNG\r\n\x1a\n" + bytes(100)
    assert (sha256_hex(broken), None, None) == tuple(content_hashes(broken))
