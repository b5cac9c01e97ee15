"""Whether an image URL may be handed to the analyzer: https, no credentials, a public host, on the allowlist.

Pure. Every record is checked, and a stream's URLs share a handful of storage hosts, so the common URL shape
is read without ``urlsplit`` and the verdict on a host is cached; messages name the URL only redacted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from worker.redact import redact_url

UNSAFE_URL: Final = "unsafe_url"
HOST_NOT_ALLOWED: Final = "host_not_allowed"
"""The dead-letter reasons a refused URL gets (values of ``worker.contracts.DeadLetterReason``)."""

# The common shape, read without urlsplit: https, a DNS name or IPv4 address, no port, no userinfo.
_PLAIN_HTTPS: Final = re.compile(r"https://([A-Za-z0-9.-]+)(?=[/?#]|\Z)")
# A last label that is all digits or hex is not a DNS name: "https://2130706433/" and "0x7f.1" reach loopback.
_NUMERIC_LABEL: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_VERDICTS_CACHED: Final = 4096


class UrlRefusal(NamedTuple):
    """Why a URL is refused: a dead-letter reason and a message that shows the URL only redacted."""

    reason: str
    message: str


def url_refusal(url: str, allowed_hosts: tuple[str, ...] = ()) -> UrlRefusal | None:
    """``None`` if ``url`` is https, credential-free, on a public host and (when ``allowed_hosts`` is not
    empty) on an allowed one; otherwise why not."""
    plain = _PLAIN_HTTPS.match(url)
    if plain is not None:
        host = plain.group(1).lower().rstrip(".")
    else:
        host_or_refusal = _host_of_any_url(url)
        if isinstance(host_or_refusal, UrlRefusal):
            return host_or_refusal
        host = host_or_refusal
    if not host:
        return UrlRefusal(UNSAFE_URL, f"image URL {redact_url(url)} is not https with a host")
    verdict = _host_verdict(host, allowed_hosts)
    if verdict is None:
        return None
    reason, template = verdict
    return UrlRefusal(reason, template.format(url=redact_url(url), host=host))


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """True if ``host`` equals a pattern or, for ``*.suffix``, is a subdomain of suffix (case-insensitive)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")  # noqa: PLW2901 - normalising the loop value is the point
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _host_of_any_url(url: str) -> str | UrlRefusal:
    """The host of a URL of any other shape (port, userinfo, IPv6 literal, other scheme), or why not."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return UrlRefusal(UNSAFE_URL, f"cannot parse image URL {redact_url(url)}")
    if parts.scheme != "https" or not host:
        return UrlRefusal(UNSAFE_URL, f"image URL {redact_url(url)} is not https with a host")
    if "@" in parts.netloc or "\\" in parts.netloc:
        return UrlRefusal(UNSAFE_URL, f"image URL {redact_url(url)} carries userinfo")
    return host


@functools.lru_cache(maxsize=_HOST_VERDICTS_CACHED)
def _host_verdict(host: str, allowed_hosts: tuple[str, ...]) -> tuple[str, str] | None:
    """``None`` for an acceptable host, else the reason and a message template (``{url}``, ``{host}``)."""
    unsafe = _why_not_public(host)
    if unsafe is not None:
        return UNSAFE_URL, f"image URL {{url}} {unsafe}"
    if allowed_hosts and not host_allowed(host, allowed_hosts):
        return HOST_NOT_ALLOWED, "image host {host} is not on the allowlist"
    return None


def _why_not_public(host: str) -> str | None:
    """Why ``host`` is not a public internet host, or ``None`` if it looks like one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return "targets a private, loopback, link-local or reserved address"
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "targets localhost"
    if _NUMERIC_LABEL.match(host.rpartition(".")[2]):
        return "has a numeric host that is not a plain IP address"
    return None
