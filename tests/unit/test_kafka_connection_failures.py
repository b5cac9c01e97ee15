"""classify_connection_failure on the exceptions aiokafka 0.14 raised against Apache Kafka 4.2 listeners.

Each exception below is built as aiokafka raised it in the session recorded in docs/kafka.md (type, message,
chained cause); the cases a PLAINTEXT broker and a local TLS listener can produce are also tested for real
in tests/integration/test_kafka_connection_failures.py.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
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
from worker.kafka.connection_failures import causes, classify_connection_failure
from worker.kafka.probe import bootstrap_addresses
from worker.kafka_settings import KafkaSecurity, SaslMechanism, SecurityProtocol, secret

BROKER = "broker-1.example.com:9093"
PASSWORD = "s3cr3t-Pa55"
SCRAM = KafkaSecurity(SecurityProtocol.SASL_SSL, SaslMechanism.SCRAM_SHA_512, "bob", secret(PASSWORD))
TLS = KafkaSecurity(SecurityProtocol.SSL, ssl_ca_file=Path("/etc/kafka/ca.pem"))
PLAINTEXT = KafkaSecurity()


def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` as if raised ``from inner``."""
    outer.__cause__ = inner
    return outer


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    """An ``SSLCertVerificationError`` as OpenSSL reports it from a handshake."""
    exc = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}"
    )
    exc.verify_code = code
    exc.verify_message = message
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    return exc


def ssl_error(reason: str) -> ssl.SSLError:
    """An ``ssl.SSLError`` with OpenSSL's ``reason``."""
    exc = ssl.SSLError(1, f"[SSL: {reason}] ({reason.lower()})")
    exc.reason = reason
    return exc


def classify(exc: BaseException, security: KafkaSecurity) -> KafkaConnectionFailed:
    """Classify ``exc`` raised while connecting to ``BROKER``."""
    return classify_connection_failure(exc, broker=BROKER, security=security)


def kind(failure: KafkaConnectionFailed) -> tuple[type[KafkaConnectionFailed], str]:
    """The failure's class and reason label."""
    return type(failure), failure.reason


def test_wrong_password_is_an_authentication_failure_that_never_shows_it() -> None:
    """SaslAuthenticationFailed names mechanism, user and settings; the password never appears."""
    exc = SaslAuthenticationFailed(
        "Authentication failed during authentication due to invalid credentials"
        " with SASL mechanism SCRAM-SHA-512"
    )
    failure = classify(exc, SCRAM)
    assert (KafkaAuthenticationFailed, "sasl_credentials") == kind(failure)
    assert (False, BROKER) == (failure.retryable, failure.broker)
    message = str(failure)
    assert message.startswith(f"Kafka broker {BROKER}: SASL SCRAM-SHA-512 authentication as 'bob' failed")
    assert "MODERATION_KAFKA_SASL_USERNAME and MODERATION_KAFKA_SASL_PASSWORD" in message
    assert PASSWORD not in message


def test_a_password_echoed_by_the_broker_is_scrubbed() -> None:
    """Should a broker quote the password back, the message carries ``<redacted>`` instead."""
    failure = classify(SaslAuthenticationFailed(f"bad password {PASSWORD}"), SCRAM)
    assert PASSWORD not in str(failure)
    assert "bad password <redacted>" in str(failure)


def test_a_mechanism_the_listener_lacks_is_an_authentication_failure() -> None:
    """UnsupportedSaslMechanismError: the message asks for a mechanism the cluster lists."""
    failure = classify(UnsupportedSaslMechanismError("<AIOKafkaConnection host=b port=9093>"), SCRAM)
    assert (KafkaAuthenticationFailed, "sasl_mechanism") == kind(failure)
    assert "does not enable SASL mechanism SCRAM-SHA-512" in str(failure)


def test_sasl_against_a_listener_without_sasl_is_a_protocol_mismatch() -> None:
    """IllegalSaslStateError: the listener does not do SASL; SSL is suggested for a TLS client."""
    failure = classify(IllegalSaslStateError("<AIOKafkaConnection host=b port=9093>"), SCRAM)
    assert (KafkaProtocolMismatch, "listener_without_sasl") == kind(failure)
    assert "Use SSL or the cluster's SASL listener" in str(failure)


def test_an_untrusted_certificate_names_the_ca_file() -> None:
    """Verification failing for the chain (not the name) is ``tls_untrusted``, naming the CA in use."""
    failure = classify(verify_error(20, "unable to get local issuer certificate"), TLS)
    assert (KafkaTlsFailed, "tls_untrusted") == kind(failure)
    assert "not trusted by the CA in /etc/kafka/ca.pem (unable to get local issuer certificate)" in str(
        failure
    )


def test_a_certificate_for_another_host_names_the_hostname_setting() -> None:
    """OpenSSL's hostname-mismatch code is ``tls_hostname``, naming MODERATION_KAFKA_SSL_CHECK_HOSTNAME."""
    failure = classify(verify_error(62, "Hostname mismatch, certificate is not valid for 'localhost'."), TLS)
    assert (KafkaTlsFailed, "tls_hostname") == kind(failure)
    assert "MODERATION_KAFKA_SSL_CHECK_HOSTNAME=false" in str(failure)


