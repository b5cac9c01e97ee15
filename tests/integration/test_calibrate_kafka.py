"""`moderation-worker calibrate` reading the review-decisions topic of a real broker to its end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.fixtures.kafka import NewTopics
from tests.kafka_helpers import produce_all
from worker.cli import main

pytestmark = pytest.mark.integration


def _verdict(verdict: str, probability: float) -> bytes:
    machine: dict[str, object] = {
        "decision": "approved", "policy_version": "sha256:0123456789abcdef", "model_version": None,
        "source": {"topic": "images.submitted", "partition": 0, "offset": 0}, "reasons": [], "tags": [],
    }  # fmt: skip
    document = {
        "schema": "review-decision.v1", "id": "i", "verdict": verdict, "reason": "r", "note": "",
        "reviewer": "a", "lease": "l", "decided_at": "2026-12-03T10:00:00Z",
        "audit": {"probability": probability}, "machine": machine,
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
