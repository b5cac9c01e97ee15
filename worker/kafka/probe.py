"""Connect to the bootstrap brokers once, as aiokafka's clients do, and say plainly why that fails.

aiokafka's clients log each broker's failure and raise ``KafkaConnectionError("Unable to bootstrap ...")``
with no cause attached, so a wrong password and a stopped broker look alike to their caller. Running
``probe_bootstrap`` before the clients start (or after one failed to) turns the cause into the worker's
exception (``worker.kafka.connection_failures``) at the cost of one connection.
"""

from __future__ import annotations

import asyncio

from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from worker.errors import KafkaConnectionFailed
from worker.kafka.connection_failures import classify_connection_failure
from worker.kafka.security import ConnectionOptions
from worker.kafka_settings import KafkaSecurity

DEFAULT_PORT = 9092
DEFAULT_PROBE_TIMEOUT_S = 10.0


def bootstrap_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """``"a:9093,b,[::1]:9092"`` -> ``[("a", 9093), ("b", 9092), ("::1", 9092)]``; the port defaults to 9092.

    Raises ``ValueError`` for an empty list or a port that is not a number.
    """
    addresses: list[tuple[str, int]] = []
    for entry in (item.strip() for item in bootstrap_servers.split(",")):
        if not entry:
            continue
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":") or str(DEFAULT_PORT)
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        else:
            host, port = entry, str(DEFAULT_PORT)
        if not port.isdigit():
            raise ValueError(f"bootstrap server {entry!r} has no numeric port")
        addresses.append((host, int(port)))
    if not addresses:
        raise ValueError("no bootstrap servers given")
    return addresses


async def probe_bootstrap(
    bootstrap_servers: str,
    security: KafkaSecurity,
    options: ConnectionOptions,
    *,
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
) -> str:
    """Return the first broker (``host:port``) that completes TLS, SASL and a metadata request.

    Tries each bootstrap broker in turn, each for at most ``timeout_s`` seconds. When none answers, raises
    the classified failure (``KafkaConnectionFailed`` family) of the broker that failed most tellingly: a
    setting the cluster refuses (credentials, certificate, protocol) outranks an unreachable broker.
    """
    failures: list[tuple[KafkaConnectionFailed, Exception]] = []
    for host, port in bootstrap_addresses(bootstrap_servers):
        broker = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout_s):
                await _connect_and_ask_metadata(host, port, options, timeout_s)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none is lost
            failures.append((classify_connection_failure(exc, broker=broker, security=security), exc))
        else:
            return broker
    failure, cause = min(failures, key=lambda pair: pair[0].retryable)
    raise failure from cause


async def _connect_and_ask_metadata(
    host: str, port: int, options: ConnectionOptions, timeout_s: float
) -> None:
    connection = await create_conn(
        host,
        port,
        client_id="moderation-worker-probe",
        request_timeout_ms=int(timeout_s * 1000),
        **options.client_kwargs(),
    )
    try:
        # A listener that requires SASL still answers ApiVersions; the metadata request is what it refuses.
        await connection.send(MetadataRequest([]))
    finally:
        connection.close()
