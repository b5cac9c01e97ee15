"""Audit items: a sampled automatic decision is also produced, marked, to the audit topic; the result is not
changed and nothing lands on a fifth route."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from worker.contracts import Contracts, SchemaName
from worker.domain import Analysis, Decision, Tag
from worker.moderation import Moderator, RouteTopics
from worker.observability.metrics import Metrics
from worker.observability.observers import PipelineMetrics
from worker.observability.ops_server import HealthState
from worker.policy_file import load_default_policy
from worker.records import Routed, Stall
from worker.sampling import AuditSampler

CONTRACTS = Contracts.load()
POLICY = load_default_policy(contracts=CONTRACTS)
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TOPICS = RouteTopics("approved", "needs-review", "rejected", "dead-letter", audit="review-audit")
TAGS = {"cat": (Tag("cat", 0.97),), "weapon": (Tag("weapon", 0.95),), "knife": (Tag("knife", 0.8),)}


@dataclass(frozen=True)
class _Record:
    value: bytes
    topic: str = "images.submitted"
    partition: int = 0
    offset: int = 7
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class _Analyzer:
    """Tags by the image file name: cat.jpg is approved, weapon.jpg rejected, knife.jpg needs review."""

    async def analyze_guarded(self, image_url: str, stall: Stall) -> Analysis:  # noqa: ARG002 - protocol
        name = image_url.rsplit("/", 1)[1].split(".", maxsplit=1)[0]
        return Analysis(model_version="2023-10-01", tags=TAGS[name])


class _Nothing:
    def decided(self, verdict: object, analysis: object) -> None:
        """Decisions are not what these tests count."""


def _moderator(rates: dict[Decision, float]) -> Moderator:
    return Moderator(
        CONTRACTS,
        _Analyzer(),
        _Nothing(),
        topics=TOPICS,
        policy=lambda: POLICY,
        audit=AuditSampler(rates, key=b"k"),
        now=lambda: NOW,
    )


async def _route(moderator: Moderator, image: str, image_id: str = "img-1") -> Routed:
    url = f"https://images.example.com/{image}.jpg?sv=2024&sig=SECRET"
    record = _Record(orjson.dumps({"id": image_id, "image": {"url": url}}))
    work = moderator.prepare(record)
    assert not isinstance(work, Routed)
    return await moderator.complete(record, work, _NoStall())


class _NoStall:
    def stall(self) -> None:
        """Never stalls."""

    def unstall(self) -> None:
        """Never stalled."""


def _document(value: bytes) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(value)
    return document


async def test_an_audited_decision_is_published_unchanged_and_copied_marked_to_the_audit_topic() -> None:
    """At rate 1 an approval goes to approved as always, and the same document with ``audit`` (probability,
    published decision) goes to the audit topic: schema-valid, the URL redacted, keyed by the id."""
    routed = await _route(_moderator({Decision.APPROVED: 1.0}), "cat")
    [side] = routed.side
    published, copy = _document(routed.value), _document(side.value)

    assert ("approved", "review-audit", b"img-1") == (routed.topic, side.topic, side.key)
    assert published == {name: value for name, value in copy.items() if name != "audit"}
    assert {"probability": 1.0, "published_decision": "approved"} == copy["audit"]
    assert [None, None] == [
        CONTRACTS.describe_violation(SchemaName.MODERATION_RESULT, d) for d in (published, copy)
    ]
    assert "SECRET" not in side.value.decode()


async def test_needs_review_and_decisions_at_rate_zero_produce_no_audit_item() -> None:
    """Only the decisions with a rate above 0 are audited; needs_review never is."""
    moderator = _moderator({Decision.APPROVED: 0.0, Decision.REJECTED: 1.0})
    routes = [await _route(moderator, image) for image in ("cat", "knife", "weapon")]
    assert [("approved", 0), ("needs-review", 0), ("rejected", 1)] == [(r.topic, len(r.side)) for r in routes]
    assert "rejected" == _document(routes[2].side[0].value)["audit"]["published_decision"]


async def test_a_redelivered_record_makes_the_same_audit_choice() -> None:
    """The same id decided twice (a redelivery, another replica) is audited both times or neither time."""
    first, again = _moderator({Decision.APPROVED: 0.5}), _moderator({Decision.APPROVED: 0.5})
    ids = [f"img-{index}" for index in range(200)]
    chosen = [len((await _route(first, "cat", image_id)).side) for image_id in ids]
    chosen_again = [len((await _route(again, "cat", image_id)).side) for image_id in ids]
    assert (chosen, True) == (chosen_again, 0 < sum(chosen) < len(ids))


async def test_acknowledged_audit_items_are_counted_by_decision() -> None:
    """``moderation_audit_items_total{decision}`` counts routed results that carried an audit item."""
    registry = CollectorRegistry()
    observer = PipelineMetrics(Metrics(registry, version="t"), HealthState(), audit_topic="review-audit")
    moderator = _moderator({Decision.APPROVED: 1.0, Decision.REJECTED: 1.0})
    record = _Record(b"{}")
    for image in ("cat", "cat", "weapon", "knife"):
        observer.routed(await _route(moderator, image), record, 0.01)

    def count(decision: str) -> float | None:
        return registry.get_sample_value("moderation_audit_items_total", {"decision": decision})

    assert (2.0, 1.0) == (count("approved"), count("rejected"))
