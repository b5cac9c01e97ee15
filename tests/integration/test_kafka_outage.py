"""A broker outage under a running worker: readiness goes false and names Kafka, the worker keeps running,
and once the broker is back readiness returns and every submission is routed exactly once."""

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
    worker_environment,
    worker_process,
)
from worker.dev.broker import EmbeddedKafka, choose_free_ports, default_cache_root
from worker.dev.emulator.server import Emulator
from worker.runner import EXIT_OK

pytestmark = pytest.mark.integration


async def readiness(port: int) -> tuple[int, list[str], str]:
    """``/readyz``'s status and failed checks, and the ``moderation_kafka_reachable`` sample line."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/readyz") as answer:
            status, body = answer.status, await answer.json()
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            metrics = await answer.text()
    gauge = next(line for line in metrics.splitlines() if line.startswith("moderation_kafka_reachable "))
    return status, list(body["failed"]), gauge


async def until_readiness(port: int, expected: tuple[int, list[str], str], timeout_s: float) -> None:
    """Poll ``/readyz`` until it answers ``expected`` (AssertionError with the last answer after the time)."""
    last = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        last = await readiness(port)
        if last == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"readiness stayed {last}, expected {expected}")


async def test_an_outage_turns_readiness_false_and_the_worker_resumes_with_nothing_lost(
    topic_prefix: str, group_id: str, scripted_emulator: Emulator, tmp_path: Path
) -> None:
    """Route 40, SIGKILL the broker: /readyz 503 naming kafka_reachable, gauge 0, the worker still running;
    restart the broker: ready again, gauge 1; 40 more are routed; each of the 80 ids exactly once."""
    kafka_port, metrics_port = choose_free_ports(2)
    bootstrap = f"127.0.0.1:{kafka_port}"
    topics = Topics(topic_prefix)
    env = worker_environment(bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY) | {
        "MODERATION_METRICS_PORT": str(metrics_port),
        "MODERATION_KAFKA_PROBE_INTERVAL_S": "1",
    }
    broker = EmbeddedKafka(tmp_path / "kafka", port=kafka_port, cache_dir=default_cache_root({}))
    before, after = make_submissions(40, prefix="before"), make_submissions(40, prefix="after")
    log_path = tmp_path / "worker.log"
    async with broker:
        await topics.create(bootstrap, partitions=2)
        async with worker_process(env, log_path) as process:
            await produce_all(bootstrap, topics.input, before.records)
            await wait_for_routed(bootstrap, topics, len(before.records), timeout_s=120)
            await until_readiness(metrics_port, (200, [], "moderation_kafka_reachable 1.0"), timeout_s=30)

            await broker.kill()
            await until_readiness(
                metrics_port, (503, ["kafka_reachable"], "moderation_kafka_reachable 0.0"), timeout_s=30
            )
            assert process.returncode is None

            await broker.start()
            await until_readiness(metrics_port, (200, [], "moderation_kafka_reachable 1.0"), timeout_s=90)
            await produce_all(bootstrap, topics.input, after.records)
            total = len(before.records) + len(after.records)
            await wait_for_routed(bootstrap, topics, total, timeout_s=120)
            process.send_signal(signal.SIGTERM)
            assert EXIT_OK == await asyncio.wait_for(process.wait(), timeout=60)
            seen = await ledger(bootstrap, topics, expected_total=total)

    expected = before.expected | after.expected
    assert {image_id: [route] for image_id, route in expected.items()} == seen
    log = log_path.read_text()
    assert (1, 1) == (log.count('"kafka_unreachable"'), log.count('"kafka_reachable"'))
