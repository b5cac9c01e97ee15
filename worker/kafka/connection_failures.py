"""Why a Kafka connection failed, in one sentence an operator can act on (``worker.errors`` Kafka family).

``classify_connection_failure`` is pure: it reads the exception aiokafka raised while connecting (and the
exceptions chained to it) and returns the worker's exception to raise. What aiokafka 0.14 raises for each
cause was observed against Apache Kafka 4.2 listeners (docs/kafka.md, "What a failure looks like"):

==============================================  =============================================================
cause                                           what ``aiokafka.conn.create_conn`` raises
==============================================  =============================================================
nothing listens on the port                     ``ConnectionRefusedError``
unknown host name                               ``socket.gaierror``
nothing answers                                 ``TimeoutError``
plaintext client, TLS listener                  ``KafkaConnectionError`` from ``IncompleteReadError`` whose
                                                "length" is a TLS record header (``0x15 0x03 ...``)
TLS client, plaintext listener                  ``ConnectionResetError`` (or ``ssl.SSLError``
                                                ``WRONG_VERSION_NUMBER`` from a non-Kafka server)
untrusted CA, certificate for another host      ``ssl.SSLCertVerificationError`` (its ``verify_message``)
client certificate missing or refused (mTLS)    ``KafkaConnectionError`` from ``ssl.SSLError`` ``*_ALERT_*``
wrong password or unknown user (PLAIN, SCRAM)   ``SaslAuthenticationFailed``
mechanism not enabled on the listener           ``UnsupportedSaslMechanismError``
SASL client, listener without SASL              ``IllegalSaslStateError``
client without SASL, SASL listener              ``KafkaConnectionError`` from ``IncompleteReadError`` (empty)
==============================================  =============================================================

aiokafka's clients (``start()``) log that cause and raise a bare ``KafkaConnectionError("Unable to
bootstrap ...")``; ``worker.kafka.probe.probe_bootstrap`` connects as they do and classifies the cause itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from worker.errors import (
    KafkaAuthenticationFailed,
    KafkaConnectionFailed,
    KafkaProtocolMismatch,
    KafkaTlsFailed,
    KafkaUnavailable,
)
from worker.kafka_settings import KafkaSecurity, setting

#: OpenSSL's verify codes for a certificate that names another host or IP address
HOSTNAME_MISMATCH_CODES = frozenset({62, 64})
#: first two bytes of a TLS alert or handshake record, read by a plaintext client as a response length
TLS_RECORD_PREFIXES = frozenset({0x1503, 0x1603})
#: OpenSSL reasons of a TLS client that reached a server not speaking TLS
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_connection_failure(
    exc: BaseException, *, broker: str, security: KafkaSecurity
) -> KafkaConnectionFailed:
    """The worker's exception for ``exc``, raised while connecting to ``broker`` (``host:port``).

    The message names the broker, the cause and the settings to check; text quoted from the broker or
    OpenSSL has ``security``'s secrets scrubbed. Never raises.
    """
    if isinstance(exc, KafkaConnectionFailed):
        return exc
    chain = list(causes(exc))
    for cause in chain:
        failure = _tls_failure(cause, broker, security) or _sasl_failure(cause, broker, security)
        if failure is not None:
            return failure
    return _transport_failure(exc, chain, broker, security)


def _tls_failure(exc: BaseException, broker: str, security: KafkaSecurity) -> KafkaConnectionFailed | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = _scrub(str(exc.verify_message or exc.reason or exc), security)
        if exc.verify_code in HOSTNAME_MISMATCH_CODES:
            return KafkaTlsFailed(
                f"Kafka broker {broker}: its TLS certificate is not for this host ({detail}). Connect by a"
                f" name the certificate lists, or set {setting('ssl_check_hostname')}=false if the address"
                " cannot be changed",
                reason="tls_hostname",
                broker=broker,
            )
        trusted = f"the CA in {security.ssl_ca_file}" if security.ssl_ca_file else "the system's CAs"
        return KafkaTlsFailed(
            f"Kafka broker {broker}: its TLS certificate is not trusted by {trusted} ({detail}). Set"
            f" {setting('ssl_ca_file')} to the PEM file of the CA that signed the broker's certificate",
            reason="tls_untrusted",
            broker=broker,
        )
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = str(exc.reason or "")
    if ("ALERT" in reason and "CERTIFICATE" in reason) or reason.endswith("ALERT_UNKNOWN_CA"):
        presented = (
            f"the certificate {security.ssl_cert_file}"
            if security.ssl_cert_file
            else f"no client certificate ({setting('ssl_cert_file')} is unset)"
        )
        return KafkaTlsFailed(
            f"Kafka broker {broker}: the broker refused the TLS client identity ({reason}); the worker"
            f" presented {presented}. The listener requires mutual TLS with a certificate its CA issued",
            reason="tls_client_certificate",
            broker=broker,
        )
    if reason in NOT_TLS_REASONS:
        return _expects_plaintext(broker, reason, security)
    return None


def _sasl_failure(exc: BaseException, broker: str, security: KafkaSecurity) -> KafkaConnectionFailed | None:
    mechanism = security.sasl_mechanism
    if isinstance(exc, SaslAuthenticationFailed):
        who = f" as {security.sasl_username!r}" if security.sasl_username else ""
        said = _scrub(" ".join(str(arg) for arg in exc.args) or "no reason given", security)
        return KafkaAuthenticationFailed(
            f"Kafka broker {broker}: SASL {mechanism} authentication{who} failed (the broker said: {said})."
            f" Check {setting('sasl_username')} and {setting('sasl_password')}",
            reason="sasl_credentials",
            broker=broker,
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaAuthenticationFailed(
            f"Kafka broker {broker}: the listener does not enable SASL mechanism {mechanism}. Set"
            f" {setting('sasl_mechanism')} to one the cluster lists",
            reason="sasl_mechanism",
            broker=broker,
        )
    if isinstance(exc, IllegalSaslStateError):
        without_sasl = "SSL" if security.security_protocol.uses_tls else "PLAINTEXT"
        return KafkaProtocolMismatch(
            f"Kafka broker {broker}: the listener does not use SASL but {setting('security_protocol')}="
            f"{security.security_protocol}. Use {without_sasl}"
            " or the cluster's SASL listener",
            reason="listener_without_sasl",
            broker=broker,
        )
    return None


def _transport_failure(
    exc: BaseException, chain: list[BaseException], broker: str, security: KafkaSecurity
) -> KafkaConnectionFailed:
    protocol = f"{setting('security_protocol')}={security.security_protocol}"
    for cause in chain:
        if (
            isinstance(cause, asyncio.IncompleteReadError)
            and (cause.expected or 0) >> 16 in TLS_RECORD_PREFIXES
        ):
            return KafkaProtocolMismatch(
                f"Kafka broker {broker}: the listener speaks TLS but {protocol}. Use SSL or SASL_SSL",
                reason="listener_expects_tls",
                broker=broker,
            )
    if isinstance(exc, ConnectionResetError) and security.security_protocol.uses_tls:
        return _expects_plaintext(broker, "connection reset during the TLS handshake", security)
    if isinstance(exc, ConnectionRefusedError):
        return KafkaUnavailable(
            f"Kafka broker {broker}: connection refused (no broker listens there)",
            reason="refused",
            broker=broker,
        )
    if isinstance(exc, socket.gaierror):
        return KafkaUnavailable(
            f"Kafka broker {broker}: the host name does not resolve ({_scrub(str(exc), security)})",
            reason="unknown_host",
            broker=broker,
        )
    if isinstance(exc, TimeoutError):
        return KafkaUnavailable(
            f"Kafka broker {broker}: no answer in time (a firewall, a wrong port, or a broker too busy)",
            reason="timeout",
            broker=broker,
        )
    if isinstance(exc, KafkaConnectionError) and any(
        isinstance(cause, asyncio.IncompleteReadError) for cause in chain
    ):
        hint = "" if security.security_protocol.uses_sasl else f" ({protocol}: a SASL listener does this)"
        return KafkaUnavailable(
            f"Kafka broker {broker}: the broker closed the connection{hint}",
            reason="closed",
            broker=broker,
        )
    if isinstance(exc, KafkaConnectionError | OSError):
        return KafkaUnavailable(
            f"Kafka broker {broker}: {_scrub(str(exc) or type(exc).__name__, security)}",
            reason="network",
            broker=broker,
        )
    return KafkaConnectionFailed(
        f"Kafka broker {broker}: unexpected {type(exc).__name__} while connecting:"
        f" {_scrub(str(exc), security)}",
        reason="unexpected",
        broker=broker,
    )


def _expects_plaintext(broker: str, detail: str, security: KafkaSecurity) -> KafkaProtocolMismatch:
    return KafkaProtocolMismatch(
        f"Kafka broker {broker}: the listener does not speak TLS ({detail}) but"
        f" {setting('security_protocol')}={security.security_protocol}. Use PLAINTEXT or SASL_PLAINTEXT,"
        " or the cluster's TLS port",
        reason="listener_without_tls",
        broker=broker,
    )


def _scrub(text: str, security: KafkaSecurity) -> str:
    for value in security.secrets():
        text = text.replace(value, "<redacted>")
    return text[:300]
