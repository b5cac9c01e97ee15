"""The SRE kit against a running worker: a real Prometheus scrapes it, every dashboard query has data, the
alert rules load; a shift in the analyzer's tag mix drives the drift gauges past their act threshold.

The worker runs in-process (``run_worker``) on the real broker and the real SDK against the emulator, on
per-test topics; traffic is produced steadily while the assertions wait on observable state with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.fixtures.prometheus import PrometheusServer
from tests.integration.test_prometheus_dashboards import (
    DASHBOARDS,
    RULES,
    assert_every_dashboard_expression_returns_data,
)
from tests.pipeline_harness import IMAGE_HOST, SCRIPTS, Topics, make_submissions, worker_environment
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator, EmulatorConfig
from worker.observability.drift import PSI_ACT, PSI_WATCH, DriftReference, load_reference
from worker.runner import EXIT_OK, run_worker
from worker.settings import Settings

pytestmark = pytest.mark.integration

Record = tuple[bytes, bytes]
#: the shifted mix: the images that were cats now show weapons, so approvals turn into rejections
SHIFTED_SCRIPTS = SCRIPTS | {f"{IMAGE_HOST}/approved.jpg": {"tags": [["weapon", 0.97], ["street", 0.8]]}}
#: transient faults, each image once: a throttled call, two 5xx, a call that hangs past the read timeout
FAULT_SCRIPTS: dict[str, object] = {
    f"{IMAGE_HOST}/throttled.jpg": [
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"tags": [["cat", 0.9]]},
    ],
    f"{IMAGE_HOST}/flaky.jpg": [{"status": 503}, {"status": 500}, {"tags": [["weapon", 0.99]]}],
    f"{IMAGE_HOST}/slow.jpg": [{"hang": True}, {"tags": [["knife", 0.8]]}],
}
#: a pinned reference (docs/drift.md form); the stable mix is far from it, which is fine for part (a)
PINNED_REFERENCE = {
    "version": 1,
    "decision_mix": {"approved": 0.8, "needs_review": 0.15, "rejected": 0.05},
    "tags": {"weapon": {"detection_rate": 0.05}},
}
DECISION_MIX_PSI = {"dimension": "decision_mix", "tag": ""}
WEAPON_DETECTION_PSI = {"dimension": "tag_detection", "tag": "weapon"}


def submission(image_id: str, kind: str) -> Record:
    """A valid submission of image ``kind`` (its URL carries a SAS-like query the emulator ignores)."""
    url = f"{IMAGE_HOST}/{kind}.jpg?sv=2024&sig=SECRET"
    return image_id.encode(), orjson.dumps({"id": image_id, "image": {"url": url}})


def harness_batches(size: int, *, malformed_every: int = 16, faults: bool = False) -> Iterator[list[Record]]:
    """Endless, differently seeded batches of the harness mix: decisions approved 2/5, rejected 1/5,
    needs_review 2/5 in expectation; with ``faults``, the first batch adds the ``FAULT_SCRIPTS`` images.
    """
    for number in itertools.count():
        batch = make_submissions(
            size, malformed_every=malformed_every, seed=number, prefix=f"b{number:05d}"
        ).records
        if faults and number == 0:
            batch += [submission(f"fault-{kind}", kind) for kind in ("throttled", "flaky", "slow")]
        yield batch


async def produce_steadily(
    bootstrap: str, topic: str, batches: Iterator[list[Record]], pace_s: float
) -> None:
    """Send one batch every ``pace_s`` until cancelled: a steady offered load, as a live uploader gives."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for batch in batches:
            sent = [await producer.send(topic, value, key=key) for key, value in batch]
            await asyncio.gather(*sent)
            await asyncio.sleep(pace_s)  # pacing the load generator, not waiting for a result
    finally:
        await producer.stop()


