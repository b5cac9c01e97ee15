"""probe_bootstrap against real listeners: the run's broker, a TLS front to it, and closed ports.

The run's broker has a PLAINTEXT listener only. TLS is tested through ``tls_front``: a TLS listener
(Python's ``ssl``, certificates from ``worker.dev.tlsfiles``) relaying bytes to that broker, so a client
that passes the TLS checks completes ApiVersions and Metadata with real Kafka behind it. SASL failures
need a SASL listener; their classification is tested in tests/unit/test_kafka_connection_failures.py with
the exceptions aiokafka raised against one (docs/kafka.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fixtures.tls import TlsFiles
from worker.dev.tlsfiles import Certificate
from worker.errors import KafkaConnectionFailed, KafkaProtocolMismatch, KafkaTlsFailed, KafkaUnavailable
from worker.kafka.probe import probe_bootstrap
from worker.kafka.security import connection_options
from worker.kafka_settings import KafkaSecurity, SaslMechanism, SecurityProtocol, secret

pytestmark = pytest.mark.integration

#: what Java's TLS stack (Kafka's SSL listeners) answers to a plaintext Kafka request: a fatal TLS alert
JSSE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0A])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _TlsFront(socketserver.ThreadingTCPServer):
    """Accepts TLS on 127.0.0.1 and relays each connection to ``upstream`` in a thread of its own.

    Blocking ``ssl`` sockets, not asyncio: asyncio drops the alert OpenSSL sends when a handshake fails,
    and the client under test must receive it as it would from a broker.
    """

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.context = context
        self.upstream = upstream


class _Relay(socketserver.BaseRequestHandler):
    server: _TlsFront

    def handle(self) -> None:
        client = self.server.context.wrap_socket(
            self.request, server_side=True, do_handshake_on_connect=False
        )
        try:
            client.do_handshake()
        except (ssl.SSLError, OSError):
            with socket.socket(fileno=client.detach()) as plain:
                _close_gracefully(plain)
            return
        with client, socket.create_connection(self.server.upstream) as broker:
            _relay_until_closed(client, broker)


def _close_gracefully(sock: socket.socket) -> None:
    """Close after the client has read OpenSSL's alert: unread client bytes at close would reset it away."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        while sock.recv(65536):
            pass


def _relay_until_closed(client: ssl.SSLSocket, broker: socket.socket) -> None:
    peers = {client: broker, broker: client}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 30)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                # TLS may have decrypted more than one recv returned: forward it before waiting again.
                while isinstance(source, ssl.SSLSocket) and source.pending():
                    data += source.recv(source.pending())
                peers[source].sendall(data)
    except (ssl.SSLError, OSError):
        return


@asynccontextmanager
async def tls_front(
    upstream: str, certificate: Certificate, *, client_ca: Path | None = None
) -> AsyncIterator[str]:
    """A TLS listener presenting ``certificate`` that relays to ``upstream``; yields its ``host:port``.

    With ``client_ca`` it requires a client certificate issued by that CA (mutual TLS).
    """
    context = certificate.server_context()
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    host, _, port = upstream.rpartition(":")
    front = _TlsFront(context, (host, int(port)))
    serving = threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        yield f"127.0.0.1:{front.server_address[1]}"
    finally:
        await asyncio.to_thread(front.shutdown)
        front.server_close()
        serving.join()


@asynccontextmanager
async def tls_alerting_listener() -> AsyncIterator[str]:
    """A listener answering any bytes with ``JSSE_ALERT`` and closing, as a Kafka SSL listener does."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(JSSE_ALERT)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def probe(bootstrap: str, security: KafkaSecurity) -> str:
    """``probe_bootstrap`` with the options ``security`` builds and a short timeout."""
    return await probe_bootstrap(bootstrap, security, connection_options(security), timeout_s=10)


async def failure_of(bootstrap: str, security: KafkaSecurity) -> KafkaConnectionFailed:
    """The classified failure the probe raises (the test fails if it connects)."""
    with pytest.raises(KafkaConnectionFailed) as raised:
        await probe(bootstrap, security)
    return raised.value


def tls(tls_files: TlsFiles, **fields: object) -> KafkaSecurity:
    """SSL trusting the test CA, plus ``fields``."""
    return KafkaSecurity(SecurityProtocol.SSL, ssl_ca_file=tls_files.ca, **fields)  # type: ignore[arg-type]


def mutual_tls(tls_files: TlsFiles) -> KafkaSecurity:
    """SSL presenting the test client certificate with its encrypted key."""
    return tls(
        tls_files,
        ssl_cert_file=tls_files.client.cert_file,
        ssl_key_file=tls_files.client.key_file,
        ssl_key_password=secret(tls_files.client_key_password),
    )


async def test_plaintext_probe_of_the_running_broker_answers(kafka_bootstrap: str) -> None:
    """The default security reaches the run's PLAINTEXT broker: the probe names the broker that answered."""
    assert kafka_bootstrap.split(",", maxsplit=1)[0] == await probe(kafka_bootstrap, KafkaSecurity())


