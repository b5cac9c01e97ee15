"""Specification of the console's identity decisions: tokens, sessions, the trusted proxy, CSRF and Origin."""

from __future__ import annotations

import pytest

from worker.review.auth import Authenticator, Identity, ProxyTrust, RequestFacts, TokenBook, TokenFileError
from worker.review.queue import Role

ALICE_TOKEN = "alice-token-0123456789"
LENA_TOKEN = "lena-token-0123456789"
TOKENS = f"# reviewers\nalice reviewer {ALICE_TOKEN}\n\nlena lead {LENA_TOKEN}\n"
KEY = b"k" * 32
ORIGIN = "https://review.example.com"


class WallClock:
    """Epoch seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def authenticator(clock: WallClock | None = None, proxy: ProxyTrust | None = None) -> Authenticator:
    return Authenticator(
        TokenBook.parse(TOKENS), key=KEY, clock=clock or WallClock(), session_s=3600.0, proxy=proxy
    )


def facts(
    headers: dict[str, str] | None = None, cookie: str | None = None, remote: str = "10.0.0.5"
) -> RequestFacts:
    return RequestFacts(remote, headers or {}, cookie)


def test_the_token_file_maps_each_token_to_a_reviewer_and_role() -> None:
    """One 'reviewer-id role token' per line; comments and blank lines are ignored."""
    book = TokenBook.parse(TOKENS)

    assert ("alice", Role.REVIEWER) == book.holder(ALICE_TOKEN)
    assert ("lena", Role.LEAD) == book.holder(LENA_TOKEN)
    assert book.holder("alice-token-012345678") is None
    assert 2 == len(book)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice reviewer", "line 1: expected"),
        ("alice boss tokentokentokentoken", "line 1: role must be one of reviewer, lead"),
        ("alice reviewer short", "line 1: the token is shorter than 16"),
        (f"a reviewer {ALICE_TOKEN}\nb lead {ALICE_TOKEN}", "line 2: the token is used on an earlier line"),
    ],
)
def test_a_bad_token_file_is_refused_naming_the_line_and_never_the_token(text: str, message: str) -> None:
    """The message points at the line; a token never appears in it."""
    with pytest.raises(TokenFileError) as caught:
        TokenBook.parse(text)

    assert message in str(caught.value)
    assert ALICE_TOKEN not in str(caught.value)


def test_a_signed_in_session_identifies_its_reviewer_until_it_expires() -> None:
    """The cookie carries reviewer and role under an HMAC; it stops working after session_s."""
    clock = WallClock()
    auth = authenticator(clock)
    who = auth.sign_in(ALICE_TOKEN)
    assert who is not None
    cookie = auth.session_cookie(who)

    assert who == auth.identify(facts(cookie=cookie))
    clock.now += 3600.0
    assert auth.identify(facts(cookie=cookie)) is None


def test_a_tampered_or_foreign_session_cookie_identifies_nobody() -> None:
    """Changing the role in the cookie, or signing it with another key, breaks the signature."""
    auth = authenticator()
    who = auth.sign_in(ALICE_TOKEN)
    assert who is not None
    cookie = auth.session_cookie(who)
    forged = auth.session_cookie(Identity("alice", Role.LEAD, "session", who.nonce))
    other = Authenticator(TokenBook.parse(TOKENS), key=b"x" * 32, clock=WallClock(), session_s=3600.0)

    assert auth.identify(facts(cookie=forged.split(".")[0] + "." + cookie.split(".")[1])) is None
    assert auth.identify(facts(cookie=other.session_cookie(who))) is None
    assert auth.identify(facts(cookie="garbage")) is None
    assert auth.sign_in("not-a-token-at-all") is None


def test_a_bearer_token_identifies_an_api_client_without_a_session() -> None:
    """``Authorization: Bearer`` is checked on every request."""
    auth = authenticator()

    assert Identity("lena", Role.LEAD, "bearer") == auth.identify(
        facts({"authorization": f"Bearer {LENA_TOKEN}"})
    )
    assert auth.identify(facts({"authorization": "Bearer wrong-token-0123456789"})) is None


def test_the_proxy_header_is_believed_only_from_an_allowlisted_proxy() -> None:
    """The oauth2-proxy pattern: anyone else sending the header is ignored."""
    proxy = ProxyTrust.of(["10.0.0.0/24"], "X-Forwarded-User", ["lena"])
    auth = authenticator(proxy=proxy)
    headers = {"x-forwarded-user": "lena"}

    assert Identity("lena", Role.LEAD, "proxy") == auth.identify(facts(headers, remote="10.0.0.7"))
    assert Identity("rita", Role.REVIEWER, "proxy") == auth.identify(
        facts({"x-forwarded-user": "rita"}, remote="10.0.0.7")
    )
    assert auth.identify(facts(headers, remote="192.0.2.1")) is None
    assert auth.identify(facts({}, remote="10.0.0.7")) is None


def test_a_state_change_needs_the_sessions_csrf_token_and_the_consoles_origin() -> None:
    """A cross-site form post carries the cookie (same site) but neither the token nor the origin."""
    auth = authenticator()
    who = auth.sign_in(ALICE_TOKEN)
    assert who is not None
    token = auth.csrf_token(who)
    own = facts({"origin": ORIGIN})

    assert auth.refuse_state_change(who, own, token, [ORIGIN]) is None
    assert "Origin" in str(
        auth.refuse_state_change(who, facts({"origin": "https://evil.example"}), token, [ORIGIN])
    )
    assert "Origin" in str(auth.refuse_state_change(who, facts({}), token, [ORIGIN]))
    assert "Origin" in str(auth.refuse_state_change(who, facts({"origin": "null"}), token, [ORIGIN]))
    assert "CSRF" in str(auth.refuse_state_change(who, own, None, [ORIGIN]))
    assert "CSRF" in str(auth.refuse_state_change(who, own, token + "x", [ORIGIN]))


def test_the_referer_stands_in_for_a_missing_origin() -> None:
    """Some clients send only a Referer; its origin must be the console's."""
    auth = authenticator()
    who = auth.sign_in(ALICE_TOKEN)
    assert who is not None

    refusal = auth.refuse_state_change(
        who, facts({"referer": f"{ORIGIN}/items/x"}), auth.csrf_token(who), [ORIGIN]
    )

    assert refusal is None


def test_csrf_tokens_are_bound_to_the_session() -> None:
    """Another session's token (even the same reviewer's) does not pass."""
    auth = authenticator()
    first, second = auth.sign_in(ALICE_TOKEN), auth.sign_in(ALICE_TOKEN)
    assert first is not None
    assert second is not None

    assert (
        auth.refuse_state_change(second, facts({"origin": ORIGIN}), auth.csrf_token(first), [ORIGIN])
        is not None
    )


def test_bearer_clients_need_no_csrf_token() -> None:
    """A bearer token is no ambient credential a foreign page could make the browser send."""
    auth = authenticator()

    assert auth.refuse_state_change(Identity("lena", Role.LEAD, "bearer"), facts({}), None, [ORIGIN]) is None
