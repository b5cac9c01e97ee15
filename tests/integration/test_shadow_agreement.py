"""A worker with a shadow policy, against the real broker, the emulator and a real Prometheus: it routes by
the live policy only, and the live x shadow agreement matrix reaches Prometheus with the expected counts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.fixtures.prometheus import PrometheusServer, dashboard_queries
from tests.kafka_helpers import create_topics, produce_all, read_all
from tests.pipeline_harness import (
    EXPECTED_ROUTE,
    IMAGE_HOST,
    ROUTES,
    SCRIPTS,
    Topics,
    ledger,
    wait_until,
    worker_environment,
    worker_settings,
)
from worker.contracts import Contracts, SchemaName
from worker.dev.emulator.server import Emulator
from worker.domain import Analysis, Tag
from worker.policy import decide
from worker.policy_file import load_default_policy, policy_from_document
from worker.runner import EXIT_OK, run_worker

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
#: stricter on knives, blocks cats, forgets weapons: a candidate that changes every analyzed kind
CANDIDATE = {
    "schema": "policy.v1",
    "mode": "blocklist",
    "blocklist": {
        "knife": {"review_at": 0.5, "reject_at": 0.75},
        "cat": {"review_at": 0.9, "reject_at": None},
    },
}
KINDS = {"approved": 3, "rejected": 2, "review": 2, "broken": 2}


def _submissions() -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    records, kinds = [], {}
    for kind, count in KINDS.items():
        for index in range(count):
            image_id = f"{kind}-{index}"
            url = f"{IMAGE_HOST}/{kind}.jpg?sv=2024&sig=SECRET{index}"
            records.append((image_id.encode(), orjson.dumps({"id": image_id, "image": {"url": url}})))
            kinds[image_id] = kind
    return records, kinds


def _scripted_analysis(kind: str) -> Analysis | None:
    script = SCRIPTS[f"{IMAGE_HOST}/{kind}.jpg"]
    assert isinstance(script, dict)
    if "tags" not in script:
        return None
    return Analysis("any", tuple(Tag(name, confidence) for name, confidence in script["tags"]))


async def test_a_shadow_policy_never_routes_and_its_agreement_matrix_reaches_prometheus(
    kafka_bootstrap: str,
    topic_prefix: str,
    group_id: str,
    scripted_emulator: Emulator,
    prometheus_server_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> None:
    """Results follow the live policy; each analyzed image adds one (live, shadow) cell, counted in Prometheus
    exactly as the two policies decide the emulator's tags; shadow results go only to their own topic."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=2)
    shadow_topic = topic_prefix + "shadow-results"
    await create_topics(kafka_bootstrap, [shadow_topic], 2)
    candidate_file = tmp_path / "candidate.json"
    candidate_file.write_bytes(orjson.dumps(CANDIDATE))
    env = worker_environment(
        kafka_bootstrap,
        topics,
        group_id,
        scripted_emulator.endpoint,
        TEST_KEY,
        shadow_policy_file=str(candidate_file),
        shadow_topic=shadow_topic,
    )
    records, kinds = _submissions()
    live, candidate = load_default_policy(), policy_from_document(CANDIDATE)
    analyses = {
        image_id: analysis
        for image_id, kind in kinds.items()
        if (analysis := _scripted_analysis(kind)) is not None
    }
    shadow_decisions = {image_id: str(decide(candidate, a).decision) for image_id, a in analyses.items()}
    expected_cells = Counter(
        (str(decide(live, analysis).decision), shadow_decisions[image_id])
        for image_id, analysis in analyses.items()
    )
    analyzed = sum(expected_cells.values())

    ports: list[int] = []
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry(), on_ready=ports.append)
    )
    await wait_until(lambda: bool(ports), timeout_s=30)
    async with prometheus_server_factory([f"127.0.0.1:{ports[0]}"]) as prom:
        await produce_all(kafka_bootstrap, topics.input, records)
        seen = await ledger(kafka_bootstrap, topics, expected_total=len(records))
        shadow_results = await read_all(kafka_bootstrap, shadow_topic, expected=analyzed, idle_s=5)
        await prom.wait_for(f"sum(moderation_shadow_decisions_total) == {analyzed}", bool, timeout_s=30)
        cells = await prom.query("moderation_shadow_decisions_total")
        info = await prom.query("moderation_shadow_policy_info")
        panels = [query for query in dashboard_queries(DASHBOARDS) if query.panel.startswith("Shadow policy")]
        empty = [query.expr for query in panels if not await prom.query(query.promql)]
    stop.set()
    assert EXIT_OK == await worker

    assert {image_id: [EXPECTED_ROUTE[kind]] for image_id, kind in kinds.items()} == seen
    actual_cells = {
        (cell["metric"]["live"], cell["metric"]["shadow"]): float(cell["value"][1]) for cell in cells
    }
    assert 9 == len(actual_cells)
    assert {pair: float(count) for pair, count in expected_cells.items()} == {
        pair: count for pair, count in actual_cells.items() if count
    }
    assert sum(count for (old, new), count in expected_cells.items() if old != new) >= 3  # a real diff
    assert [candidate.version] == [sample["metric"]["policy_version"] for sample in info]
    assert (4, []) == (len(panels), empty)
    contracts = Contracts.load()
    shadow_documents = [orjson.loads(record.value) for record in shadow_results]
    assert all(
        contracts.describe_violation(SchemaName.MODERATION_RESULT, document) is None
        for document in shadow_documents
    )
    assert shadow_decisions == {document["id"]: document["decision"] for document in shadow_documents}
    assert {candidate.version} == {document["policy_version"] for document in shadow_documents}
    assert set(ROUTES).isdisjoint({record.topic.removeprefix(topic_prefix) for record in shadow_results})
