"""Specification of one verdict's journey and of the review metrics, with a fake producer and settler."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from tests.review_samples import review_item
from worker.domain import Reason
from worker.review.auth import Identity
from worker.review.desk import PublishFailed, ReviewDesk
from worker.review.items import ItemKind, ReviewItem
from worker.review.metrics import ReviewMetrics, confidence_band, machine_leaning
from worker.review.queue import LeaseRefused, ReviewQueue, Role
from worker.review.verdicts import ReasonLabels, ReviewTopics, VerdictKind, VerdictRefused, VerdictRequest

ALICE = Identity("alice", Role.REVIEWER, "session", "n")
BOB = Identity("bob", Role.REVIEWER, "session", "m")
TOPICS = ReviewTopics(
    "images.approved", "images.rejected", "images.review-decisions", "images.review-escalated"
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeProducer:
    """Acknowledges every record (or fails when told to), remembering what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.fail = False

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> object:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((topic, key))
        return (value, partition, timestamp_ms, headers)


class FakeSettler:
    def __init__(self) -> None:
        self.settled: list[str] = []

    async def settle(self, item: ReviewItem) -> bool:
        self.settled.append(item.key)
        return True


def desk_with(*items: ReviewItem) -> tuple[ReviewDesk, FakeProducer, FakeSettler, CollectorRegistry, Clock]:
    clock, wall = Clock(100.0), Clock(2_000.0)
    queue = ReviewQueue(clock, lease_s=60.0)
    for item in items:
        queue.add(item)
    registry = CollectorRegistry()
    producer, settler = FakeProducer(), FakeSettler()
    desk = ReviewDesk(
        queue,
        producer,
        settler,
        ReviewMetrics(registry, queue, wall),
        labels=ReasonLabels(("acceptable",), ("violence",)),
        topics=TOPICS,
        clock=clock,
        wall_clock=wall,
    )
    return desk, producer, settler, registry, clock


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_verdict_is_settled_only_after_every_record_is_acknowledged() -> None:
    """Produce decision and final result, then commit, then the item leaves the queue."""
    item = review_item("img-1", enqueued_at_s=1_400.0)
    desk, producer, settler, registry, clock = desk_with(item)
    claimed = desk.claim_next(ALICE)
    assert claimed is not None
    clock.now += 12.0

    await desk.decide(ALICE, item.key, claimed[1].lease_id, VerdictRequest(VerdictKind.REJECT))

    assert [("images.rejected", b"img-1"), ("images.review-decisions", b"img-1")] == sorted(producer.sent)
    assert [item.key] == settler.settled
    assert desk.queue.get(item.key) is None
    verdicts = {"queue": "needs_review", "verdict": "reject", "rule": "blocklist_review"}
    assert 1.0 == sample(registry, "moderation_review_verdicts_total", **verdicts)
    assert 12.0 == sample(registry, "moderation_review_claim_to_verdict_seconds_sum", queue="needs_review")
    assert 600.0 == sample(registry, "moderation_review_enqueue_to_verdict_seconds_sum", queue="needs_review")


async def test_a_failed_publish_commits_nothing_and_returns_the_item() -> None:
    """Kafka did not acknowledge: the reviewer is told, the item is free again, no offset moves."""
    item = review_item("img-1")
    desk, producer, settler, _, _ = desk_with(item)
    claimed = desk.claim_next(ALICE)
    assert claimed is not None
    producer.fail = True

    with pytest.raises(PublishFailed, match="try again"):
        await desk.decide(ALICE, item.key, claimed[1].lease_id, VerdictRequest(VerdictKind.APPROVE))

    assert [] == settler.settled
    assert [item] == desk.queue.pending(Role.REVIEWER)


async def test_refused_verdicts_leave_the_claim_in_place_and_are_counted() -> None:
    """A wrong reason keeps the reviewer's lease; a foreign lease is refused."""
    item = review_item("img-1")
    desk, producer, _, registry, _ = desk_with(item)
    claimed = desk.claim_next(ALICE)
    assert claimed is not None
    lease_id = claimed[1].lease_id

    with pytest.raises(VerdictRefused):
        await desk.decide(ALICE, item.key, lease_id, VerdictRequest(VerdictKind.REJECT, "nonsense"))
    with pytest.raises(LeaseRefused):
        await desk.decide(BOB, item.key, lease_id, VerdictRequest(VerdictKind.REJECT))

    assert [] == producer.sent
    assert claimed[1] == desk.queue.held_by("alice")
    assert 1.0 == sample(registry, "moderation_review_refused_total", why="invalid")
    assert 1.0 == sample(registry, "moderation_review_refused_total", why="lease")


