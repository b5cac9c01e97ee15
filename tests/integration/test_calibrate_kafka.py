"""`moderation-worker calibrate` reading the review-decisions topic of a real broker to its end, and
calibrating from what reviewers decided in a real review console."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.fixtures.browser import ConsoleFactory, ReviewTopics
from tests.fixtures.kafka import NewTopics
from tests.integration.test_review_console import queued
from tests.integration.test_review_flows import api
from tests.kafka_helpers import produce_all
from worker.cli import main
from worker.contracts import Submission
from worker.domain import Decision, Reason, Tag, Verdict
from worker.records import SourceCoordinates, encode_result
from worker.review.queue import Role
from worker.review.web import ref_of

pytestmark = pytest.mark.integration


def _verdict(verdict: str, probability: float) -> bytes:
    machine: dict[str, object] = {
        "decision": "approved", "rules": [], "reasons": [], "tags": [],
        "policy_version": "sha256:0123456789abcdef", "model_version": None,
        "source": {"topic": "images.submitted", "partition": 0, "offset": 0},
        "audit_probability": probability, "published_decision": "approved",
    }  # fmt: skip
    document = {
        "schema": "review-decision.v1", "id": "i", "queue": "audit", "verdict": verdict, "reason": "r",
        "note": "", "reviewer": "a", "role": "reviewer", "lease_id": "l",
        "claimed_at": "2026-12-03T09:59:00Z", "decided_at": "2026-12-03T10:00:00Z",
        "item": {"topic": "images.review-audit", "partition": 0, "offset": 0},
        "machine": machine, "published_to": None,
    }  # fmt: skip
    return orjson.dumps(document)


async def test_calibrate_reads_the_topic_to_its_end_and_skips_unusable_records(
    kafka_bootstrap: str, new_topics: NewTopics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three audited approvals over two partitions (one overturned at probability 0.1, two upheld at 0.5)
    and one record that is no verdict: the command stops by itself, counts 3 verdicts and 1 skipped, and
    estimates the approvals' override rate as 10 / (10 + 2 + 2)."""
    [topic] = await new_topics("review-decisions", partitions=2)
    first = [(b"a", _verdict("reject", 0.1)), (b"b", _verdict("approve", 0.5))]
    await produce_all(kafka_bootstrap, topic, first, partition=0)
    await produce_all(
        kafka_bootstrap, topic, [(b"c", _verdict("approve", 0.5)), (b"d", b"not json")], partition=1
    )
    monkeypatch.setenv("MODERATION_BOOTSTRAP_SERVERS", kafka_bootstrap)
    figures = tmp_path / "calibration.json"
    code = await asyncio.to_thread(main, ["calibrate", "--topic", topic, "--json", str(figures)])
    report = orjson.loads(figures.read_bytes())
    approved = report["calibration"]["by_decision"]["approved"]
    assert (0, 3, 1, 10 / 14) == (code, report["verdicts"], report["skipped"], approved["overturn_rate"])


async def _publish(
    bootstrap: str,
    topics: ReviewTopics,
    image_id: str,
    machine: Verdict,
    tags: tuple[Tag, ...],
    *,
    audit_probability: float | None = None,
) -> None:
    """Publish ``image_id``'s submission and the worker's result for it: on the needs-review topic, or (with
    ``audit_probability``) on the audit topic as audit sampling copies an automatic decision."""
    submission = orjson.dumps(
        {"id": image_id, "image": {"url": f"https://images.example.com/{image_id}.png"}}
    )
    (ack,) = await produce_all(bootstrap, topics.submitted, [(image_id.encode(), submission)])
    result = encode_result(
        submission=Submission(id=image_id, image_url=f"https://images.example.com/{image_id}.png"),
        verdict=machine,
        policy_version="sha256:0123456789abcdef",
        model_version="2023-10-01",
        analyzed_at=datetime.now(UTC),
        source=SourceCoordinates(topics.submitted, ack.partition, ack.offset),
        worker_version="test",
        tags=tags,
    )
    topic = topics.needs_review
    if audit_probability is not None:
        audit = {"probability": audit_probability, "published_decision": str(machine.decision)}
        result, topic = orjson.dumps(orjson.loads(result) | {"audit": audit}), topics.audit
    await produce_all(bootstrap, topic, [(image_id.encode(), result)])


