"""End to end on the real broker and the real SDK against the emulator: every input ends in one route."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import produce_all, read_all
from tests.pipeline_harness import (
    IMAGE_HOST,
    Topics,
    duplicates,
    ledger,
    make_submissions,
    wait_for_routed,
    worker_environment,
    worker_process,
    worker_settings,
)
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator, EmulatorConfig
from worker.domain import Analysis, Tag
from worker.runner import EXIT_FATAL, EXIT_OK, run_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    """This test's input and output topics."""
    return Topics(topic_prefix)


async def committed_offsets(
    bootstrap: str, group_id: str, topic: str, partitions: int
) -> dict[int, int | None]:
    """The group's committed offset of each partition of ``topic`` (None: nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def test_ledger_every_submission_lands_in_exactly_one_route(
    kafka_bootstrap: str,
    topics: Topics,
    group_id: str,
    scripted_emulator: Emulator,
    record_property: Callable[[str, object], None],
) -> None:
    """5,000 submissions (6.25 % malformed): each id is routed once, per-route counts match the fixtures."""
    await topics.create(kafka_bootstrap, partitions=3)
    submissions = make_submissions(5000)
    await produce_all(kafka_bootstrap, topics.input, submissions.records)
    env = worker_environment(kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY)
    stop = asyncio.Event()
    started = time.monotonic()
    worker = asyncio.create_task(run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry()))
    await wait_for_routed(kafka_bootstrap, topics, len(submissions.records), timeout_s=240)
    elapsed_s = time.monotonic() - started
    stop.set()
    assert await worker == EXIT_OK

    seen = await ledger(kafka_bootstrap, topics, expected_total=len(submissions.records))
    assert set(submissions.expected) == set(seen)
    assert {image_id: [route] for image_id, route in submissions.expected.items()} == seen
    assert submissions.expected_counts() == Counter(route for routes in seen.values() for route in routes)
    assert submissions.expected_counts()["dead-letter"] >= 0.05 * len(submissions.records)
    committed = await committed_offsets(kafka_bootstrap, group_id, topics.input, 3)
    assert sum(offset or 0 for offset in committed.values()) == len(submissions.records)
    record_property("throughput_per_s", round(len(submissions.records) / elapsed_s, 1))


async def test_results_carry_provenance_and_never_the_sas_token(
    kafka_bootstrap: str, topics: Topics, group_id: str, scripted_emulator: Emulator
) -> None:
    """A routed result names policy, model and source coordinates; its URL has no query string."""
    await topics.create(kafka_bootstrap, partitions=1)
    submission = {"id": "one", "image": {"url": f"{IMAGE_HOST}/rejected.jpg?sig=TOPSECRET"}}
    await produce_all(kafka_bootstrap, topics.input, [(b"one", orjson.dumps(submission))])
    env = worker_environment(kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry()))
    [record] = await read_all(kafka_bootstrap, topics.route("rejected"), expected=1, idle_s=30)
    stop.set()
    assert await worker == EXIT_OK

    result = orjson.loads(record.value)
    headers = dict(record.headers)
    assert (b"one", "rejected") == (record.key, result["decision"])
    assert {"topic": topics.input, "partition": 0, "offset": 0} == result["source"]
    assert result["policy_version"].encode() == headers["moderation-policy-version"]
    assert "2023-10-01" == result["model_version"]
    assert [{"rule": "blocklist_reject", "tag": "weapon", "confidence": 0.95}] == result["reasons"]
    assert b"TOPSECRET" not in record.value
    assert f"{IMAGE_HOST}/rejected.jpg?<redacted>" == result["image"]["url"]


async def test_transient_faults_delay_results_but_lose_none(
    kafka_bootstrap: str, topics: Topics, group_id: str
) -> None:
    """429 with Retry-After, 503 and a hanging response are retried until every id is routed."""
    faults = {
        f"{IMAGE_HOST}/throttled.jpg": [
            {"status": 429, "headers": {"Retry-After": "1"}},
            {"tags": [["cat", 0.9]]},
        ],
        f"{IMAGE_HOST}/flaky.jpg": [{"status": 503}, {"status": 503}, {"tags": [["weapon", 0.99]]}],
        f"{IMAGE_HOST}/slow.jpg": [{"hang": True}, {"tags": [["knife", 0.8]]}],
    }
    config = EmulatorConfig(key=TEST_KEY, fixtures=parse_fixtures(faults))
    await topics.create(kafka_bootstrap, partitions=2)
    records = [
        (
            f"id-{kind}".encode(),
            orjson.dumps({"id": f"id-{kind}", "image": {"url": f"{IMAGE_HOST}/{kind}.jpg"}}),
        )
        for kind in ("throttled", "flaky", "slow")
    ]
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        await produce_all(kafka_bootstrap, topics.input, records)
        env = worker_environment(
            kafka_bootstrap, topics, group_id, emulator.endpoint, TEST_KEY, analyzer_timeout_s="1"
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry())
        )
        await wait_for_routed(kafka_bootstrap, topics, 3, timeout_s=60)
        stop.set()
        assert await worker == EXIT_OK
        calls = emulator.stats.by_status

    seen = await ledger(kafka_bootstrap, topics, expected_total=3)
    expected = {"id-throttled": ["approved"], "id-flaky": ["rejected"], "id-slow": ["needs-review"]}
    assert expected == seen
    assert calls.get(429, 0) >= 1
    assert calls.get(503, 0) >= 2


@pytest.mark.parametrize("fault", ["wrong_key", "wrong_endpoint"])
async def test_wrong_credentials_stop_the_worker_without_committing(
    kafka_bootstrap: str,
    topics: Topics,
    group_id: str,
    scripted_emulator: Emulator,
    fault: str,
    tmp_path: Path,
) -> None:
    """A wrong key (401) or endpoint (404): exit code 3 within seconds, message names the cause, no commit."""
    await topics.create(kafka_bootstrap, partitions=2)
    await produce_all(kafka_bootstrap, topics.input, make_submissions(50).records)
    endpoint = scripted_emulator.endpoint + ("/wrong-prefix" if fault == "wrong_endpoint" else "")
    key = "not-the-key" if fault == "wrong_key" else TEST_KEY
    env = worker_environment(kafka_bootstrap, topics, group_id, endpoint, key)
    started = time.monotonic()
    log_path = tmp_path / "worker.log"
    async with worker_process(env, log_path) as process:
        exit_code = await asyncio.wait_for(process.wait(), timeout=60)
    elapsed_s = time.monotonic() - started
    stderr = log_path.read_text()

    assert EXIT_FATAL == exit_code
    assert elapsed_s < 30
    expected_word = "access denied (401)" if fault == "wrong_key" else "not found (404)"
    assert expected_word in stderr
    assert "not-the-key" not in stderr
    assert {0: None, 1: None} == await committed_offsets(kafka_bootstrap, group_id, topics.input, 2)


async def test_worker_killed_twice_mid_stream_loses_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    group_id: str,
    scripted_emulator: Emulator,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """SIGKILL twice while routing, then a clean run: every id is routed; duplicates are counted, not lost."""
    total = 1500
    await topics.create(kafka_bootstrap, partitions=3)
    submissions = make_submissions(total)
    await produce_all(kafka_bootstrap, topics.input, submissions.records)
    env = worker_environment(kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY)
    for kill_after in (total // 4, total // 2):
        async with worker_process(env, tmp_path / "worker.log") as process:
            await wait_for_routed(kafka_bootstrap, topics, kill_after, timeout_s=120)
            process.send_signal(signal.SIGKILL)
            await process.wait()
    async with worker_process(env, tmp_path / "worker.log") as process:
        await wait_for_routed(kafka_bootstrap, topics, total, timeout_s=180)
        await _settle_commits(kafka_bootstrap, group_id, topics, total)
        process.send_signal(signal.SIGTERM)
        assert EXIT_OK == await asyncio.wait_for(process.wait(), timeout=60)

    seen = await ledger(kafka_bootstrap, topics, expected_total=total)
    assert set(submissions.expected) == set(seen)
    assert all(set(routes) == {submissions.expected[image_id]} for image_id, routes in seen.items())
    record_property("duplicates_after_kills", duplicates(seen))  # at-least-once allows them; reported


async def test_sigterm_under_load_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, topics: Topics, group_id: str, scripted_emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM mid-stream drains and commits; a second worker finishes the rest without a single duplicate."""
    total = 1500
    await topics.create(kafka_bootstrap, partitions=3)
    submissions = make_submissions(total)
    await produce_all(kafka_bootstrap, topics.input, submissions.records)
    env = worker_environment(kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY)
    async with worker_process(env, tmp_path / "worker.log") as process:
        await wait_for_routed(kafka_bootstrap, topics, total // 3, timeout_s=120)
        process.send_signal(signal.SIGTERM)
        assert EXIT_OK == await asyncio.wait_for(process.wait(), timeout=60)
    async with worker_process(env, tmp_path / "worker.log") as process:
        await wait_for_routed(kafka_bootstrap, topics, total, timeout_s=180)
        await _settle_commits(kafka_bootstrap, group_id, topics, total)
        process.send_signal(signal.SIGTERM)
        assert EXIT_OK == await asyncio.wait_for(process.wait(), timeout=60)

    seen = await ledger(kafka_bootstrap, topics, expected_total=total)
    assert {image_id: [route] for image_id, route in submissions.expected.items()} == seen
    assert 0 == duplicates(seen)


async def _settle_commits(bootstrap: str, group_id: str, topics: Topics, total: int) -> None:
    """Wait (bounded) until the group has committed every input offset, so a later check sees final state."""
    async with asyncio.timeout(30):
        while True:
            committed = await committed_offsets(bootstrap, group_id, topics.input, 3)
            if sum(offset or 0 for offset in committed.values()) >= total:
                return
            await asyncio.sleep(0.5)


class _FailsOnCall:
    """An ``Analyzer`` answering at once, except that call ``failing`` raises a bug (not an AnalyzerError)."""

    def __init__(self, failing: int) -> None:
        self._failing = failing
        self.calls = 0

    async def analyze(self, image_url: str) -> Analysis:  # noqa: ARG002 - the seam's signature
        self.calls += 1
        if self.calls == self._failing:
            raise RuntimeError("a defect, not a service error")
        return Analysis("test", (Tag("cat", 0.97),))

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_a_defect_in_the_handler_stops_the_worker_without_committing_past_it(
    kafka_bootstrap: str, topics: Topics, group_id: str
) -> None:
    """An unexpected exception while handling record 20 of 60 on one partition: exit 3, the committed offset
    stays at or below that record, and every record after it is still there to be read again."""
    await topics.create(kafka_bootstrap, partitions=1)
    records = [
        (
            f"img-{index:03d}".encode(),
            orjson.dumps({"id": f"img-{index:03d}", "image": {"url": f"https://{IMAGE_HOST}/a.jpg"}}),
        )
        for index in range(60)
    ]
    await produce_all(kafka_bootstrap, topics.input, records)
    env = worker_environment(kafka_bootstrap, topics, group_id, "http://127.0.0.1:9", "unused")
    analyzer = _FailsOnCall(failing=20)

    exit_code = await asyncio.wait_for(
        run_worker(
            worker_settings(env), stop=asyncio.Event(), analyzer=analyzer, registry=CollectorRegistry()
        ),
        timeout=60,
    )

    assert EXIT_FATAL == exit_code
    committed = (await committed_offsets(kafka_bootstrap, group_id, topics.input, 1))[0]
    assert committed is None or committed <= 19  # the 20th call analyzes offset 19 (calls go in offset order)
