"""Audit sampling end to end: a worker on the real broker and the emulator copies a deterministic share of its
automatic decisions to the audit topic, each with its inclusion probability; the four routes are untouched."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import create_topics, produce_all, read_all, read_to_end
from tests.pipeline_harness import (
    Topics,
    duplicates,
    ledger,
    make_submissions,
    wait_for_routed,
    worker_environment,
    worker_settings,
)
from worker.contracts import Contracts, SchemaName
from worker.dev.emulator.server import Emulator
from worker.domain import Decision
from worker.kafka.topics import create_topics as topics_create
from worker.runner import EXIT_OK, run_worker
from worker.sampling import AuditSampler
from worker.settings import Settings

pytestmark = pytest.mark.integration

RATES = {Decision.APPROVED: 0.2, Decision.REJECTED: 0.5}
KEY = "audit-key-of-the-test"


async def test_audit_items_copy_sampled_decisions_with_their_probability_and_never_touch_the_routes(
    kafka_bootstrap: str, topic_prefix: str, group_id: str, scripted_emulator: Emulator
) -> None:
    """2,000 submissions: the audit topic holds exactly the approvals and rejections the keyed hash picks
    (about 20 % and 50 %), each the published result plus ``audit``; every id is still routed once."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=2)
    audit_topic = topic_prefix + "review-audit"
    await create_topics(kafka_bootstrap, [audit_topic], 2)
    env = worker_environment(
        kafka_bootstrap,
        topics,
        group_id,
        scripted_emulator.endpoint,
        TEST_KEY,
        control_topic=topic_prefix + "control",
        audit_topic=audit_topic,
        audit_approved_rate=str(RATES[Decision.APPROVED]),
        audit_rejected_rate=str(RATES[Decision.REJECTED]),
        audit_key=KEY,
    )
    total = 2000
    submissions = make_submissions(total)
    await produce_all(kafka_bootstrap, topics.input, submissions.records)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(worker_settings(env), stop=stop, registry=registry))
    await wait_for_routed(kafka_bootstrap, topics, total, timeout_s=120)
    stop.set()
    assert EXIT_OK == await worker

    seen = await ledger(kafka_bootstrap, topics, expected_total=total)
    published = {
        document["id"]: document
        for route in ("approved", "rejected")
        for document in map(_document, await read_to_end(kafka_bootstrap, topics.route(route)))
    }
    audit = [
        _document(record) for record in await read_all(kafka_bootstrap, audit_topic, expected=None, idle_s=2)
    ]
    sampler = AuditSampler(RATES, key=KEY.encode())
    expected = {i for i, doc in published.items() if sampler.chosen(i, Decision(doc["decision"])) is not None}
    contracts = Contracts.load()

    assert (set(submissions.expected), 0) == (set(seen), duplicates(seen))
    assert expected == {document["id"] for document in audit}
    assert len(expected) == len(audit)  # one audit item per audited id
    for document in audit:
        decision = published[document["id"]]["decision"]
        assert {"probability": RATES[Decision(decision)], "published_decision": decision} == document["audit"]
        assert published[document["id"]] == {k: v for k, v in document.items() if k != "audit"}
        assert contracts.describe_violation(SchemaName.MODERATION_RESULT, document) is None
    counts = Counter(document["audit"]["published_decision"] for document in audit)
    for decision, rate in RATES.items():
        population = sum(doc["decision"] == decision for doc in published.values())
        assert abs(counts[decision] - rate * population) <= 5 * math.sqrt(population * rate * (1 - rate))
        sample = registry.get_sample_value("moderation_audit_items_total", {"decision": str(decision)})
        assert float(counts[decision]) == sample


async def test_topics_create_makes_the_audit_topic_only_when_sampling_is_on(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """With both rates at 0 there is no audit topic; with a rate above 0 ``topics create`` makes it."""
    base = {
        "MODERATION_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MODERATION_TOPIC_PARTITIONS": "2",
        **{
            f"MODERATION_{name}_TOPIC": topic_prefix + name.lower()
            for name in ("INPUT", "APPROVED", "REVIEW", "REJECTED", "DEAD_LETTER", "CONTROL", "AUDIT")
        },
    }
    off = await topics_create(Settings.from_env(base, need_analyzer=False))
    on = await topics_create(
        Settings.from_env(base | {"MODERATION_AUDIT_REJECTED_RATE": "0.05"}, need_analyzer=False)
    )
    audit_topic = topic_prefix + "audit"
    assert (audit_topic in off, on[audit_topic]) == (False, "created")
    assert {"exists"} == {state for topic, state in on.items() if topic != audit_topic}


def _document(record: Any) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(record.value)
    return document
