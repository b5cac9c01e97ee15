"""Redaction of image URLs before they reach logs, metrics, results or exception messages.

Image URLs may carry credentials (Azure SAS tokens live in the query string, basic-auth in the userinfo), so
the only form of a URL that ever leaves the decode step is ``redact_url(url)``. Both functions are pure and
total: they never raise.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

UNPARSEABLE_URL = "<unparseable-url>"
REDACTED_QUERY = "?<redacted>"

# An absolute URL embedded in free text; quotes and angle brackets end it because messages often quote URLs.
# An already redacted query is matched whole so that redacting twice changes nothing.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>?]+(?:\?<redacted>|\?[^\s'\"<>]*)?")
# A path with a query string but no scheme/host, e.g. an HTTP request line quoted in an SDK error.
_PATH_QUERY_IN_TEXT = re.compile(r"(?<![\w:/])(/[^\s?'\"<>]*)\?[^\s'\"<>]+")
# Credential-bearing parameters that can show up outside a URL (e.g. a SAS token pasted on its own).
_SECRET_PARAM_IN_TEXT = re.compile(
    r"(?i)\b(sig|signature|access_token|token|x-amz-signature|x-goog-signature)=[^&;,\s'\"<>]+"
)
# Control characters would let a crafted path forge log lines; percent-encode them.
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")
# The shape of nearly every URL redacted (one per result): scheme://host[:port]path[?query][#fragment] with
# no userinfo, IPv6 literal, whitespace or control character. It is redacted without urlsplit; anything
# else takes the general path, which gives the same answer (tests/unit/test_redact.py compares the two).
_PLAIN_URL = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://([A-Za-z0-9.:-]+)(/[^?#\x00-\x20\x7f]*)?([?#][^\x00-\x20\x7f]*)?"
)


_EMPTY_REST = frozenset(("", "#", "?#"))


def _percent_encode(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def redact_url(url: str) -> str:
    """Return ``url`` reduced to scheme, host, port and path; never raises.

    Userinfo (``user:password@``) is dropped; any query string or fragment is replaced by ``?<redacted>``.
    Anything without a scheme and a host (relative references, garbage, non-strings) becomes
    ``<unparseable-url>``: a value we cannot parse is a value we cannot prove safe to print.
    """
    if not isinstance(url, str):
        return UNPARSEABLE_URL
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        scheme, host_port, path, rest = plain.groups("")
        # Redacted unless nothing follows the path but empty delimiters; a lone "?" is redacted as urlsplit
        # sees an (empty) query there.
        suffix = "" if rest in _EMPTY_REST else REDACTED_QUERY
        return f"{scheme.lower()}://{host_port}{path}{suffix}"
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unterminated IPv6 literal "https://[::1/x"
        return UNPARSEABLE_URL
    host_port = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not host_port:
        return UNPARSEABLE_URL
    path = _CONTROL_CHARS.sub(_percent_encode, parts.path)
    host_port = _CONTROL_CHARS.sub(_percent_encode, host_port)
    suffix = REDACTED_QUERY if (parts.query or parts.fragment or url.rstrip().endswith("?")) else ""
    return f"{parts.scheme.lower()}://{host_port}{path}{suffix}"


def redact_text(text: str) -> str:
    """Return ``text`` with every embedded URL redacted as by ``redact_url``; never raises.

    Also covers a bare ``/path?query`` (request lines quoted in SDK errors) and credential parameters such as
    ``sig=...`` or ``access_token=...`` that appear on their own. Use it on exception messages from libraries
    that may echo the URL they were given.
    """
    if not isinstance(text, str):
        return ""
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
    text = _PATH_QUERY_IN_TEXT.sub(lambda match: f"{match.group(1)}{REDACTED_QUERY}", text)
    return _SECRET_PARAM_IN_TEXT.sub(lambda match: f"{match.group(1)}=<redacted>", text)
