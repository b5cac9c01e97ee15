"""Who is asking, and may they change state: bearer tokens, signed sessions, a trusted proxy, CSRF.

Pure: decisions on the facts of a request (``RequestFacts``), a wall clock injected for session expiry.

- **Tokens** come from a secret file (``TokenBook.parse``): one ``reviewer-id role token`` per line. A
  presented token is compared with every known one in constant time (``hmac.compare_digest`` over SHA-256
  digests, no early exit), so timing tells nothing about how much of it was right.
- **Sessions**: signing in with a token sets a cookie ``reviewer|role|expiry|nonce`` signed with HMAC-SHA256
  (the session key: a setting shared by console instances, or random per process).
- **A trusted proxy** (the oauth2-proxy pattern) may instead name the reviewer in a header; the header is
  believed only from an allowlisted proxy address, and leads are named in a list.
- **CSRF**: every state change made with ambient credentials (a cookie, or the proxy's) needs the session's
  CSRF token and an ``Origin`` (else ``Referer``) among the console's own origins. A bearer token in an
  ``Authorization`` header is no ambient credential, so API clients need no CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from worker.review.queue import Role

SESSION_COOKIE: Final = "review_session"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
MIN_TOKEN_CHARS: Final = 16
_SEPARATOR: Final = "|"

WallClock = Callable[[], float]
"""Seconds since the epoch (``time.time``): session expiry must survive a console restart."""


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the line, never a token."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated person: ``reviewer`` id, ``role``, how they proved it (``session``, ``bearer``,
    ``proxy``) and, for sessions, the nonce the CSRF token is bound to."""

    reviewer: str
    role: Role
    via: str
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What authentication reads from a request: peer address, headers (case-insensitive lookup is the
    caller's: pass lower-case names), and the session cookie."""

    remote: str | None
    headers: Mapping[str, str]
    session_cookie: str | None

    @property
    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header (``None``: no such header)."""
        authorization = self.headers.get("authorization", "")
        return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


@dataclass(frozen=True, slots=True)
class _Holder:
    digest: bytes
    reviewer: str
    role: Role


class TokenBook:
    """The known bearer tokens, kept only as SHA-256 digests."""

    def __init__(self, holders: Iterable[tuple[str, str, Role]]) -> None:
        self._holders = tuple(_Holder(_digest(token), reviewer, role) for token, reviewer, role in holders)

    @classmethod
    def parse(cls, text: str) -> TokenBook:
        """Read ``reviewer-id role token`` lines (``#`` comments and blank lines ignored).

        ``TokenFileError`` for a malformed line, an unknown role, a token shorter than ``MIN_TOKEN_CHARS``
        or used twice; the message names the line number only.
        """
        holders: list[tuple[str, str, Role]] = []
        seen: set[bytes] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            parts = stripped.split()
            if len(parts) != 3:
                raise TokenFileError(f"line {number}: expected 'reviewer-id role token'")
            reviewer, role, token = parts
            if role not in set(Role):
                raise TokenFileError(f"line {number}: role must be one of {', '.join(Role)}")
            if len(token) < MIN_TOKEN_CHARS:
                raise TokenFileError(f"line {number}: the token is shorter than {MIN_TOKEN_CHARS} characters")
            if _digest(token) in seen:
                raise TokenFileError(f"line {number}: the token is used on an earlier line too")
            seen.add(_digest(token))
            holders.append((token, reviewer, Role(role)))
        return cls(holders)

    def __len__(self) -> int:
        return len(self._holders)

    def holder(self, token: str) -> tuple[str, Role] | None:
        """``(reviewer, role)`` of ``token``, or ``None``; compares against every entry in constant time."""
        presented = _digest(token)
        found: tuple[str, Role] | None = None
        for holder in self._holders:
            if hmac.compare_digest(presented, holder.digest):
                found = (holder.reviewer, holder.role)
        return found


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """Believe ``user_header`` (a reviewer id) only from ``proxies``; ``leads`` are the ids with role lead."""

    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    user_header: str
    leads: frozenset[str]

    @classmethod
    def of(cls, proxies: Iterable[str], user_header: str, leads: Iterable[str]) -> ProxyTrust:
        """From CIDR strings (a bare address is a /32 or /128); ``ValueError`` for a malformed one."""
        networks = tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies)
        return cls(networks, user_header.lower(), frozenset(leads))

    def identity(self, remote: str | None, headers: Mapping[str, str]) -> Identity | None:
        """The proxy's reviewer if ``remote`` is an allowlisted proxy and the header names someone."""
        if remote is None or not self.proxies:
            return None
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return None
        if not any(address in network for network in self.proxies):
            return None
        reviewer = headers.get(self.user_header, "").strip()
        if not reviewer or len(reviewer) > 128 or _SEPARATOR in reviewer:
            return None
        return Identity(reviewer, Role.LEAD if reviewer in self.leads else Role.REVIEWER, "proxy")


class Authenticator:
    """Sign-in, request identification and the CSRF decision, with ``key`` signing sessions and tokens.

    ``session_s`` is how long a session lasts after sign-in, seconds on ``clock`` (epoch seconds).
    ``origins`` are the console's own origins (``scheme://host[:port]``) a state change may come from.
    """

    def __init__(
        self,
        tokens: TokenBook,
        *,
        key: bytes,
        clock: WallClock,
        session_s: float,
        proxy: ProxyTrust | None = None,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self._tokens = tokens
        self._key = key
        self._clock = clock
        self._session_s = session_s
        self._proxy = proxy

    def sign_in(self, token: str) -> Identity | None:
        """The identity a token proves, with a fresh session nonce; ``None`` for an unknown token."""
        holder = self._tokens.holder(token)
        if holder is None:
            return None
        return Identity(holder[0], holder[1], "session", secrets.token_urlsafe(12))

    def session_cookie(self, identity: Identity) -> str:
        """The signed cookie value of a session for ``identity`` (expires ``session_s`` from now)."""
        expires = int(self._clock() + self._session_s)
        payload = _SEPARATOR.join((identity.reviewer, identity.role, str(expires), identity.nonce))
        return _b64(payload.encode()) + "." + _b64(self._mac(b"session", payload.encode()))

    def identify(self, facts: RequestFacts) -> Identity | None:
        """Who sent the request: a bearer token, else the trusted proxy's header, else a live session."""
        if (token := facts.bearer_token) is not None:
            holder = self._tokens.holder(token)
            return None if holder is None else Identity(holder[0], holder[1], "bearer")
        if self._proxy is not None:
            proxied = self._proxy.identity(facts.remote, facts.headers)
            if proxied is not None:
                return proxied
        return self._session(facts.session_cookie)

    def csrf_token(self, identity: Identity) -> str:
        """The token every state change of this session (or proxied reviewer) must carry."""
        bound = f"{identity.via}{_SEPARATOR}{identity.reviewer}{_SEPARATOR}{identity.nonce}"
        return _b64(self._mac(b"csrf", bound.encode()))

    def refuse_state_change(
        self, identity: Identity, facts: RequestFacts, presented: str | None, origins: Iterable[str]
    ) -> str | None:
        """``None`` if the state change may go ahead, else why not (for the 403 page)."""
        if identity.via == "bearer":
            return None
        origin = facts.headers.get("origin") or _origin_of(facts.headers.get("referer", ""))
        if not origin or origin == "null" or origin not in set(origins):
            return "the request does not come from this console's own pages (Origin check)"
        if not presented or not hmac.compare_digest(presented, self.csrf_token(identity)):
            return "the request carries no valid CSRF token; reload the page and try again"
        return None

    def _session(self, cookie: str | None) -> Identity | None:
        if not cookie or "." not in cookie:
            return None
        encoded, _, mac = cookie.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            signature = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._mac(b"session", payload)):
            return None
        parts = payload.decode("utf-8", "replace").split(_SEPARATOR)
        if len(parts) != 4 or parts[1] not in set(Role) or not parts[2].isdigit():
            return None
        if int(parts[2]) <= self._clock():
            return None
        return Identity(parts[0], Role(parts[1]), "session", parts[3])

    def _mac(self, purpose: bytes, message: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"\x00" + message, hashlib.sha256).digest()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a Referer URL, or ``""``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
