"""Specification of URL redaction: what may be printed of an image URL, and what never is."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import redact
from worker.redact import UNPARSEABLE_URL, redact_text, redact_url

SAS_URL = (
    "https://acct.blob.core.windows.net/images/cat.jpg"
    "?sv=2022-11-02&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
)


def test_sas_query_is_replaced_and_path_kept() -> None:
    """The SAS token (the whole query) is replaced; scheme, host and path stay for diagnosis."""
    expected = "https://acct.blob.core.windows.net/images/cat.jpg?<redacted>"
    assert expected == redact_url(SAS_URL)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a/b.png", "https://example.com/a/b.png"),
        ("https://example.com:8443/a.png?x=1", "https://example.com:8443/a.png?<redacted>"),
        ("https://user:secret@example.com/a.png", "https://example.com/a.png"),
        ("https://u:p@ss@example.com/a.png", "https://example.com/a.png"),
        ("https://example.com/a.png#frag", "https://example.com/a.png?<redacted>"),
        ("https://example.com/a.png?", "https://example.com/a.png?<redacted>"),
        ("HTTPS://Example.com/A.png", "https://Example.com/A.png"),
        ("https://[2001:db8::1]:443/x?k=v", "https://[2001:db8::1]:443/x?<redacted>"),
        ("https://example.com", "https://example.com"),
    ],
)
def test_redacted_form_keeps_scheme_host_port_and_path(url: str, expected: str) -> None:
    """Userinfo is dropped, query and fragment become ``?<redacted>``, the rest is kept verbatim."""
    assert expected == redact_url(url)


@pytest.mark.parametrize(
    "garbage",
    ["", "not a url", "/relative/path?sig=abc", "//host-only/x?sig=abc", "https://[::1/x?sig=abc", "mailto:"],
)
def test_unparseable_input_becomes_a_placeholder(garbage: str) -> None:
    """Anything without a scheme and a host is printed as a placeholder, never echoed."""
    expected = UNPARSEABLE_URL
    assert expected == redact_url(garbage)


def test_non_string_input_becomes_a_placeholder() -> None:
    """Callers on error paths may hold anything; redaction must not raise on it."""
    expected = UNPARSEABLE_URL
    assert expected == redact_url(None)  # type: ignore[arg-type]


def test_control_characters_in_the_path_are_percent_encoded() -> None:
    """A crafted path cannot smuggle terminal escapes or spaces into a log line."""
    expected = "https://example.com/a%1Bb%20c"
    assert expected == redact_url("https://example.com/a\x1bb c")


@given(st.text())
def test_redact_url_never_raises_and_never_keeps_a_query(url: str) -> None:
    """For any input the result is a string with no query string other than the placeholder."""
    redacted = redact_url(url)
    assert isinstance(redacted, str)
    assert redacted == UNPARSEABLE_URL or redacted.count("?") <= 1
    assert "?" not in redacted or redacted.endswith("?<redacted>")


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=40))
def test_query_values_never_survive_redaction(secret: str) -> None:
    """Whatever a query holds, the redacted URL does not contain it after the path."""
    redacted = redact_url(f"https://example.com/img.png?sig=SECRET{secret}")
    assert "SECRET" not in redacted


def test_redact_text_scrubs_urls_inside_a_message() -> None:
    """An SDK message that quotes the URL keeps the URL's path but loses its token."""
    message = f"Cannot fetch '{SAS_URL}': 403 (retry 2)"
    expected = "Cannot fetch 'https://acct.blob.core.windows.net/images/cat.jpg?<redacted>': 403 (retry 2)"
    assert expected == redact_text(message)


def test_redact_text_scrubs_request_lines_and_bare_tokens() -> None:
    """A request line with a relative path, and a signature on its own, are both scrubbed."""
    message = "GET /images/cat.jpg?sv=1&sig=abc failed; token=xyz; also sig=def"
    expected = "GET /images/cat.jpg?<redacted> failed; token=<redacted>; also sig=<redacted>"
    assert expected == redact_text(message)


def test_redact_text_leaves_plain_text_alone() -> None:
    """Text without URLs or credentials passes through unchanged."""
    message = "schema_invalid at $.image.url: must match pattern"
    assert message == redact_text(message)


@given(st.text(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16))
def test_redact_text_never_leaks_a_signature(prefix: str, token: str) -> None:
    """Whatever surrounds it, a URL's signature value never survives ``redact_text``."""
    text = f"{prefix} https://h.example/p?sig={token} {prefix}"
    assert f"sig={token}" not in redact_text(text)


# Text assembled from URL-ish pieces, so the properties meet URLs, queries and placeholders often.
URLISH_TEXT = st.lists(
    st.sampled_from(["https://", "h.example", "/p", "?", "&", "sig=", "token=", "<redacted>", "#", "@", " "])
    | st.text(max_size=3),
    max_size=20,
).map("".join)


@given(URLISH_TEXT)
def test_redact_text_is_idempotent(text: str) -> None:
    """Redacting an already redacted message changes nothing (messages pass through several layers)."""
    once = redact_text(text)
    assert once == redact_text(once)


def test_redacted_url_inside_text_is_left_as_is() -> None:
    """A message built from ``redact_url`` output keeps a single placeholder."""
    message = f"image URL {redact_url(SAS_URL)} is private"
    expected = "image URL https://acct.blob.core.windows.net/images/cat.jpg?<redacted> is private"
    assert expected == redact_text(message)


URL_PIECES = st.lists(
    st.sampled_from(
        [
            "https",
            "HTTP",
            "s3+x",
            "1a",
            "://",
            ":",
            "//",
            "h.example",
            "H-1.Example",
            "_x",
            ":8443",
            ":",
            "@",
            "u:p@",
            "/",
            "/a b",
            "/p%20q",
            "/é",
            "?",
            "?q=1",
            "#",
            "#f",
            "?#",
            "\\",
            "[::1]",
            "\t",
            "\x00",
            "\x7f",
            " ",
            "~",
        ]
    )
    | st.text(max_size=2),
    max_size=8,
).map("".join)


@settings(max_examples=500)
@given(URL_PIECES)
def test_the_plain_shape_is_redacted_as_the_general_parse_does(url: str) -> None:
    """Most URLs skip urlsplit (``_PLAIN_URL``); whatever the input, the answer is the general path's."""
    fast = redact_url(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redact, "_PLAIN_URL", re.compile(r"(?!)"))
        general = redact_url(url)
    assert general == fast
