"""``moderation-worker run`` waits for the cluster at start-up: it proceeds when the broker comes up late, and
exits 5 once ``MODERATION_KAFKA_STARTUP_TIMEOUT_S`` passes with no broker at all."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import produce_all
from tests.pipeline_harness import (
    Topics,
    ledger,
    make_submissions,
    wait_for_routed,
    wait_until,
    worker_environment,
    worker_process,
)
from worker.dev.broker import EmbeddedKafka, choose_free_ports, default_cache_root
from worker.dev.emulator.server import Emulator
from worker.runner import EXIT_OK

pytestmark = pytest.mark.integration

EXIT_KAFKA = 5


async def readiness_status(port: int) -> int:
    """The HTTP status of the worker's ``/readyz``."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as answer:
        return answer.status


async def test_the_worker_waits_for_a_broker_that_starts_late_then_routes_everything(
    topic_prefix: str, group_id: str, scripted_emulator: Emulator, tmp_path: Path
) -> None:
    """No broker at first: the worker logs each attempt and answers /readyz 503; once the broker is up it
    joins and routes every submission, then stops cleanly."""
    kafka_port, metrics_port = choose_free_ports(2)
    bootstrap = f"127.0.0.1:{kafka_port}"
    topics = Topics(topic_prefix)
    env = worker_environment(bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY) | {
        "MODERATION_KAFKA_STARTUP_TIMEOUT_S": "180",
        "MODERATION_METRICS_PORT": str(metrics_port),
    }
    log_path = tmp_path / "worker.log"
    async with worker_process(env, log_path) as process:
        await wait_until(lambda: log_path.read_text().count("kafka_unavailable") >= 2, timeout_s=60)
        assert 503 == await readiness_status(metrics_port)
        broker = EmbeddedKafka(tmp_path / "kafka", port=kafka_port, cache_dir=default_cache_root({}))
        async with broker:
            await topics.create(bootstrap, partitions=2)
            submissions = make_submissions(50, prefix="late")
            await produce_all(bootstrap, topics.input, submissions.records)
            await wait_for_routed(bootstrap, topics, len(submissions.records), timeout_s=120)
            process.send_signal(signal.SIGTERM)
            assert EXIT_OK == await asyncio.wait_for(process.wait(), timeout=60)
            seen = await ledger(bootstrap, topics, expected_total=len(submissions.records))
    assert {image_id: [route] for image_id, route in submissions.expected.items()} == seen
    assert "worker_started" in log_path.read_text()


async def test_with_no_broker_at_all_the_worker_exits_5_after_the_timeout(
    topic_prefix: str, group_id: str, emulator: Emulator, tmp_path: Path
) -> None:
    """Nothing ever listens: after ``MODERATION_KAFKA_STARTUP_TIMEOUT_S`` (3 s) exit 5, one line naming the
    refused broker, and at least one ``kafka_unavailable`` attempt logged before it."""
    [kafka_port] = choose_free_ports(1)
    env = worker_environment(
        f"127.0.0.1:{kafka_port}", Topics(topic_prefix), group_id, emulator.endpoint, TEST_KEY
    ) | {"MODERATION_KAFKA_STARTUP_TIMEOUT_S": "3"}
    log_path = tmp_path / "worker.log"
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with worker_process(env, log_path) as process:
        exit_code = await asyncio.wait_for(process.wait(), timeout=60)
    waited_s = loop.time() - started
    stderr = log_path.read_text()
    lines = [line for line in stderr.splitlines() if line.startswith("moderation-worker")]
    assert (EXIT_KAFKA, 1) == (exit_code, len(lines))
    expected = f"moderation-worker: cannot use Kafka: Kafka broker 127.0.0.1:{kafka_port}: connection refused"
    assert lines[0].startswith(expected)
    assert stderr.count("kafka_unavailable") >= 1
    assert waited_s >= 3.0
