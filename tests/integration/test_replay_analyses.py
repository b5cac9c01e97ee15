"""Replay against the real broker: a worker keeps its analyses (emulator), then ``replay`` re-decides them
under a new policy; its diff equals a direct re-decision of the same analysis records, and ``--since``
limits it to the records after a given time."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import create_topics, produce_all, read_all, read_to_end
from tests.pipeline_harness import IMAGE_HOST, Topics, worker_environment, worker_settings
from worker.cli import main
from worker.dev.emulator.server import Emulator
from worker.domain import Analysis, Decision, Tag
from worker.errors import ConfigurationError
from worker.evaluation.replay import ReplayWindow, replay
from worker.policy import Policy, decide
from worker.policy_file import policy_from_document
from worker.runner import EXIT_OK, run_worker
from worker.settings import Settings

pytestmark = pytest.mark.integration

NEW_POLICY = {
    "schema": "policy.v1",
    "mode": "blocklist",
    "blocklist": {
        "knife": {"review_at": 0.5, "reject_at": 0.75},
        "cat": {"review_at": 0.9, "reject_at": None},
    },
}
FIRST = {"approved": 3, "rejected": 2, "review": 2, "broken": 1}
SECOND = {"approved": 1, "review": 2}


def _records(batch: str, kinds: dict[str, int]) -> list[tuple[bytes, bytes]]:
    records = []
    for kind, count in kinds.items():
        for index in range(count):
            image_id = f"{batch}-{kind}-{index}"
            url = f"{IMAGE_HOST}/{kind}.jpg?sv=2024&sig=SECRET"
            records.append((image_id.encode(), orjson.dumps({"id": image_id, "image": {"url": url}})))
    return records


def _direct_diff(documents: list[Any], policy: Policy) -> Counter[tuple[Decision, Decision]]:
    """The expected diff, straight from the analysis documents: published decision, ``decide`` under NEW."""
    pairs: Counter[tuple[Decision, Decision]] = Counter()
    for document in documents:
        analysis = Analysis(
            document["model_version"], tuple(Tag(tag["name"], tag["confidence"]) for tag in document["tags"])
        )
        pairs[(Decision(document["decision"]), decide(policy, analysis, hold=document["hold"]).decision)] += 1
    return pairs


async def test_a_replay_reports_the_diff_a_direct_re_decision_of_the_kept_analyses_gives(
    kafka_bootstrap: str,
    topic_prefix: str,
    group_id: str,
    scripted_emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whole topic, then ``--since`` after the first batch, then the command line's ``--json``: each time the
    counts by (old, new) decision are those of ``decide(NEW, analysis, hold)`` on the records themselves."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=2)
    analyses_topic = topic_prefix + "analyses"
    await create_topics(kafka_bootstrap, [analyses_topic], 2)
    env = worker_environment(
        kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY, analyses_topic=analyses_topic
    )
    settings = worker_settings(env)
    policy = policy_from_document(NEW_POLICY)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop, registry=CollectorRegistry()))
    await produce_all(kafka_bootstrap, topics.input, _records("first", FIRST))
    first = await read_all(kafka_bootstrap, analyses_topic, expected=sum(FIRST.values()) - 1, idle_s=30)
    boundary_ms = max(record.timestamp for record in first) + 1
    await produce_all(kafka_bootstrap, topics.input, _records("second", SECOND))
    await read_all(kafka_bootstrap, analyses_topic, expected=len(first) + sum(SECOND.values()), idle_s=30)
    stop.set()
    assert EXIT_OK == await worker
    kept = await read_to_end(kafka_bootstrap, analyses_topic)
    documents = [orjson.loads(record.value) for record in kept]
    later = [orjson.loads(record.value) for record in kept if record.timestamp >= boundary_ms]

    whole = await replay(settings, policy, examples=2)
    since = datetime.fromtimestamp(boundary_ms / 1000, UTC)
    recent = await replay(settings, policy, window=ReplayWindow(since=since), examples=2)
    policy_file = tmp_path / "new.json"
    policy_file.write_bytes(orjson.dumps(NEW_POLICY))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The command runs its own event loop, so it runs on a thread of its own, as it would in a shell.
    code = await asyncio.to_thread(
        main, ["replay", "--policy", str(policy_file), "--since", since.isoformat(), "--json"]
    )
    printed = orjson.loads(capsys.readouterr().out)

    expected_whole = _direct_diff(documents, policy)
    assert sum(FIRST.values()) - 1 + sum(SECOND.values()) == len(documents)
    assert sum(expected_whole[(old, new)] for old, new in expected_whole if old != new) >= 3  # a real diff
    assert expected_whole == Counter({pair: count for pair, count in whole.counts.items() if count})
    assert sorted(document["id"] for document in later) == sorted(
        f"second-{kind}-{index}" for kind, count in SECOND.items() for index in range(count)
    )
    assert _direct_diff(later, policy) == Counter(
        {pair: count for pair, count in recent.counts.items() if count}
    )
    changed_ids = {document["id"] for document in documents} - {
        document["id"]
        for document in documents
        if Decision(document["decision"])
        == decide(policy, _analysis(document), hold=document["hold"]).decision
    }
    assert {item.id for items in whole.examples.values() for item in items} <= changed_ids
    assert all(len(items) <= 2 for items in whole.examples.values())
    assert (0, recent.to_json()) == (code, printed)


def _analysis(document: Any) -> Analysis:
    return Analysis(
        document["model_version"], tuple(Tag(tag["name"], tag["confidence"]) for tag in document["tags"])
    )


async def test_a_replay_of_a_topic_the_cluster_does_not_have_is_a_configuration_error(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A mistyped ``MODERATION_ANALYSES_TOPIC`` exits 2 naming the topic, not a report of zero images."""
    missing = topic_prefix + "no-such-analyses"
    settings = Settings.defaults(bootstrap_servers=kafka_bootstrap, analyses_topic=missing)

    with pytest.raises(ConfigurationError, match=f"the cluster has no topic '{missing}'"):
        await replay(settings, policy_from_document(NEW_POLICY))
