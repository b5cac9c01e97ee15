"""What the embedded broker is told: its ports, ``server.properties``, log4j2 file, cluster id and JVM line.

Pure functions and constants, no process and no socket: ``worker.dev.broker`` writes these files and runs the
JVM. The listeners are rendered apart (``listener_properties``), so a client security mode is one change here.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Newest Kafka release verified with aiokafka 0.14 (acks=all, idempotence, transactions): see docs/broker.md.
DEFAULT_KAFKA_VERSION = "4.2.0"
DEFAULT_PORT = 9092
DEFAULT_DATA_DIR = Path(".cache/kafka-data")
HOST = "127.0.0.1"
NODE_ID = 1
# Serial GC and the C1 compiler alone start the JVM measurably faster and use less memory; a dev broker
# never runs long enough for C2's peak throughput to matter (docs/broker.md has the figures).
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


@dataclass(frozen=True)
class BrokerPorts:
    """The loopback ports of a broker: ``client`` (PLAINTEXT), ``controller`` (the KRaft quorum) and, for a
    secure broker, ``sasl_ssl`` (SCRAM-SHA-512 over TLS) and ``mtls`` (TLS with client certificates)."""

    client: int
    controller: int
    sasl_ssl: int | None = None
    mtls: int | None = None

    def all(self) -> list[int]:
        """Every port the broker listens on."""
        return [port for port in (self.client, self.controller, self.sasl_ssl, self.mtls) if port is not None]


@dataclass(frozen=True)
class BrokerTls:
    """The PEM files of a secure broker's listeners: its key store (key, then certificate) and the CA."""

    keystore_file: Path
    ca_file: Path


def plan_ports(
    client: int, controller: int, free_ports: Iterator[int], *, secure: bool = False
) -> BrokerPorts:
    """Replace each requested port that is 0 with the next of ``free_ports``; all must differ.

    ``secure`` adds the SASL_SSL and mutual-TLS ports, always taken from ``free_ports``.
    """
    ports = BrokerPorts(client or next(free_ports), controller or next(free_ports))
    if secure:
        ports = BrokerPorts(ports.client, ports.controller, next(free_ports), next(free_ports))
    if len(set(ports.all())) != len(ports.all()):
        raise ValueError(f"the broker's ports must differ, got {ports.all()}")
    return ports


def listener_properties(ports: BrokerPorts, tls: BrokerTls | None = None) -> dict[str, str]:
    """The listeners: PLAINTEXT clients on ``ports.client``, the KRaft quorum on ``ports.controller``.

    With ``tls`` (and both secure ports planned) two more client listeners: ``SASL_SSL`` on
    ``ports.sasl_ssl`` (SCRAM-SHA-512 only; the users are added when the storage is formatted) and ``MTLS``
    on ``ports.mtls`` (protocol SSL, a client certificate issued by the CA required). The controller and
    inter-broker traffic stay PLAINTEXT on the loopback.
    """
    listeners = {"PLAINTEXT": ("PLAINTEXT", ports.client)}
    if tls is not None:
        if ports.sasl_ssl is None or ports.mtls is None:
            raise ValueError("a secure broker needs its sasl_ssl and mtls ports planned")
        listeners |= {"SASL_SSL": ("SASL_SSL", ports.sasl_ssl), "MTLS": ("SSL", ports.mtls)}
    advertised = ",".join(f"{name}://{HOST}:{port}" for name, (_, port) in listeners.items())
    protocols = ",".join(f"{name}:{protocol}" for name, (protocol, _) in listeners.items())
    properties = {
        "listeners": f"{advertised},CONTROLLER://{HOST}:{ports.controller}",
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": f"{protocols},CONTROLLER:PLAINTEXT",
    }
    if tls is not None:
        properties |= _tls_properties(tls)
    return properties


def _tls_properties(tls: BrokerTls) -> dict[str, str]:
    return {
        # PEM files straight from worker.dev.tlsfiles: no JKS/PKCS12 conversion, no store password.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": _escaped(tls.keystore_file),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": _escaped(tls.ca_file),
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.mtls.ssl.client.auth": "required",
    }


def _escaped(path: Path) -> str:
    """A path as a ``.properties`` value (backslashes doubled)."""
    return str(path).replace("\\", "\\\\")


def render_server_properties(ports: BrokerPorts, log_dir: Path, tls: BrokerTls | None = None) -> str:
    """``server.properties`` of a combined broker+controller node that needs no replication.

    ``tls`` makes it a secure broker (``listener_properties``).
    """
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{ports.controller}",
        **listener_properties(ports, tls),
        "log.dirs": _escaped(log_dir),
        "num.partitions": "1",
        # One node: every internal topic must accept a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions than the default 50 make the first group and transaction faster.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        # Tests join a group once; the default 3 s delay would only slow every first poll.
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the controller refuses the restarted broker until the dead one's session expires
        # (9 s by default); 3 s still spans six heartbeats, so a busy machine does not fence a live broker.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
    }
    return "".join(f"{key}={value}\n" for key, value in properties.items())


def render_log4j2_config(log_file: Path) -> str:
    """A log4j2 configuration that appends the broker's INFO log to ``log_file``."""
    return (
        '<Configuration status="WARN">\n'
        f'  <Appenders><File name="file" fileName="{log_file}" append="true">'
        '<PatternLayout pattern="[%d] %p %m (%c)%n"/></File></Appenders>\n'
        '  <Loggers><Root level="INFO"><AppenderRef ref="file"/></Root></Loggers>\n'
        "</Configuration>\n"
    )


def new_cluster_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # the storage tool would read it as an option
            return cluster_id


def java_command(
    java: str, libs: Path, main_class: str, arguments: Sequence[str], heap_max_mb: int
) -> list[str]:
    """The command line of a JVM running ``main_class`` from every jar in ``libs``."""
    return [java, f"-Xmx{heap_max_mb}m", *JVM_OPTIONS, "-cp", str(libs / "*"), main_class, *arguments]