@pytest.mark.parametrize("reason", ["SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"])
def test_a_refused_client_certificate_is_a_tls_failure(reason: str) -> None:
    """The broker's certificate alert (Java: bad_certificate; OpenSSL: certificate_required) after connect."""
    exc = raised_from(KafkaConnectionError(f"Connection at {BROKER} closed"), ssl_error(reason))
    failure = classify(exc, TLS)
    assert (KafkaTlsFailed, "tls_client_certificate") == kind(failure)
    assert "no client certificate (MODERATION_KAFKA_SSL_CERT_FILE is unset)" in str(failure)


def test_plaintext_client_reading_a_tls_alert_is_a_protocol_mismatch() -> None:
    """A TLS record header read as a response length (0x15030300...) means the listener speaks TLS."""
    exc = raised_from(
        KafkaConnectionError(f"Connection at {BROKER} closed"),
        asyncio.IncompleteReadError(b"\x02\x02\x46", 352518912),
    )
    failure = classify(exc, PLAINTEXT)
    assert (KafkaProtocolMismatch, "listener_expects_tls") == kind(failure)
    assert "MODERATION_KAFKA_SECURITY_PROTOCOL=PLAINTEXT. Use SSL or SASL_SSL" in str(failure)


def test_tls_client_reset_by_a_plaintext_listener_is_a_protocol_mismatch() -> None:
    """Kafka resets a TLS ClientHello on a plaintext listener; a TLS client reads that as the mismatch."""
    failure = classify(ConnectionResetError(), TLS)
    assert (KafkaProtocolMismatch, "listener_without_tls") == kind(failure)


def test_a_non_tls_server_answering_a_tls_client_is_a_protocol_mismatch() -> None:
    """OpenSSL's WRONG_VERSION_NUMBER (a non-TLS answer to the ClientHello) is the same mismatch."""
    failure = classify(ssl_error("WRONG_VERSION_NUMBER"), TLS)
    assert (KafkaProtocolMismatch, "listener_without_tls") == kind(failure)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9092)"), "refused"),
        (socket.gaierror(-2, "Name or service not known"), "unknown_host"),
        (TimeoutError(), "timeout"),
        (
            raised_from(KafkaConnectionError("Connection closed"), asyncio.IncompleteReadError(b"", 4)),
            "closed",
        ),
        (KafkaConnectionError("Unable to bootstrap from [('b', 9093)]"), "network"),
    ],
)
def test_unreachable_brokers_are_unavailable_and_retryable(exc: BaseException, reason: str) -> None:
    """Refused, unknown host, timeout and dropped connections may heal: KafkaUnavailable, retryable."""
    failure = classify(exc, PLAINTEXT)
    assert (KafkaUnavailable, reason, True) == (*kind(failure), failure.retryable)


def test_a_closed_connection_without_sasl_hints_at_a_sasl_listener() -> None:
    """A SASL listener closes on the first non-SASL request: the message says so for a non-SASL client."""
    exc = raised_from(KafkaConnectionError("Connection closed"), asyncio.IncompleteReadError(b"", 4))
    assert "a SASL listener does this" in str(classify(exc, PLAINTEXT))
    assert "SASL listener" not in str(classify(exc, SCRAM))


def test_an_unexpected_exception_is_named_not_hidden() -> None:
    """An exception outside the table keeps its type in the message and is not called retryable."""
    failure = classify(AssertionError("gssapi library required"), PLAINTEXT)
    assert (KafkaConnectionFailed, "unexpected", False) == (*kind(failure), failure.retryable)
    assert "unexpected AssertionError while connecting: gssapi library required" in str(failure)


def test_an_already_classified_failure_is_returned_as_is() -> None:
    """A token provider's KafkaAuthenticationFailed passes through unchanged."""
    original = KafkaAuthenticationFailed("Entra ID issued no token", reason="oauth_token", broker="entra-id")
    assert original is classify(original, PLAINTEXT)


def test_causes_walks_each_exception_once_outermost_first() -> None:
    """The chain of ``raise ... from`` and implicit contexts, cycle-safe."""
    inner = ValueError("inner")
    middle = raised_from(KeyError("middle"), inner)
    outer = raised_from(RuntimeError("outer"), middle)
    inner.__context__ = outer  # a cycle, as exception chains can have
    assert [outer, middle, inner] == list(causes(outer))


def test_bootstrap_addresses_parse_ports_defaults_and_ipv6() -> None:
    """``host:port`` lists as aiokafka reads them: 9092 when no port is given, brackets around IPv6."""
    expected = [("a.example.com", 9093), ("b", 9092), ("::1", 9094), ("fe80::1", 9092)]
    assert expected == bootstrap_addresses(" a.example.com:9093, b,[::1]:9094,fe80::1 ,")


@pytest.mark.parametrize(
    ("bootstrap", "message"),
    [
        ("", "no bootstrap servers given"),
        (" , ", "no bootstrap servers given"),
        ("b:port", "no numeric port"),
    ],
)
def test_bootstrap_addresses_refuse_an_empty_list_or_a_bad_port(bootstrap: str, message: str) -> None:
    """Nothing to connect to, or a port that is no number, is a ValueError before any connection."""
    with pytest.raises(ValueError, match=message):
        bootstrap_addresses(bootstrap)