def _review(tag: str, confidence: float) -> tuple[Verdict, tuple[Tag, ...]]:
    """A needs-review result on ``tag`` at ``confidence``, as a blocklist review rule writes it."""
    reasons = (Reason("blocklist_review", tag=tag, confidence=confidence),)
    return Verdict(Decision.NEEDS_REVIEW, reasons), (Tag(tag, confidence), Tag("outdoor", 0.91))


async def test_calibrate_counts_what_reviewers_decided_in_the_console_per_rule_tag_and_band(
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    review_console: ConsoleFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four weapon and one nudity image reviewed in the console (one escalated) and one automatic dog
    approval audited at probability 0.25 and overturned: calibrate, reading the console's decisions topic
    by default, reports per (rule, tag, band) exactly those verdicts, the audit one weighing 4, and the
    knife tag the approval saw without firing a rule in a row of its own."""
    decided = {  # image -> (machine result, tags, the reviewer's verdict, reason label)
        "img-w1": (*_review("weapon", 0.64), "reject", "violence"),
        "img-w2": (*_review("weapon", 0.68), "approve", "false_positive"),
        "img-w3": (*_review("weapon", 0.83), "reject", "violence"),
        "img-w4": (*_review("weapon", 0.61), "escalate", ""),
        "img-n1": (*_review("nudity", 0.45), "approve", "acceptable"),
    }
    for image_id, (machine, tags, _, _) in decided.items():
        await _publish(kafka_bootstrap, review_topics, image_id, machine, tags)
    approval = Verdict(Decision.APPROVED, (Reason("allowlist_match", tag="dog", confidence=0.97),))
    audit_tags = (Tag("dog", 0.97), Tag("knife", 0.34))
    await _publish(kafka_bootstrap, review_topics, "img-a1", approval, audit_tags, audit_probability=0.25)
    decided["img-a1"] = (approval, audit_tags, "reject", "other")

    async with review_console() as console, aiohttp.ClientSession() as client:
        await queued(console, len(decided))
        keys = {item.result.image_id: item.key for item in console.queue.pending(Role.REVIEWER)}
        for image_id, (_, _, verdict, reason) in decided.items():
            item_url = f"{console.url}/items/{ref_of(keys[image_id])}"
            await api(client, "GET", item_url, "alice")
            lease = console.queue.held_by("alice")
            assert lease is not None
            status, body, _ = await api(
                client, "POST", item_url + "/verdict", "alice", verdict=verdict, reason=reason,
                lease=lease.lease_id,
            )  # fmt: skip
            assert 200 == status, body

    monkeypatch.setenv("MODERATION_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("MODERATION_REVIEW_DECISIONS_TOPIC", review_topics.decisions)
    figures = tmp_path / "calibration.json"
    code = await asyncio.to_thread(main, ["calibrate", "--json", str(figures)])

    report = orjson.loads(figures.read_bytes())
    rows = {
        (row["rule"], row["tag"], tuple(row["band"])): (
            row["evidence"], row["escalated"], row["weighted"], row["human_reject_rate"], row["overturn_rate"]
        )
        for row in report["calibration"]["rows"]
    }  # fmt: skip
    expected_rows = {
        ("blocklist_review", "weapon", (0.6, 0.7)): (2, 1, 2.0, 0.5, None),
        ("blocklist_review", "weapon", (0.8, 0.9)): (1, 0, 1.0, 1.0, None),
        ("blocklist_review", "nudity", (0.4, 0.5)): (1, 0, 1.0, 0.0, None),
        ("allowlist_match", "dog", (0.9, 1.0)): (1, 0, 4.0, 1.0, 1.0),
        ("tag_seen", "knife", (0.3, 0.4)): (1, 0, 4.0, 1.0, 1.0),
    }
    approved = report["calibration"]["by_decision"]["approved"]
    expected = (0, f"topic {review_topics.decisions}", 6, 0, expected_rows, (1, 4.0, 1.0))
    actual = (
        code,
        report["source"],
        report["verdicts"],
        report["skipped"],
        rows,
        (approved["evidence"], approved["weighted"], approved["overturn_rate"]),
    )
    assert expected == actual
