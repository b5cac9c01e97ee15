"""The embedded Apache Kafka: records round-trip, acknowledged records survive SIGKILL, a stop is clean."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.fixtures.kafka import NewTopics
from tests.kafka_helpers import create_topics, produce_all, read_to_end
from worker.dev.broker import BrokerStartError, EmbeddedKafka, choose_free_ports, default_cache_root

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[EmbeddedKafka]:
    """A broker of this test alone (own data folder and ports), for tests that stop or kill it."""
    async with EmbeddedKafka(tmp_path / "broker", cache_dir=default_cache_root(os.environ)) as broker:
        yield broker


async def test_records_round_trip_through_the_session_broker(
    kafka_bootstrap: str, new_topics: NewTopics
) -> None:
    """Every record produced with acks=all is read back with its key and value."""
    [topic] = await new_topics("round-trip", partitions=3)
    sent = [(f"key-{index}".encode(), f"value-{index}".encode()) for index in range(300)]

    await produce_all(kafka_bootstrap, topic, sent)
    received = await read_to_end(kafka_bootstrap, topic)

    assert sorted(sent) == sorted((record.key, record.value) for record in received)


async def test_acknowledged_records_survive_sigkill_and_restart(own_broker: EmbeddedKafka) -> None:
    """After SIGKILL and a restart on the same data folder, each acknowledged record is at its offset."""
    topic = "survivors"
    await create_topics(own_broker.bootstrap_servers, [topic], partitions=3)
    sent = [(f"key-{index}".encode(), f"value-{index}".encode()) for index in range(1000)]
    acknowledged = await produce_all(own_broker.bootstrap_servers, topic, sent)
    bootstrap_before = own_broker.bootstrap_servers

    await own_broker.kill()
    killed_without_clean_shutdown = not own_broker.clean_shutdown_recorded
    await own_broker.restart()
    received = await read_to_end(own_broker.bootstrap_servers, topic)

    expected = sorted(
        (ack.partition, ack.offset, key, value) for ack, (key, value) in zip(acknowledged, sent, strict=True)
    )
    actual = [(record.partition, record.offset, record.key, record.value) for record in received]
    assert killed_without_clean_shutdown
    assert bootstrap_before == own_broker.bootstrap_servers
    assert expected == actual


async def test_sigterm_stop_is_clean_and_a_committed_offset_survives_restart(
    own_broker: EmbeddedKafka,
) -> None:
    """stop() sends SIGTERM, Kafka records a clean shutdown, and the group's committed offset is kept."""
    bootstrap = own_broker.bootstrap_servers
    partition = TopicPartition("orders", 0)
    await create_topics(bootstrap, [partition.topic])
    await produce_all(bootstrap, partition.topic, [(None, b"%d" % index) for index in range(10)])
    expected_committed = 7
    await _commit(bootstrap, "billing", partition, offset=expected_committed)

    await own_broker.stop()
    stopped_cleanly = own_broker.clean_shutdown_recorded and not own_broker.running
    await own_broker.start()
    committed = await _committed_once_loaded(bootstrap, "billing", partition)

    assert stopped_cleanly
    assert expected_committed == committed


async def test_start_fails_with_the_log_tail_when_the_broker_exits(tmp_path: Path) -> None:
    """A broker that dies during start-up raises BrokerStartError carrying its log, and leaves no process."""
    broker = EmbeddedKafka(tmp_path / "broker", cache_dir=default_cache_root(os.environ))
    (broker.log_dir).mkdir(parents=True)
    # A log directory that claims to be formatted but holds no valid identity makes Kafka exit at once.
    (broker.log_dir / "meta.properties").write_text("version=1\nnode.id=not-a-number\n")

    with pytest.raises(BrokerStartError) as raised:
        await broker.start()

    assert "meta.properties" in raised.value.log_tail
    assert not broker.running


async def test_cli_prints_the_bootstrap_address_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    """`moderation-worker dev broker` announces readiness, then stops cleanly on SIGTERM with exit code 0."""
    [port] = choose_free_ports(1)
    data_dir = tmp_path / "cli-broker"
    process = await asyncio.create_subprocess_exec(
        *(
            sys.executable,
            "-m",
            "worker.cli",
            "dev",
            "broker",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready_line = (await asyncio.wait_for(process.stdout.readline(), timeout=120)).decode().strip()
        process.terminate()
        exit_code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert f"broker ready bootstrap=127.0.0.1:{port}" == ready_line
    assert exit_code == 0
    assert EmbeddedKafka(data_dir).clean_shutdown_recorded


async def test_cli_exits_non_zero_with_a_clear_message_without_java(tmp_path: Path) -> None:
    """Without Java on PATH the command fails at once, saying that Java is missing."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "worker.cli", "dev", "broker", "--data-dir", str(tmp_path / "d")),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 1
    assert "Java 17+ ('java') is not on PATH" in stderr.decode()


async def _commit(bootstrap: str, group_id: str, partition: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


async def _committed_once_loaded(
    bootstrap: str, group_id: str, partition: TopicPartition, timeout_s: float = 30.0
) -> int | None:
    """The committed offset as seen once the restarted broker has loaded its offsets topic.

    Right after a restart the group coordinator may still be loading ``__consumer_offsets`` and answer with
    no offset; a lost commit stays ``None`` until ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (committed := await _committed(bootstrap, group_id, partition)) is None and loop.time() < deadline:  # noqa: ASYNC110 - polling the broker
        await asyncio.sleep(0.5)
    return committed


async def _committed(bootstrap: str, group_id: str, partition: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        committed: int | None = await consumer.committed(partition)
    finally:
        await consumer.stop()
    return committed
