"""The worker against the secure embedded broker: end to end over SASL_SSL and mutual TLS, and every wrong
credential stopping ``moderation-worker run`` with exit code 5 and one line naming the cause.

Topics are created and results read over the broker's PLAINTEXT listener (``secure_kafka.bootstrap_servers``);
only the worker under test connects securely.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.fixtures.tls import TlsFiles
from tests.kafka_helpers import produce_all
from tests.pipeline_harness import (
    Topics,
    ledger,
    make_submissions,
    wait_for_routed,
    worker_environment,
    worker_settings,
)
from worker.dev.broker import EmbeddedKafka
from worker.dev.emulator.server import Emulator
from worker.runner import EXIT_OK, run_worker

pytestmark = pytest.mark.integration

EXIT_KAFKA = 5


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    """This test's input and output topics."""
    return Topics(topic_prefix)


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset of each of the topic's two partitions (None: nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(2)}
    finally:
        await consumer.stop()


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
async def test_the_worker_routes_every_submission_over_a_secure_listener(
    listener: str, secure_kafka: EmbeddedKafka, topics: Topics, group_id: str, scripted_emulator: Emulator
) -> None:
    """Over SASL_SSL with SCRAM-SHA-512, and over mutual TLS: 300 submissions, each routed exactly once,
    produced with the default codec (zstd)."""
    plaintext = secure_kafka.bootstrap_servers
    await topics.create(plaintext, partitions=2)
    submissions = make_submissions(300, prefix=listener)
    await produce_all(plaintext, topics.input, submissions.records)
    connection = secure_kafka.client_environments()[listener]
    env = worker_environment(
        connection["MODERATION_BOOTSTRAP_SERVERS"], topics, group_id, scripted_emulator.endpoint, TEST_KEY
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(worker_settings(env | connection), stop=stop, registry=CollectorRegistry())
    )
    await wait_for_routed(plaintext, topics, len(submissions.records), timeout_s=120)
    stop.set()
    assert EXIT_OK == await worker

    seen = await ledger(plaintext, topics, expected_total=len(submissions.records))
    assert {image_id: [route] for image_id, route in submissions.expected.items()} == seen
    assert submissions.expected_counts() == Counter(route for routes in seen.values() for route in routes)


async def run_command(env: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    """``moderation-worker run`` (or ``arguments``) as a child process: exit code, stdout, stderr.

    Only for a command expected to exit by itself within a minute (its pipes are read at the end).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        *(arguments or ("run",)),
        env=dict(os.environ) | env | {"NO_PROXY": "127.0.0.1,localhost"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return int(process.returncode or 0), stdout.decode(), stderr.decode()


def _wrong_settings(case: str, broker: EmbeddedKafka, tls_files: TlsFiles) -> dict[str, str]:
    sasl = broker.client_environments()["sasl_ssl"]
    port = sasl["MODERATION_BOOTSTRAP_SERVERS"].rpartition(":")[2]
    changes = {
        "wrong_password": {"MODERATION_KAFKA_SASL_PASSWORD": "not-the-password-3141"},
        "unknown_user": {"MODERATION_KAFKA_SASL_USERNAME": "nobody-here"},
        "untrusted_ca": {"MODERATION_KAFKA_SSL_CA_FILE": str(tls_files.stranger.cert_file)},
        # The broker's certificate names 127.0.0.1 only; localhost reaches the same listener.
        "wrong_hostname": {"MODERATION_BOOTSTRAP_SERVERS": f"localhost:{port}"},
        "plaintext_on_tls": {
            "MODERATION_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "MODERATION_KAFKA_SASL_MECHANISM": "",
            "MODERATION_KAFKA_SASL_USERNAME": "",
            "MODERATION_KAFKA_SASL_PASSWORD": "",
            "MODERATION_KAFKA_SSL_CA_FILE": "",
        },
    }
    return sasl | changes[case]


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("wrong_password", "SASL SCRAM-SHA-512 authentication as 'moderation-worker' failed"),
        ("unknown_user", "SASL SCRAM-SHA-512 authentication as 'nobody-here' failed"),
        ("untrusted_ca", "is not trusted"),
        ("wrong_hostname", "its TLS certificate is not for this host"),
        ("plaintext_on_tls", "the listener speaks TLS but MODERATION_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ],
)
async def test_wrong_connection_settings_stop_run_with_exit_5_and_one_line_naming_the_cause(
    case: str,
    cause: str,
    secure_kafka: EmbeddedKafka,
    tls_files: TlsFiles,
    topics: Topics,
    group_id: str,
    emulator: Emulator,
) -> None:
    """Each refused setting: exit 5 at once (no start-up wait), one `moderation-worker:` line on stderr
    naming the cause, no traceback, the password nowhere in the output, nothing committed."""
    plaintext = secure_kafka.bootstrap_servers
    await topics.create(plaintext, partitions=2)
    await produce_all(plaintext, topics.input, make_submissions(4).records)
    settings = _wrong_settings(case, secure_kafka, tls_files)
    env = (
        worker_environment(
            settings["MODERATION_BOOTSTRAP_SERVERS"], topics, group_id, emulator.endpoint, TEST_KEY
        )
        | settings
        | {"MODERATION_KAFKA_STARTUP_TIMEOUT_S": "600"}
    )
    exit_code, stdout, stderr = await run_command(env)
    lines = [line for line in stderr.splitlines() if line.startswith("moderation-worker")]

    assert (EXIT_KAFKA, 1) == (exit_code, len(lines)), stderr
    assert lines[0].startswith("moderation-worker: cannot use Kafka: Kafka broker ")
    assert cause in lines[0]
    assert "Traceback" not in stderr
    passwords = [secure_kafka.secure_files.user.password, "not-the-password-3141"]
    assert [False, False] == [password in stdout + stderr for password in passwords]
    assert {0: None, 1: None} == await committed_offsets(plaintext, group_id, topics.input)
