"""The aiokafka options that secure a client's connections, built from one ``KafkaSecurity``.

``open_connection_options`` turns the description (``worker.kafka_settings``) into the keyword arguments every
aiokafka client of the worker takes (consumer, producer, admin), so each client is built with one
``**options.client_kwargs()``::

    async with open_connection_options(security, bootstrap_servers) as options:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **options.client_kwargs(), ...)

Only ``client_kwargs()`` hands the secrets to aiokafka in the clear, as it requires.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypedDict

from aiokafka.abc import AbstractTokenProvider

from worker.errors import ConfigurationError
from worker.kafka_settings import KafkaSecurity, SaslMechanism, Secret, SecurityProtocol


class ClientKwargs(TypedDict):
    """The keyword arguments of ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and ``AIOKafkaAdminClient``."""

    security_protocol: str
    ssl_context: ssl.SSLContext | None
    sasl_mechanism: str
    sasl_plain_username: str | None
    sasl_plain_password: str | None
    sasl_oauth_token_provider: AbstractTokenProvider | None


@dataclass(frozen=True)
class ConnectionOptions:
    """What every client needs to connect; share one instance so clients share the TLS context and tokens."""

    security_protocol: SecurityProtocol
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    token_provider: AbstractTokenProvider | None = None

    def client_kwargs(self) -> ClientKwargs:
        """The aiokafka keyword arguments; they hold the SASL password in the clear: never log them."""
        return ClientKwargs(
            security_protocol=str(self.security_protocol),
            ssl_context=self.ssl_context,
            # aiokafka's own default; it reads the mechanism only when the protocol uses SASL.
            sasl_mechanism=str(self.sasl_mechanism or SaslMechanism.PLAIN),
            sasl_plain_username=self.sasl_username,
            sasl_plain_password=None if self.sasl_password is None else self.sasl_password.get_secret_value(),
            sasl_oauth_token_provider=self.token_provider,
        )


def connection_options(
    security: KafkaSecurity, *, token_provider: AbstractTokenProvider | None = None
) -> ConnectionOptions:
    """The options for ``security``; ``OAUTHBEARER`` needs ``token_provider`` (``ConfigurationError`` if not).

    Reads the TLS files now, so a bad file stops the worker before any client is built.
    """
    oauth = security.sasl_mechanism is SaslMechanism.OAUTHBEARER and security.security_protocol.uses_sasl
    if oauth and token_provider is None:
        raise ConfigurationError(
            "SASL OAUTHBEARER needs a token provider (open_connection_options makes one)"
        )
    password_sasl = security.security_protocol.uses_sasl and not oauth
    return ConnectionOptions(
        security_protocol=security.security_protocol,
        ssl_context=security.ssl_context(),
        sasl_mechanism=security.sasl_mechanism,
        sasl_username=security.sasl_username if password_sasl else None,
        sasl_password=security.sasl_password if password_sasl else None,
        token_provider=token_provider if oauth else None,
    )


@asynccontextmanager
async def open_connection_options(
    security: KafkaSecurity, bootstrap_servers: str
) -> AsyncIterator[ConnectionOptions]:
    """``connection_options`` with, for ``OAUTHBEARER``, an Entra ID token provider closed at exit.

    The provider's scope is ``sasl_oauth_scope`` or derived from ``bootstrap_servers`` (docs/kafka.md).
    Raises ``ConfigurationError`` when the ``entra`` extra is not installed or no scope can be derived.
    """
    if security.security_protocol.uses_sasl and security.sasl_mechanism is SaslMechanism.OAUTHBEARER:
        # Imported here: it loads azure-core, which the settings (and `dev broker`) must not pay for.
        from worker.kafka.oauth import open_entra_token_provider  # noqa: PLC0415

        async with open_entra_token_provider(bootstrap_servers, scope=security.sasl_oauth_scope) as provider:
            yield connection_options(security, token_provider=provider)
    else:
        yield connection_options(security)
