"""Real-time intervention end to end: worker processes on the real broker and the emulator, driven by the
command line (pause / resume, policy apply / rollback / status), observed on the topics and the ops server."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import create_topics, produce_all, read_all, read_to_end
from tests.pipeline_harness import (
    IMAGE_HOST,
    Topics,
    duplicates,
    ledger,
    wait_for_routed,
    worker_environment,
    worker_process,
    worker_settings,
)
from worker.dev.emulator.server import Emulator
from worker.kafka.policy_channel import PolicyStatus, policy_status
from worker.policy_file import load_default_policy, load_policy
from worker.runner import EXIT_OK

pytestmark = pytest.mark.integration

#: approved.jpg (cat 0.97) is approved by the default policy and rejected by this one
STRICT_POLICY = {"schema": "policy.v1", "mode": "blocklist", "blocklist": {"cat": {"reject_at": 0.9}}}
SWITCH_S = 2.0


@dataclass(frozen=True)
class Cluster:
    """The test's topics and the environment of its replicas and commands."""

    topics: Topics
    env: dict[str, str]

    @property
    def control_topic(self) -> str:
        return self.env["MODERATION_CONTROL_TOPIC"]


@pytest.fixture
async def cluster(
    kafka_bootstrap: str, topic_prefix: str, group_id: str, scripted_emulator: Emulator
) -> Cluster:
    """Per-test topics (4 input partitions) and a compacted control topic of their own."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=4)
    control_topic = topic_prefix + "control"
    await create_topics(kafka_bootstrap, [control_topic], 1, configs={"cleanup.policy": "compact"})
    env = worker_environment(
        kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY, control_topic=control_topic
    )
    return Cluster(topics, env)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def replicas(
    cluster: Cluster, names: Sequence[str], log: Path, **extra: str
) -> AsyncIterator[dict[str, int]]:
    """``moderation-worker run`` processes named ``names``; yields their ops ports; SIGTERM at exit (0)."""
    ports = {name: _free_port() for name in names}
    async with AsyncExitStack() as stack:
        processes = [
            await stack.enter_async_context(
                worker_process(
                    cluster.env
                    | {"MODERATION_REPLICA_ID": name, "MODERATION_METRICS_PORT": str(ports[name])}
                    | {f"MODERATION_{key.upper()}": value for key, value in extra.items()},
                    log,
                )
            )
            for name in names
        ]
        yield ports
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(process.wait(), timeout=60) for process in processes]
        assert [EXIT_OK] * len(names) == codes


async def command(cluster: Cluster, *args: str) -> tuple[int, str]:
    """Run ``moderation-worker ARGS`` against the cluster; its exit code and stderr."""
    code, _, stderr = await command_output(cluster, *args)
    return code, stderr


async def command_output(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    """Run ``moderation-worker ARGS`` against the cluster; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        *args,
        env=dict(cluster.env) | {"NO_PROXY": "127.0.0.1,localhost"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def wait_for_status(
    cluster: Cluster, predicate: Callable[[PolicyStatus], bool], *, timeout_s: float = 60
) -> PolicyStatus:
    """Poll ``policy status`` (the replicas' own reports) until ``predicate`` holds."""
    settings = worker_settings(cluster.env)
    async with asyncio.timeout(timeout_s):
        while not predicate(status := await policy_status(settings)):  # noqa: ASYNC110 - a topic, no notification
            await asyncio.sleep(0.2)
    return status


def _all(status: PolicyStatus, names: Sequence[str], **fields: object) -> bool:
    by_id = {replica.replica_id: replica._asdict() for replica in status.replicas}
    return set(names) <= set(by_id) and all(by_id[n][k] == v for n in names for k, v in fields.items())


def _approved(prefix: str, count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    url = f"{IMAGE_HOST}/approved.jpg?sv=2024&sig=SECRET"
    ids = [f"{prefix}-{index:05d}" for index in range(start, start + count)]
    return [(i.encode(), orjson.dumps({"id": i, "image": {"url": url}})) for i in ids]


async def _committed(cluster: Cluster, partitions: int = 4) -> int:
    """Input offsets the group has committed, summed over partitions."""
    env = cluster.env
    consumer = AIOKafkaConsumer(
        bootstrap_servers=env["MODERATION_BOOTSTRAP_SERVERS"],
        group_id=env["MODERATION_GROUP_ID"],
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(cluster.topics.input, partition) for partition in range(partitions)]
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


def _lag(metrics: str) -> float:
    """The sum of ``moderation_consumer_lag_records`` over the partitions in a scrape."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "moderation_consumer_lag_records"
        for sample in family.samples
    )


async def _scrape(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def _results(records: Sequence[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in records]


async def _all_results(cluster: Cluster, bootstrap: str) -> list[dict[str, Any]]:
    routes = ("approved", "needs-review", "rejected")
    return [
        doc for route in routes for doc in _results(await read_to_end(bootstrap, cluster.topics.route(route)))
    ]


async def test_pause_stops_intake_on_every_replica_and_resume_drains_with_nothing_lost(
    cluster: Cluster, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """pause: both replicas stop intake (reported, gauged), stay ready and in the group, lag grows; a third
    started meanwhile stays paused; resume: every submission is routed exactly once, without duplicates."""
    async with replicas(cluster, ["r1", "r2"], tmp_path / "workers.log") as ports:
        await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2"], paused=False))
        await produce_all(kafka_bootstrap, cluster.topics.input, _approved("before", 100))
        await wait_for_routed(kafka_bootstrap, cluster.topics, 100, timeout_s=60)

        assert (0, "") == await command(cluster, "pause", "--reason", "incident 43", "--by", "oncall")
        await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2"], paused=True))
        await produce_all(kafka_bootstrap, cluster.topics.input, _approved("during", 100))
        # A replica started during the pause reads it from the control topic and stays paused too.
        async with replicas(cluster, ["r3"], tmp_path / "workers.log") as late:
            await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2", "r3"], paused=True))
            while_paused = await read_all(
                kafka_bootstrap, cluster.topics.route("approved"), expected=None, idle_s=3
            )
            scrapes = {
                name: (await _scrape(port, "/readyz"), await _scrape(port, "/metrics"))
                for name, port in (ports | late).items()
            }
            committed_while_paused = await _committed(cluster)

            assert (0, "") == await command(cluster, "resume", "--by", "oncall")
            await wait_for_routed(kafka_bootstrap, cluster.topics, 200, timeout_s=60)
            await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2", "r3"], paused=False))
    after_stop = await policy_status(worker_settings(cluster.env))

    seen = await ledger(kafka_bootstrap, cluster.topics, expected_total=200)
    assert 100 == len(while_paused)
    assert 100 == committed_while_paused  # the 100 submitted during the pause wait
    assert 100 == sum(_lag(metrics[1]) for _, metrics in scrapes.values())  # ... visible as lag
    for ready, metrics in scrapes.values():
        assert 200 == ready[0]
        assert "moderation_intake_paused 1.0" in metrics[1]
    assert () == after_stop.replicas  # a clean stop removes the replica's status
    assert ({f"during-{i:05d}" for i in range(100)} | {f"before-{i:05d}" for i in range(100)}) == set(seen)
    assert (0, {"approved"}) == (duplicates(seen), {route for routes in seen.values() for route in routes})


async def test_policy_apply_switches_every_replica_within_2_s_and_rollback_returns(
    cluster: Cluster,
    kafka_bootstrap: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Under a steady stream: after ``policy apply`` no approval under the old version is taken later than
    2 s after it; ``policy status`` lists both replicas under the new version; after ``rollback`` no
    result under the applied version is taken later than 2 s after it; each id is routed exactly once."""
    strict = tmp_path / "strict.json"
    strict.write_bytes(orjson.dumps(STRICT_POLICY))
    old, new = load_default_policy().version, load_policy(strict).version
    total = 2400
    async with replicas(cluster, ["r1", "r2"], tmp_path / "workers.log", quota_calls_per_s="150"):
        await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2"], policy_version=old))
        await produce_all(kafka_bootstrap, cluster.topics.input, _approved("img", total))
        await wait_for_routed(kafka_bootstrap, cluster.topics, 300, timeout_s=120)

        assert (0, "") == await command(cluster, "policy", "apply", str(strict), "--reason", "tighter")
        status = await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2"], policy_version=new))
        status_code, shown, _ = await command_output(cluster, "policy", "status", "--format", "json")
        await wait_for_routed(kafka_bootstrap, cluster.topics, 1400, timeout_s=120)

        assert (0, "") == await command(cluster, "policy", "rollback", "--by", "oncall")
        await wait_for_status(cluster, lambda status: _all(status, ["r1", "r2"], policy_version=old))
        await wait_for_routed(kafka_bootstrap, cluster.topics, total, timeout_s=120)
    results = await _all_results(cluster, kafka_bootstrap)
    # "After apply": from the moment the broker took the policy record (its timestamp, set at send).
    applied_at, rolled_back_at = [
        datetime.fromtimestamp(record.timestamp / 1000, UTC)
        for record in await read_to_end(kafka_bootstrap, cluster.control_topic)
        if record.key == b"policy"
    ]

    def analyzed(doc: Mapping[str, Any]) -> datetime:
        return datetime.fromisoformat(doc["analyzed_at"])

    switched, returned = (
        applied_at + timedelta(seconds=SWITCH_S),
        rolled_back_at + timedelta(seconds=SWITCH_S),
    )
    late_old = [d for d in results if d["policy_version"] == old and switched < analyzed(d) < rolled_back_at]
    late_new = [d for d in results if d["policy_version"] == new and analyzed(d) > returned]
    under_new = [d for d in results if d["policy_version"] == new]
    last_old = max(
        analyzed(d) for d in results if d["policy_version"] == old and analyzed(d) < rolled_back_at
    )
    first_new = min(analyzed(d) for d in under_new)
    for name, moment in (("last_old_after_apply_s", last_old), ("first_new_after_apply_s", first_new)):
        record_property(name, (moment - applied_at).total_seconds())  # reported, not asserted
    assert ([], []) == (late_old, late_new)
    assert {"rejected"} == {d["decision"] for d in under_new}
    assert 0 < len(under_new) < total
    assert (new, ["r1", "r2"]) == (
        status.applied.version,
        [replica.replica_id for replica in status.replicas],
    )
    assert [("applied", False)] * 2 == [
        (replica.policy_source, replica.paused) for replica in status.replicas
    ]
    listed = orjson.loads(shown)
    assert (0, new) == (status_code, listed["applied_policy_version"])
    assert [("r1", new, False), ("r2", new, False)] == [
        (row["replica_id"], row["policy_version"], row["stale"]) for row in listed["replicas"]
    ]
    assert total == len({d["id"] for d in results}) == len(results)


async def test_a_replica_started_after_apply_decides_its_first_record_under_the_applied_policy(
    cluster: Cluster, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With no replica running, ``policy apply``; a replica started then decides every record under it."""
    strict = tmp_path / "strict.json"
    strict.write_bytes(orjson.dumps(STRICT_POLICY))
    assert (0, "") == await command(cluster, "policy", "apply", str(strict))
    await produce_all(kafka_bootstrap, cluster.topics.input, _approved("late", 50))
    async with replicas(cluster, ["late"], tmp_path / "workers.log"):
        await wait_for_routed(kafka_bootstrap, cluster.topics, 50, timeout_s=60)
    results = await _all_results(cluster, kafka_bootstrap)
    assert [(load_policy(strict).version, "rejected")] * 50 == [
        (d["policy_version"], d["decision"]) for d in results
    ]


async def test_a_bad_policy_file_is_refused_with_exit_2_and_nothing_is_published(
    cluster: Cluster, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``policy apply`` of an invalid policy: one message naming the problem, exit 2, the topic untouched;
    ``policy rollback`` with nothing applied: exit 2 as well."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"schema": "policy.v1", "mode": "blocklist", "defaults": {"review_at": 3}}))
    code, stderr = await command(cluster, "policy", "apply", str(bad))
    rollback_code, rollback_stderr = await command(cluster, "policy", "rollback")
    assert (2, 1) == (code, len(stderr.splitlines()))
    assert "invalid policy" in stderr
    assert (2, "nothing to roll back") == (rollback_code, rollback_stderr.strip().rsplit(": ", 1)[-1])
    assert [] == await read_to_end(kafka_bootstrap, cluster.control_topic)