async def test_overrides_count_verdicts_against_the_machines_leaning_by_rule_and_band() -> None:
    """blocklist_review leans to reject: an approval of it is an override; no_signal has no leaning."""
    suspect = review_item("suspect", offset=0, enqueued_at_s=1.0)
    quiet = review_item("quiet", offset=1, enqueued_at_s=2.0, reasons=(Reason("no_signal"),))
    desk, _, _, registry, _ = desk_with(suspect, quiet)
    for _ in range(2):
        claimed = desk.claim_next(ALICE)
        assert claimed is not None
        await desk.decide(ALICE, claimed[0].key, claimed[1].lease_id, VerdictRequest(VerdictKind.APPROVE))

    labels = {"rule": "blocklist_review", "band": "0.5-0.7"}
    assert 1.0 == sample(registry, "moderation_review_leaning_verdicts_total", **labels)
    assert 1.0 == sample(registry, "moderation_review_overrides_total", **labels)
    assert 0.0 == sample(registry, "moderation_review_leaning_verdicts_total", rule="no_signal", band="none")


async def test_audit_verdicts_feed_the_agreement_counter() -> None:
    """Agreeing with the published decision counts as agree, else disagree."""
    audit = review_item(
        "audited",
        kind=ItemKind.AUDIT,
        topic="images.review-audit",
        reasons=(Reason("allowlist_match", tag="dog", confidence=0.95),),
        audit={"probability": 0.1, "published_decision": "approved"},
    )
    desk, producer, _, registry, _ = desk_with(audit)
    claimed = desk.claim_next(ALICE)
    assert claimed is not None

    await desk.decide(ALICE, audit.key, claimed[1].lease_id, VerdictRequest(VerdictKind.REJECT))

    assert [("images.review-decisions", b"audited")] == producer.sent
    assert 1.0 == sample(
        registry,
        "moderation_review_audit_verdicts_total",
        published_decision="approved",
        agreement="disagree",
    )


def test_pending_and_oldest_age_are_read_from_the_queue_at_scrape_time() -> None:
    """The SLA alert reads the age of the oldest item, in seconds since its review record was written."""
    _, _, _, registry, _ = desk_with(review_item("a", enqueued_at_s=1_500.0))

    assert 1.0 == sample(registry, "moderation_review_pending", queue="needs_review")
    assert 500.0 == sample(registry, "moderation_review_oldest_age_seconds", queue="needs_review")
    assert 0.0 == sample(registry, "moderation_review_oldest_age_seconds", queue="audit")


@pytest.mark.parametrize(
    ("confidence", "band"),
    [(None, "none"), (0.1, "0.0-0.5"), (0.5, "0.5-0.7"), (0.89, "0.7-0.9"), (0.9, "0.9-1.0")],
)
def test_confidence_bands_are_closed_label_values(confidence: float | None, band: str) -> None:
    """Bands keep the override-rate series few."""
    assert band == confidence_band(confidence)


def test_the_machines_leaning_follows_its_first_rule_or_the_published_audit_decision() -> None:
    """Only rules that point one way have a leaning."""
    assert "rejected" == machine_leaning(review_item())
    assert machine_leaning(review_item(reasons=(Reason("image_error", detail="x"),))) is None
    audit = review_item(kind=ItemKind.AUDIT, audit={"probability": 1.0, "published_decision": "rejected"})
    assert "rejected" == machine_leaning(audit)


async def test_no_metric_label_ever_carries_a_reviewer_or_image_id() -> None:
    """After verdicts of every kind, no sample's labels name who decided or what."""
    items = [review_item(f"img-{n}", offset=n, enqueued_at_s=float(n)) for n in range(3)]
    desk, _, _, registry, _ = desk_with(*items)
    for verdict in (VerdictKind.APPROVE, VerdictKind.REJECT, VerdictKind.ESCALATE):
        claimed = desk.claim_next(ALICE)
        assert claimed is not None
        await desk.decide(ALICE, claimed[0].key, claimed[1].lease_id, VerdictRequest(verdict))

    values = {
        value
        for family in registry.collect()
        for sample in family.samples
        for value in sample.labels.values()
    }

    assert set() == {value for value in values if "alice" in value or "img-" in value}
    assert "reject" in values  # the labels were read at all