@asynccontextmanager
async def steady_traffic(
    bootstrap: str, topic: str, batches: Iterator[list[Record]], pace_s: float = 0.1
) -> AsyncIterator[None]:
    """``produce_steadily`` for the life of the block; a producer failure surfaces at exit."""
    task = asyncio.create_task(produce_steadily(bootstrap, topic, batches, pace_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def running_worker(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[int]:
    """``run_worker`` in this loop; yields its ops port once ``/metrics`` serves; stops it cleanly at exit."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    worker = asyncio.create_task(
        run_worker(settings, stop=stop, registry=registry, on_ready=ready.set_result)
    )
    try:
        await asyncio.wait({worker, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if worker.done():
            raise RuntimeError(f"the worker ended before serving /metrics: exit code {worker.result()}")
        if not ready.done():
            raise TimeoutError("the worker's ops server did not start within 30 s")
        yield ready.result()
    finally:
        stop.set()
        exit_code = await asyncio.wait_for(worker, 60)
    assert EXIT_OK == exit_code


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` (cheap, in-process state) until it holds; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.1)


def sample(registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """Current value of one sample of the worker's registry (None when the series does not exist)."""
    return registry.get_sample_value(name, dict(labels or {}))


def reference_series(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """Every ``moderation_drift_reference_proportion`` series: (dimension, tag, bucket) -> proportion."""
    return {
        (s.labels["dimension"], s.labels["tag"], s.labels["bucket"]): s.value
        for family in registry.collect()
        if family.name == "moderation_drift_reference_proportion"
        for s in family.samples
    }


def as_series(reference: DriftReference) -> dict[tuple[str, str, str], float]:
    """A reference laid out as ``reference_series`` shows it."""
    return {
        (dimension, tag, bucket): proportion
        for (dimension, tag), proportions in reference.distributions.items()
        for bucket, proportion in proportions.items()
    }


async def loaded_rules(prom: PrometheusServer) -> list[dict[str, Any]]:
    """Every rule Prometheus loaded, from its ``/api/v1/rules`` answer."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{prom.url}/api/v1/rules") as response,
    ):
        body = await response.json()
    assert "success" == body["status"], body
    return [rule for group in body["data"]["groups"] for rule in group["rules"]]


async def test_prometheus_scraping_a_running_worker_has_data_for_every_dashboard_query(
    kafka_bootstrap: str,
    topic_prefix: str,
    group_id: str,
    prometheus_server_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Harness traffic with malformed records, a 429, 5xx and a timeout through a live worker: every panel
    query returns data from Prometheus, every alert rule loads and evaluates, the pinned reference is served.
    """
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=3)
    pinned = tmp_path / "drift-reference.json"
    pinned.write_text(json.dumps(PINNED_REFERENCE))
    config = EmulatorConfig(key=TEST_KEY, fixtures=parse_fixtures(SCRIPTS | FAULT_SCRIPTS))
    registry = CollectorRegistry()
    started = time.monotonic()
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        env = worker_environment(
            kafka_bootstrap,
            topics,
            group_id,
            emulator.endpoint,
            TEST_KEY,
            analyzer_timeout_s="1",
            drift_reference_file=str(pinned),
        )
        async with (
            running_worker(Settings.from_env(env), registry) as port,
            prometheus_server_factory([f"127.0.0.1:{port}"], [RULES]) as prom,
            steady_traffic(kafka_bootstrap, topics.input, harness_batches(32, faults=True), pace_s=0.2),
        ):
            await prom.wait_for('up{job="moderation-worker"} == 1', bool, timeout_s=30)
            for outcome in ("throttled", "server", "timeout"):
                await prom.wait_for(f'moderation_analyzer_calls_total{{outcome="{outcome}"}} >= 1', bool, 60)
            await prom.wait_for("sum(moderation_dead_letters_total) >= 1", bool, 60)
            await assert_every_dashboard_expression_returns_data(prom, DASHBOARDS, timeout_s=90)
            rules = await loaded_rules(prom)
            deadline = time.monotonic() + 30
            while any(rule["health"] == "unknown" for rule in rules) and time.monotonic() < deadline:
                await asyncio.sleep(prom.scrape_interval_s)  # rules are evaluated once per interval
                rules = await loaded_rules(prom)
            served_reference = await prom.query(
                'moderation_drift_reference_proportion{dimension="decision_mix"}'
            )
    record_property("suite_seconds", round(time.monotonic() - started, 1))

    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert sum(len(group["rules"]) for group in groups) == len(rules)
    assert [] == [
        (rule["name"], rule["health"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    expected_mix = PINNED_REFERENCE["decision_mix"]
    assert expected_mix == {s["metric"]["bucket"]: float(s["value"][1]) for s in served_reference}


async def test_a_shifted_tag_mix_drives_drift_past_act_and_a_restart_keeps_the_captured_reference(
    kafka_bootstrap: str,
    topic_prefix: str,
    group_id: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Stable traffic until a reference is captured and persisted (PSI stays below watch); the emulator's
    answers shift and the decision-mix and weapon-detection PSI cross 0.25; a restarted worker loads the same
    reference from the state file, does not re-capture it, and still scores the shifted traffic above 0.25."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=2)
    state_file = tmp_path / "drift-state.json"
    config = EmulatorConfig(key=TEST_KEY, fixtures=parse_fixtures(SCRIPTS))
    first, second = CollectorRegistry(), CollectorRegistry()
    started = time.monotonic()
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        env = worker_environment(
            kafka_bootstrap,
            topics,
            group_id,
            emulator.endpoint,
            TEST_KEY,
            drift_window_s="3",
            drift_min_samples="50",
            drift_state_file=str(state_file),
        )
        settings = Settings.from_env(env)
        async with steady_traffic(
            kafka_bootstrap, topics.input, harness_batches(10, malformed_every=1_000_000), pace_s=0.1
        ):
            async with running_worker(settings, first):
                reference_label = {**DECISION_MIX_PSI, "bucket": "approved"}
                await wait_until(
                    lambda: (
                        sample(first, "moderation_drift_reference_proportion", reference_label) is not None
                    ),
                    "reference captured",
                )
                captured_series = reference_series(first)
                # Scored at the capture instant, the window is its own reference: PSI is exactly 0. A random
                # mix makes every later window differ a little, so a non-zero PSI shows a later window scored.
                await wait_until(
                    lambda: _psi(first, DECISION_MIX_PSI) != 0.0, "a window after capture scored"
                )
                psi_before = _psi(first, DECISION_MIX_PSI), _psi(first, WEAPON_DETECTION_PSI)

                emulator.load_fixtures(parse_fixtures(SHIFTED_SCRIPTS))
                await wait_until(
                    lambda: (
                        _psi(first, DECISION_MIX_PSI) > PSI_ACT
                        and _psi(first, WEAPON_DETECTION_PSI) > PSI_ACT
                    ),
                    "PSI above act after the shift",
                )
                psi_after = _psi(first, DECISION_MIX_PSI), _psi(first, WEAPON_DETECTION_PSI)
            saved = load_reference(state_file)

            async with running_worker(settings, second):
                await wait_until(
                    lambda: bool(reference_series(second)), "restarted worker publishes its reference"
                )
                reloaded_series = reference_series(second)
                await wait_until(
                    lambda: (
                        _psi(second, DECISION_MIX_PSI) > PSI_ACT
                        and _psi(second, WEAPON_DETECTION_PSI) > PSI_ACT
                    ),
                    "PSI above act after the restart",
                )
                psi_after_restart = _psi(second, DECISION_MIX_PSI), _psi(second, WEAPON_DETECTION_PSI)
            saved_after_restart = load_reference(state_file)
    record_property("suite_seconds", round(time.monotonic() - started, 1))
    record_property("psi_before_shift", psi_before)
    record_property("psi_after_shift", psi_after)
    record_property("psi_after_restart", psi_after_restart)

    assert saved is not None
    assert saved_after_restart is not None
    # Equal up to the last bit: a saved detection rate is reloaded as (rate, 1 - rate).
    assert pytest.approx(captured_series) == {key: as_series(saved)[key] for key in captured_series}
    assert as_series(saved) == reloaded_series
    assert as_series(saved).items() <= as_series(saved_after_restart).items()
    assert all(psi < PSI_WATCH for psi in psi_before), psi_before
    assert all(psi > PSI_ACT for psi in psi_after), psi_after
    assert all(psi > PSI_ACT for psi in psi_after_restart), psi_after_restart


def _psi(registry: CollectorRegistry, labels: Mapping[str, str]) -> float:
    value = sample(registry, "moderation_drift_psi", labels)
    assert value is not None, f"no moderation_drift_psi series for {labels}"
    return value
