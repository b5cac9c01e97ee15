"""``url_refusal`` reads the common URL shape without ``urlsplit`` and caches verdicts per host: both
shortcuts must give exactly the answer of the general parse."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import urlguard
from worker.urlguard import HOST_NOT_ALLOWED, UNSAFE_URL, UrlRefusal, url_refusal

ALLOWLIST = ("*.blob.core.windows.net", "images.example.com", "10.0.0.8")
HOSTS = st.text(alphabet="abcXYZ019.-", min_size=0, max_size=12) | st.sampled_from(
    [
        "localhost",
        "a.localhost",
        "127.0.0.1",
        "10.0.0.8",
        "8.8.8.8",
        "2130706433",
        "0x7f.1",
        "images.example.com",
        "x.blob.core.windows.net",
        "e.com.",
        "...",
        "IMAGES.Example.COM",
    ]
)
TAILS = st.sampled_from(
    [
        "",
        "/",
        "/a.jpg",
        "/a.jpg?sig=SECRET",
        "?q=1",
        "#f",
        ":443/a",
        ":99999/",
        "\\@b.com/",
        "@b.com/",
        "/a b.jpg",
        ".",
        "/%2e%2e/",
    ]
)


def _both(url: str, allowed: tuple[str, ...]) -> tuple[UrlRefusal | None, UrlRefusal | None]:
    """The verdict as deployed, and with no fast shape and no cache (every URL through ``urlsplit``)."""
    fast = url_refusal(url, allowed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urlguard, "_PLAIN_HTTPS", re.compile(r"(?!)"))
        patch.setattr(urlguard, "_host_verdict", urlguard._host_verdict.__wrapped__)
        general = url_refusal(url, allowed)
    return fast, general


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["https://", "HTTPS://", "http://", "https:/"]),
    host=HOSTS,
    tail=TAILS,
    allowed=st.sampled_from([(), ALLOWLIST]),
)
def test_the_fast_shape_and_the_cache_agree_with_the_general_parse(
    scheme: str, host: str, tail: str, allowed: tuple[str, ...]
) -> None:
    fast, general = _both(f"{scheme}{host}{tail}", allowed)
    assert general == fast


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://images.example.com/a.jpg?sig=SECRET", None),
        ("https://10.0.0.8/a.jpg", UNSAFE_URL),  # private, even when allowlisted
        ("https://other.example.com/a.jpg", HOST_NOT_ALLOWED),
        ("https://x.blob.core.windows.net/c/a.jpg", None),
        ("https://./a.jpg", UNSAFE_URL),
    ],
)
def test_verdicts_with_an_allowlist(url: str, reason: str | None) -> None:
    refusal = url_refusal(url, ALLOWLIST)
    assert reason == (refusal.reason if refusal else None)
    assert refusal is None or "SECRET" not in refusal.message


def test_a_cached_verdict_still_names_each_url_redacted() -> None:
    urlguard._host_verdict.cache_clear()
    first = url_refusal("https://127.0.0.1/a.jpg?sig=ONE")
    second = url_refusal("https://127.0.0.1/b.jpg?sig=TWO")
    assert first is not None
    assert second is not None
    assert "https://127.0.0.1/a.jpg?<redacted>" in first.message
    assert "https://127.0.0.1/b.jpg?<redacted>" in second.message
