"""The Entra ID token provider for SASL OAUTHBEARER: scope derivation, caching and refresh before expiry."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from worker.errors import ConfigurationError, KafkaAuthenticationFailed, KafkaUnavailable
from worker.kafka.oauth import (
    EntraTokenProvider,
    TokenCredential,
    default_azure_credential,
    event_hubs_scope,
    open_entra_token_provider,
)

SCOPE = "https://ns.servicebus.windows.net/.default"
HOUR_S = 3600


@dataclass(frozen=True)
class FakeToken:
    """An ``azure.core.credentials.AccessToken`` look-alike."""

    token: str
    expires_on: int


@dataclass
class FakeClock:
    """Seconds since the epoch, moved by the test."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeCredential:
    """Issues ``token-1``, ``token-2``, ... (one per request), each valid for an hour; or raises ``failure``.

    ``gate`` (when set) holds every fetch until the test opens it; ``entered`` is set by the first request.
    """

    clock: FakeClock
    lifetime_s: int = HOUR_S
    failure: Exception | None = None
    gate: asyncio.Event | None = None
    requests: list[tuple[str, ...]] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def get_token(self, *scopes: str) -> FakeToken:
        self.requests.append(scopes)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return FakeToken(f"token-{len(self.requests)}", int(self.clock.now) + self.lifetime_s)

    async def close(self) -> None:
        self.closed = True


def provider_with(credential: FakeCredential) -> EntraTokenProvider:
    """A provider over ``credential`` with the default five-minute margin and the credential's clock."""
    return EntraTokenProvider(credential, SCOPE, clock=credential.clock)


@pytest.mark.parametrize(
    ("bootstrap", "scope"),
    [
        ("ns.servicebus.windows.net:9093", SCOPE),
        ("NS.ServiceBus.Windows.Net:9093,other:9093", SCOPE),
        ("ns.servicebus.chinacloudapi.cn:9093", "https://ns.servicebus.chinacloudapi.cn/.default"),
    ],
)
def test_scope_is_derived_from_the_event_hubs_namespace(bootstrap: str, scope: str) -> None:
    """The first bootstrap host names the namespace; the scope is its URL plus ``/.default``."""
    assert scope == event_hubs_scope(bootstrap)


@pytest.mark.parametrize("bootstrap", ["kafka.example.com:9093", ".servicebus.windows.net:9093"])
def test_no_scope_is_guessed_for_other_hosts(bootstrap: str) -> None:
    """A host outside Event Hubs gets no guessed scope: the error names the setting to set."""
    with pytest.raises(ConfigurationError) as raised:
        event_hubs_scope(bootstrap)
    assert "MODERATION_KAFKA_SASL_OAUTH_SCOPE" in str(raised.value)


async def test_a_token_is_reused_until_five_minutes_before_it_expires() -> None:
    """One fetch serves every call until the refresh margin; the next call past it fetches a new token."""
    clock = FakeClock()
    credential = FakeCredential(clock)
    provider = provider_with(credential)

    first = await provider.token()
    clock.now += HOUR_S - 300 - 1
    still_first = await provider.token()
    clock.now += 1
    second = await provider.token()

    assert ("token-1", "token-1", "token-2") == (first, still_first, second)
    assert [(SCOPE,), (SCOPE,)] == credential.requests


async def test_concurrent_connections_share_one_fetch() -> None:
    """Connections opening together wait for one fetch instead of asking Entra ID once each."""
    clock = FakeClock()
    gate = asyncio.Event()
    credential = FakeCredential(clock, gate=gate)
    provider = provider_with(credential)

    callers = [asyncio.ensure_future(provider.token()) for _ in range(5)]
    await credential.entered.wait()
    gate.set()
    tokens = await asyncio.gather(*callers)

    assert ["token-1"] * 5 == tokens
    assert 1 == len(credential.requests)


async def test_a_failed_refresh_keeps_the_still_valid_token() -> None:
    """Inside the margin a refresh failure is survived: the current token is valid for minutes more."""
    clock = FakeClock()
    credential = FakeCredential(clock)
    provider = provider_with(credential)
    first = await provider.token()

    clock.now += HOUR_S - 60
    credential.failure = ServiceRequestError("the identity endpoint did not answer")
    kept = await provider.token()
    credential.failure = None
    refreshed = await provider.token()

    assert ("token-1", "token-1", "token-3") == (first, kept, refreshed)


async def test_a_refused_identity_with_no_valid_token_is_an_authentication_failure() -> None:
    """Entra ID refusing the identity is KafkaAuthenticationFailed naming the scope, not a retry loop."""
    credential = FakeCredential(FakeClock(), failure=ClientAuthenticationError("AADSTS700016: no such app"))
    with pytest.raises(KafkaAuthenticationFailed) as raised:
        await provider_with(credential).token()
    assert "oauth_token" == raised.value.reason
    assert f"Entra ID issued no token for {SCOPE}: AADSTS700016: no such app" in str(raised.value)


async def test_an_unreachable_identity_endpoint_after_expiry_is_unavailable() -> None:
    """Past expiry with the identity endpoint down, the failure is the retryable KafkaUnavailable."""
    clock = FakeClock()
    credential = FakeCredential(clock)
    provider = provider_with(credential)
    await provider.token()
    clock.now += HOUR_S
    credential.failure = ServiceRequestError("connection refused")
    with pytest.raises(KafkaUnavailable) as raised:
        await provider.token()
    assert (True, "oauth_token_service") == (raised.value.retryable, raised.value.reason)


async def test_opening_a_provider_closes_its_credential_at_exit() -> None:
    """The context manager derives the scope and closes the credential it made."""
    credential = FakeCredential(FakeClock())

    def factory() -> TokenCredential:
        return credential

    async with open_entra_token_provider("ns.servicebus.windows.net:9093", credential_factory=factory) as p:
        assert (SCOPE, "token-1") == (p.scope, await p.token())
        assert not credential.closed
    assert credential.closed


def test_without_the_entra_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """No azure-identity: a ConfigurationError naming the ``entra`` extra, not an ImportError."""
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # what an absent package looks like
    with pytest.raises(ConfigurationError) as raised:
        default_azure_credential()
    assert "pip install 'moderation-worker[entra]'" in str(raised.value)
