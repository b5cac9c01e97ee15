"""SASL OAUTHBEARER tokens from Microsoft Entra ID, as Azure Event Hubs' Kafka endpoint takes them.

``EntraTokenProvider`` is aiokafka's token provider over any ``azure.identity.aio`` credential (managed
identity, workload identity, a service principal: ``DefaultAzureCredential`` tries them in turn). It keeps one
token and fetches the next ``refresh_margin_s`` (5 minutes) before the current one expires, one fetch at a
time however many connections ask at once. ``azure-identity`` is the optional ``entra`` extra, imported only
when a provider is opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from aiokafka.abc import AbstractTokenProvider
from azure.core.exceptions import AzureError, ClientAuthenticationError

from worker.errors import ConfigurationError, KafkaAuthenticationFailed, KafkaUnavailable

logger = logging.getLogger(__name__)

#: fetch a new token this long before the current one expires, so no connection presents a stale one
DEFAULT_REFRESH_MARGIN_S = 300.0
#: host suffixes of Event Hubs namespaces in the Azure public, China and US Government clouds
SERVICE_BUS_SUFFIXES = (
    ".servicebus.windows.net",
    ".servicebus.chinacloudapi.cn",
    ".servicebus.usgovcloudapi.net",
)
SCOPE_SETTING = "MODERATION_KAFKA_SASL_OAUTH_SCOPE"


class IssuedToken(Protocol):
    """What a credential returns (``azure.core.credentials.AccessToken``): the token and its expiry."""

    @property
    def token(self) -> str:
        """The bearer token."""
        ...

    @property
    def expires_on(self) -> int:
        """When it expires, in seconds since the Unix epoch."""
        ...


class TokenCredential(Protocol):
    """An async Entra ID credential: every ``azure.identity.aio`` credential is one."""

    async def get_token(self, *scopes: str) -> IssuedToken:
        """A token for ``scopes``; raises ``azure.core.exceptions.ClientAuthenticationError`` when refused."""
        ...

    async def close(self) -> None:
        """Release the credential's HTTP session."""
        ...


def event_hubs_scope(bootstrap_servers: str) -> str:
    """``https://<namespace>.servicebus.windows.net/.default`` for an Event Hubs bootstrap address.

    The first of the comma-separated ``host:port`` entries names the namespace. Raises
    ``ConfigurationError`` for a host outside Event Hubs: its scope cannot be guessed and must be set.
    """
    first = bootstrap_servers.split(",", maxsplit=1)[0].strip()
    host = first.rsplit(":", 1)[0] if first.count(":") == 1 else first
    host = host.lower()
    if not any(host.endswith(suffix) and len(host) > len(suffix) for suffix in SERVICE_BUS_SUFFIXES):
        raise ConfigurationError(
            f"SASL OAUTHBEARER needs {SCOPE_SETTING}: the bootstrap host {host!r} is no Event Hubs namespace"
            f" (*{SERVICE_BUS_SUFFIXES[0]}), so the Entra ID scope cannot be derived from it"
        )
    return f"https://{host}/.default"


class EntraTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's OAUTHBEARER token source over one Entra ID credential and one scope.

    ``clock`` returns seconds since the Unix epoch (the unit of ``expires_on``). A token is reused until
    ``refresh_margin_s`` before its expiry; a refresh that fails while the current token is still valid
    keeps that token (logged) and is tried again on the next call. Raises ``KafkaAuthenticationFailed``
    when Entra ID refuses and ``KafkaUnavailable`` when it cannot be reached, with no valid token to fall
    back on. The provider owns the credential: ``close()`` closes it.
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._current: IssuedToken | None = None
        # Connections open together at start-up; one of them fetches, the others wait for its token.
        self._fetching = asyncio.Lock()

    @property
    def scope(self) -> str:
        """The scope tokens are requested for."""
        return self._scope

    async def token(self) -> str:
        """A token valid for at least ``refresh_margin_s`` more seconds when Entra ID answers."""
        async with self._fetching:
            current = self._current
            now = self._clock()
            if current is not None and now < current.expires_on - self._refresh_margin_s:
                return current.token
            try:
                self._current = await self._credential.get_token(self._scope)
            except AzureError as exc:
                if current is not None and now < current.expires_on:
                    logger.warning(
                        "Entra ID token refresh failed (%s); the current token stays valid for %.0f s",
                        type(exc).__name__,
                        current.expires_on - now,
                    )
                    return current.token
                raise self._failure(exc) from exc
            return self._current.token

    def extensions(self) -> dict[str, str]:
        """No SASL extensions: Event Hubs needs none."""
        return {}

    async def close(self) -> None:
        """Close the credential."""
        await self._credential.close()

    def _failure(self, exc: AzureError) -> KafkaAuthenticationFailed | KafkaUnavailable:
        detail = str(exc.message if exc.message else type(exc).__name__).splitlines()[0][:300].rstrip(".")
        if isinstance(exc, ClientAuthenticationError):
            return KafkaAuthenticationFailed(
                f"Entra ID issued no token for {self._scope}: {detail}. Check the identity the worker runs"
                " as (managed identity, workload identity or AZURE_CLIENT_ID/AZURE_TENANT_ID) and its"
                " 'Azure Event Hubs Data Receiver/Sender' roles",
                reason="oauth_token",
                broker="entra-id",
            )
        return KafkaUnavailable(
            f"Entra ID could not be reached for a token for {self._scope}: {detail}",
            reason="oauth_token_service",
            broker="entra-id",
        )


def default_azure_credential() -> TokenCredential:
    """``azure.identity.aio.DefaultAzureCredential()``; ``ConfigurationError`` without the ``entra`` extra."""
    try:
        from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - the optional entra extra
    except ImportError as exc:
        raise ConfigurationError(
            "SASL OAUTHBEARER with Entra ID needs the azure-identity package:"
            " pip install 'moderation-worker[entra]'"
        ) from exc
    credential: TokenCredential = DefaultAzureCredential()
    return credential


@asynccontextmanager
async def open_entra_token_provider(
    bootstrap_servers: str,
    *,
    scope: str | None = None,
    credential_factory: Callable[[], TokenCredential] = default_azure_credential,
) -> AsyncIterator[EntraTokenProvider]:
    """A provider for ``scope`` (default: derived by ``event_hubs_scope``), its credential closed at exit."""
    resolved_scope = scope or event_hubs_scope(bootstrap_servers)
    provider = EntraTokenProvider(credential_factory(), resolved_scope)
    try:
        yield provider
    finally:
        await provider.close()