async def test_no_broker_listening_is_unavailable_and_retryable() -> None:
    """A closed port is KafkaUnavailable ``refused``: retrying later may succeed."""
    broker = f"127.0.0.1:{closed_port()}"
    failure = await failure_of(broker, KafkaSecurity())
    assert (KafkaUnavailable, "refused", broker, True) == (
        type(failure),
        failure.reason,
        failure.broker,
        failure.retryable,
    )


async def test_a_refusing_broker_outranks_an_unreachable_one(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """With one broker down and one refusing TLS, the probe reports the setting to fix, not the outage."""
    bootstrap = f"127.0.0.1:{closed_port()},{kafka_bootstrap}"
    failure = await failure_of(bootstrap, tls(tls_files))
    assert (KafkaProtocolMismatch, "listener_without_tls") == (type(failure), failure.reason)


async def test_tls_client_on_the_plaintext_broker_is_a_protocol_mismatch(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """Kafka resets a TLS handshake on its PLAINTEXT listener: reported as a listener without TLS."""
    failure = await failure_of(kafka_bootstrap, tls(tls_files))
    assert (KafkaProtocolMismatch, "listener_without_tls") == (type(failure), failure.reason)
    assert "MODERATION_KAFKA_SECURITY_PROTOCOL=SSL" in str(failure)


async def test_sasl_client_on_the_plaintext_broker_is_a_protocol_mismatch(kafka_bootstrap: str) -> None:
    """Kafka refuses the SASL handshake on a listener without SASL; the password is never shown."""
    security = KafkaSecurity(SecurityProtocol.SASL_PLAINTEXT, SaslMechanism.PLAIN, "alice", secret("hunter2"))
    failure = await failure_of(kafka_bootstrap, security)
    assert (KafkaProtocolMismatch, "listener_without_sasl") == (type(failure), failure.reason)
    assert "hunter2" not in str(failure)


async def test_plaintext_client_on_a_tls_listener_is_a_protocol_mismatch() -> None:
    """A TLS alert read as a Kafka response says the listener speaks TLS: use SSL or SASL_SSL."""
    async with tls_alerting_listener() as listener:
        failure = await failure_of(listener, KafkaSecurity())
    assert (KafkaProtocolMismatch, "listener_expects_tls") == (type(failure), failure.reason)


async def test_tls_through_a_front_reaches_the_broker(kafka_bootstrap: str, tls_files: TlsFiles) -> None:
    """The builder's TLS context trusts the CA file and checks the IP name: Kafka answers behind TLS."""
    async with tls_front(kafka_bootstrap, tls_files.broker) as front:
        assert front == await probe(front, tls(tls_files))


async def test_a_certificate_from_an_untrusted_ca_is_a_tls_failure(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """A self-signed broker certificate the CA file does not vouch for: ``tls_untrusted``, naming the CA."""
    async with tls_front(kafka_bootstrap, tls_files.stranger) as front:
        failure = await failure_of(front, tls(tls_files))
    assert (KafkaTlsFailed, "tls_untrusted") == (type(failure), failure.reason)
    assert str(tls_files.ca) in str(failure)


async def test_a_certificate_for_another_host_is_a_tls_failure_unless_the_check_is_off(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """A trusted certificate for another name fails the host check; with the check off it connects."""
    async with tls_front(kafka_bootstrap, tls_files.other_host) as front:
        failure = await failure_of(front, tls(tls_files))
        unchecked = await probe(front, tls(tls_files, ssl_check_hostname=False))
    assert (KafkaTlsFailed, "tls_hostname") == (type(failure), failure.reason)
    assert front == unchecked


async def test_mutual_tls_with_the_client_certificate_reaches_the_broker(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """A listener requiring client certificates accepts the encrypted-key identity the builder loads."""
    async with tls_front(kafka_bootstrap, tls_files.broker, client_ca=tls_files.ca) as front:
        assert front == await probe(front, mutual_tls(tls_files))


async def test_mutual_tls_without_a_client_certificate_is_a_tls_failure(
    kafka_bootstrap: str, tls_files: TlsFiles
) -> None:
    """Without a client certificate the listener's alert is reported as ``tls_client_certificate``."""
    async with tls_front(kafka_bootstrap, tls_files.broker, client_ca=tls_files.ca) as front:
        failure = await failure_of(front, tls(tls_files))
    assert (KafkaTlsFailed, "tls_client_certificate") == (type(failure), failure.reason)
    assert "MODERATION_KAFKA_SSL_CERT_FILE is unset" in str(failure)
