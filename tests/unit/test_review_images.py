"""Specification of the console's image checks that need no network: content type against magic bytes,
the URL guard before any request, the resolved addresses checked before any connection, and the in-memory
cache of served images."""

from __future__ import annotations

import pytest

from tests.fixtures.emulator import png_image
from worker.content.fetch import GuardedFetcher, static_resolver
from worker.records import SourceCoordinates
from worker.review.images import (
    FetchedImage,
    FetchRefused,
    GuardedImageFetcher,
    ItemImages,
    RefusalReason,
    sniff,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        (png_image(2, 2), "image/png", "image/png"),
        (JPEG, "image/jpeg; charset=binary", "image/jpeg"),
        (WEBP, "image/webp", "image/webp"),
        (b"GIF89a" + b"\x00" * 8, "application/octet-stream", "image/gif"),
    ],
)
def test_a_supported_image_is_served_with_the_type_its_bytes_show(
    data: bytes, declared: str, expected: str
) -> None:
    """The body decides the content type; a generic declared type is accepted."""
    assert expected == sniff(data, declared)


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"<html><script>alert(1)</script>", "image/png"),
        (JPEG, "image/png"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "image/webp"),
    ],
)
def test_anything_else_is_refused_as_not_an_image(data: bytes, declared: str) -> None:
    """SVG and HTML never reach the browser as an image; a lying content type is refused."""
    with pytest.raises(FetchRefused) as caught:
        sniff(data, declared)

    assert RefusalReason.NOT_AN_IMAGE == caught.value.reason


async def _refusal(fetcher: GuardedImageFetcher, url: str) -> FetchRefused:
    """The refusal of ``url`` (which carries a SAS-like secret), the fetcher closed after."""
    try:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.fetch(url)
    finally:
        await fetcher.aclose()
    assert "SECRET" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://images.example.com/a.png", RefusalReason.UNSAFE_URL),
        ("https://127.0.0.1/a.png", RefusalReason.UNSAFE_URL),
        ("https://169.254.169.254/latest/meta-data", RefusalReason.UNSAFE_URL),
        ("https://user:pw@images.example.com/a.png", RefusalReason.UNSAFE_URL),
        ("https://other.example.org/a.png", RefusalReason.HOST_NOT_ALLOWED),
    ],
)
async def test_unsafe_urls_are_refused_before_any_request(url: str, reason: RefusalReason) -> None:
    """The worker's guard runs first: https, no userinfo, a public host, the allowlist."""
    nothing_resolves = GuardedFetcher(resolve=static_resolver({}))
    fetcher = GuardedImageFetcher(nothing_resolves, allowed_hosts=("*.example.com",))

    assert reason == (await _refusal(fetcher, url + "?sig=SECRET")).reason


@pytest.mark.parametrize(
    "addresses",
    [["10.1.2.3"], ["93.184.216.34", "169.254.169.254"], ["::ffff:127.0.0.1"], ["fd00::1"]],
    ids=["private", "one-of-two-is-metadata", "mapped-loopback", "unique-local-v6"],
)
async def test_a_public_name_that_resolves_inward_is_refused_before_any_connection(
    addresses: list[str],
) -> None:
    """A name on the allowlist whose DNS answers an internal address (rebinding) reaches nothing: every
    address is checked, and the connection could only go to those checked."""
    resolve = static_resolver({"images.example.com": addresses})
    fetcher = GuardedImageFetcher(GuardedFetcher(resolve=resolve), allowed_hosts=("*.example.com",))

    refusal = await _refusal(fetcher, "https://images.example.com/a.png?sig=SECRET")
    assert RefusalReason.UNSAFE_URL == refusal.reason


async def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    fetcher = GuardedImageFetcher(GuardedFetcher(resolve=static_resolver({})))

    refusal = await _refusal(fetcher, "https://gone.example.com/a.png?sig=SECRET")
    assert RefusalReason.UNREACHABLE == refusal.reason


class CountingFetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def fetch(self, url: str) -> FetchedImage:
        self.urls.append(url)
        return FetchedImage(b"\x89PNG", "image/png")


class FixedLocator:
    async def image_url(self, source: SourceCoordinates) -> str:
        return f"https://images.example.com/{source.offset}.png"


async def test_served_images_are_kept_so_a_reload_does_not_fetch_again() -> None:
    """The last ``keep`` images stay in memory, oldest dropped first."""
    fetcher = CountingFetcher()
    images = ItemImages(FixedLocator(), fetcher, keep=2)

    for offset in (1, 1, 2, 3, 1):
        await images.image(SourceCoordinates("images.submitted", 0, offset, 123))

    assert [f"https://images.example.com/{n}.png" for n in (1, 2, 3, 1)] == fetcher.urls
