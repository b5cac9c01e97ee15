"""How a Kafka client secures its connections, in the Java client's and librdkafka's vocabulary.

``KafkaSecurity`` is one frozen, validated description (``security.protocol``, ``sasl.mechanism``, ...); its
fields map one-to-one to the settings ``MODERATION_KAFKA_<FIELD>`` (docs/kafka.md), and it builds the TLS
context from its files. Secrets (the SASL password, the key password) are ``Secret`` objects that never
print. No Kafka client code here: ``worker.kafka.security`` turns a description into aiokafka's options.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from worker.errors import ConfigurationError

SETTING_PREFIX = "MODERATION_KAFKA_"


class SecurityProtocol(StrEnum):
    """``security.protocol``: whether connections use TLS, SASL, both or neither."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        """True when the connection is wrapped in TLS."""
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        """True when the client authenticates with SASL after connecting."""
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    """``sasl.mechanism``: how a SASL client proves who it is."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"

    @property
    def uses_password(self) -> bool:
        """True for the mechanisms that send a username and a password (PLAIN, SCRAM)."""
        return self is not SaslMechanism.OAUTHBEARER


class Secret(Protocol):
    """A string that never prints: ``pydantic.SecretStr`` and ``MaskedSecret`` both are one."""

    def get_secret_value(self) -> str:
        """The secret itself; hand it to the library that needs it and nowhere else."""
        ...


class MaskedSecret:
    """A ``Secret`` for when pydantic is not installed: ``repr`` and ``str`` show ``**********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "MaskedSecret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskedSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def secret(value: str) -> Secret:
    """``value`` as a ``pydantic.SecretStr`` when pydantic is importable, else as a ``MaskedSecret``."""
    try:
        from pydantic import SecretStr  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        return MaskedSecret(value)
    masked: Secret = SecretStr(value)
    return masked


def setting(name: str) -> str:
    """The variable of field ``name``: ``sasl_username`` -> ``MODERATION_KAFKA_SASL_USERNAME``."""
    return SETTING_PREFIX + name.upper()


@dataclass(frozen=True)
class KafkaSecurity:
    """The security of every connection a Kafka client of the worker opens; valid once constructed.

    Raises ``ConfigurationError`` naming every inconsistent field (e.g. ``SASL_SSL`` without a mechanism,
    SCRAM without a password, a certificate without its key). Files are checked when they are read, by
    ``ssl_context()``. ``ssl_check_hostname`` (on by default) makes TLS verify that the broker's certificate
    names the host connected to; turn it off only for a broker reached by an address its certificate lacks.
    ``sasl_oauth_scope`` is the Entra ID scope for ``OAUTHBEARER``; unset, it is derived from the bootstrap
    host of an Azure Event Hubs namespace.
    """

    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_oauth_scope: str | None = None
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    ssl_key_password: Secret | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        problems = [*self._sasl_problems(), *self._tls_problems()]
        if problems:
            raise ConfigurationError("Kafka security settings are inconsistent: " + "; ".join(problems))

    def _sasl_problems(self) -> list[str]:
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        if not protocol.uses_sasl:
            unused = ["sasl_mechanism", "sasl_username", "sasl_password", "sasl_oauth_scope"]
            return [
                f"{setting(name)} is set but {setting('security_protocol')}={protocol} does not use SASL"
                f" (choose SASL_SSL)"
                for name in unused
                if getattr(self, name) is not None
            ]
        if mechanism is None:
            choices = ", ".join(SaslMechanism)
            return [
                f"{setting('security_protocol')}={protocol} needs {setting('sasl_mechanism')} ({choices})"
            ]
        problems: list[str] = []
        if mechanism.uses_password:
            if not self.sasl_username:
                problems.append(f"{setting('sasl_mechanism')}={mechanism} needs {setting('sasl_username')}")
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                problems.append(f"{setting('sasl_mechanism')}={mechanism} needs {setting('sasl_password')}")
            if self.sasl_oauth_scope is not None:
                problems.append(f"{setting('sasl_oauth_scope')} is only used by OAUTHBEARER, not {mechanism}")
        else:
            problems += [
                f"{setting(name)} is not used by OAUTHBEARER (it gets tokens from Entra ID)"
                for name in ("sasl_username", "sasl_password")
                if getattr(self, name) is not None
            ]
        return problems

    def _tls_problems(self) -> list[str]:
        tls_files = ["ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password"]
        if not self.security_protocol.uses_tls:
            return [
                f"{setting(name)} is set but {setting('security_protocol')}={self.security_protocol}"
                f" does not use TLS (choose SSL or SASL_SSL)"
                for name in tls_files
                if getattr(self, name) is not None
            ]
        problems: list[str] = []
        if self.ssl_cert_file is not None and self.ssl_key_file is None:
            problems.append(f"{setting('ssl_cert_file')} needs its private key in {setting('ssl_key_file')}")
        if self.ssl_key_file is not None and self.ssl_cert_file is None:
            problems.append(f"{setting('ssl_key_file')} needs its certificate in {setting('ssl_cert_file')}")
        if self.ssl_key_password is not None and self.ssl_key_file is None:
            problems.append(f"{setting('ssl_key_password')} is set but there is no {setting('ssl_key_file')}")
        return problems

    def secrets(self) -> list[str]:
        """The secret values in this description, for scrubbing them from text that leaves the process."""
        held = [self.sasl_password, self.ssl_key_password]
        return [value.get_secret_value() for value in held if value is not None and value.get_secret_value()]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (None without TLS): the CA file's authorities, else the system's.

        Verifies the broker's certificate always and its host name unless ``ssl_check_hostname`` is off;
        presents the client certificate for mutual TLS when one is set. Raises ``ConfigurationError`` when a
        file is missing or unreadable, is no PEM certificate or key, or the key password is wrong.
        """
        if not self.security_protocol.uses_tls:
            return None
        for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigurationError(f"{setting(name)}: {path} does not exist or is not a file")
        context = _load_authorities(self.ssl_ca_file)
        if self.ssl_cert_file is not None and self.ssl_key_file is not None:
            _load_client_identity(context, self.ssl_cert_file, self.ssl_key_file, self.ssl_key_password)
        context.check_hostname = self.ssl_check_hostname
        return context


def _load_authorities(ca_file: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"{setting('ssl_ca_file')}: {ca_file} holds no readable PEM certificate ({_reason(exc)})"
        ) from None


def _load_client_identity(
    context: ssl.SSLContext, cert_file: Path, key_file: Path, key_password: Secret | None
) -> None:
    # The password is passed as a callback so OpenSSL never falls back to prompting on the terminal.
    password = "" if key_password is None else key_password.get_secret_value()
    try:
        context.load_cert_chain(cert_file, key_file, password=lambda: password)
    except (ssl.SSLError, OSError) as exc:
        # ``from None``: OpenSSL's own message is kept (it names the failing step), its traceback is not.
        raise ConfigurationError(
            f"{setting('ssl_cert_file')}/{setting('ssl_key_file')}: cannot load the client certificate"
            f" {cert_file} with key {key_file} ({_reason(exc)}; a wrong or missing"
            f" {setting('ssl_key_password')} or a key of another certificate look like this)"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return type(exc).__name__ if not str(exc) else str(exc)[:200]
