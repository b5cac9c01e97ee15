"""Specification of the review queue: oldest first, filters, and leases on an injected clock."""

from __future__ import annotations

import itertools

import pytest

from tests.review_samples import review_item
from worker.domain import Reason
from worker.review.items import ItemKind
from worker.review.queue import ItemFilter, LeaseRefused, ReviewQueue, Role


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def queue_with(*items_: object, lease_s: float = 60.0) -> tuple[ReviewQueue, FakeClock]:
    clock = FakeClock()
    counter = itertools.count(1)
    queue = ReviewQueue(clock, lease_s=lease_s, lease_ids=lambda: f"lease-{next(counter)}")
    for item in items_:
        assert queue.add(item)  # type: ignore[arg-type]
    return queue, clock


def test_pending_items_come_oldest_first_whatever_the_order_they_arrived_in() -> None:
    """The queue is ordered by the review record's timestamp, not by arrival."""
    queue, _ = queue_with(
        review_item("new", offset=0, enqueued_at_s=300.0), review_item("old", offset=1, enqueued_at_s=100.0)
    )

    assert ["old", "new"] == [item.result.image_id for item in queue.pending(Role.REVIEWER)]


def test_the_same_record_is_queued_once() -> None:
    """A record delivered twice (a rebalance) does not appear twice."""
    queue, _ = queue_with(review_item("a"))

    assert queue.add(review_item("a")) is False
    assert 1 == len(queue.pending(Role.REVIEWER))


def test_filters_select_by_rule_tag_and_queue() -> None:
    """A reviewer can work on one rule (or tag, or queue) at a time."""
    weapon = review_item("weapon", offset=0)
    quiet = review_item("quiet", offset=1, reasons=(Reason("no_signal"),))
    queue, _ = queue_with(weapon, quiet)

    assert ["quiet"] == [
        i.result.image_id for i in queue.pending(Role.REVIEWER, ItemFilter(rule="no_signal"))
    ]
    assert ["weapon"] == [i.result.image_id for i in queue.pending(Role.REVIEWER, ItemFilter(tag="weapon"))]
    assert [] == queue.pending(Role.REVIEWER, ItemFilter(kind=ItemKind.AUDIT))


def test_escalations_are_in_the_leads_queue_only() -> None:
    """Reviewers never see or claim escalated items; leads see every queue."""
    escalated = review_item("esc", kind=ItemKind.ESCALATED, topic="images.review-escalated")
    queue, _ = queue_with(escalated)

    assert [] == queue.pending(Role.REVIEWER)
    assert queue.claim_next("rita", Role.REVIEWER) is None
    with pytest.raises(LeaseRefused, match="leads"):
        queue.claim(escalated.key, "rita", Role.REVIEWER)
    lease = queue.claim_next("lena", Role.LEAD)
    assert lease is not None
    assert escalated.key == lease.item_key


def test_two_reviewers_never_hold_the_same_item() -> None:
    """A claimed item is invisible to the next reviewer, who gets the next item or nothing."""
    first, second = (
        review_item("a", offset=0, enqueued_at_s=1.0),
        review_item("b", offset=1, enqueued_at_s=2.0),
    )
    queue, _ = queue_with(first, second)

    alice = queue.claim_next("alice", Role.REVIEWER)
    bob = queue.claim_next("bob", Role.REVIEWER)
    carol = queue.claim_next("carol", Role.REVIEWER)

    assert alice is not None
    assert bob is not None
    assert (first.key, second.key) == (alice.item_key, bob.item_key)
    assert carol is None
    with pytest.raises(LeaseRefused, match="another reviewer"):
        queue.claim(first.key, "carol", Role.REVIEWER)


def test_a_reviewer_who_asks_again_gets_the_item_they_already_hold() -> None:
    """Reloading the page does not take a second item (or a second lease)."""
    queue, _ = queue_with(review_item("a", offset=0), review_item("b", offset=1))

    first = queue.claim_next("alice", Role.REVIEWER)
    again = queue.claim_next("alice", Role.REVIEWER)

    assert first == again


def test_an_expired_lease_returns_the_item_and_its_verdict_is_refused() -> None:
    """After lease_s without renewal the item is free again; a late verdict gets a clear message."""
    item = review_item("a")
    queue, clock = queue_with(item, lease_s=60.0)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None

    clock.now += 60.0

    assert [item] == queue.pending(Role.REVIEWER)
    with pytest.raises(LeaseRefused, match="expired"):
        queue.begin_verdict(item.key, lease.lease_id, "alice")
    bob = queue.claim_next("bob", Role.REVIEWER)
    assert bob is not None
    with pytest.raises(LeaseRefused, match="another reviewer holds this item"):
        queue.begin_verdict(item.key, lease.lease_id, "alice")


def test_renewal_extends_the_lease_from_now() -> None:
    """An active reviewer keeps the item as long as they renew."""
    item = review_item("a")
    queue, clock = queue_with(item, lease_s=60.0)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None

    clock.now += 50.0
    renewed = queue.renew(item.key, lease.lease_id, "alice")
    clock.now += 50.0

    assert 100.0 + 50.0 + 60.0 == renewed.expires_at
    assert [] == queue.pending(Role.REVIEWER)
    assert (item, renewed) == queue.begin_verdict(item.key, lease.lease_id, "alice")


def test_a_verdict_under_someone_elses_lease_is_refused() -> None:
    """Knowing a lease id is not enough: it must be the sender's own."""
    item = review_item("a")
    queue, _ = queue_with(item)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None

    with pytest.raises(LeaseRefused, match="another reviewer"):
        queue.begin_verdict(item.key, lease.lease_id, "mallory")


def test_an_item_being_decided_cannot_be_claimed_and_leaves_the_queue_when_finished() -> None:
    """Between the verdict and its acknowledgement nobody else can take the item; then it is gone."""
    item = review_item("a")
    queue, clock = queue_with(item, lease_s=60.0)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None
    queue.begin_verdict(item.key, lease.lease_id, "alice")

    clock.now += 120.0  # even past the lease

    assert queue.claim_next("bob", Role.REVIEWER) is None
    with pytest.raises(LeaseRefused, match="already being recorded"):
        queue.begin_verdict(item.key, lease.lease_id, "alice")
    assert item == queue.finish(item.key)
    with pytest.raises(LeaseRefused, match="no longer in the queue"):
        queue.claim(item.key, "bob", Role.REVIEWER)


def test_a_failed_publish_returns_the_item_to_the_queue() -> None:
    """abort() frees the item for anyone, the sender included."""
    item = review_item("a")
    queue, _ = queue_with(item)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None
    queue.begin_verdict(item.key, lease.lease_id, "alice")

    queue.abort(item.key)

    assert [item] == queue.pending(Role.REVIEWER)


def test_release_gives_the_item_back_and_claiming_another_ends_the_first_lease() -> None:
    """A reviewer holds one item at a time."""
    first, second = (
        review_item("a", offset=0, enqueued_at_s=1.0),
        review_item("b", offset=1, enqueued_at_s=2.0),
    )
    queue, _ = queue_with(first, second)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None

    queue.claim(second.key, "alice", Role.REVIEWER)

    assert [first] == queue.pending(Role.REVIEWER)
    queue.release(second.key, queue.held_by("alice").lease_id, "alice")  # type: ignore[union-attr]
    assert [first, second] == queue.pending(Role.REVIEWER)


def test_counts_report_every_queued_item_and_the_oldest_enqueue_time() -> None:
    """The pending gauge counts held items too; the age alert reads the oldest."""
    queue, _ = queue_with(
        review_item("a", offset=0, enqueued_at_s=50.0), review_item("b", offset=1, enqueued_at_s=20.0)
    )
    queue.claim_next("alice", Role.REVIEWER)

    counts = queue.counts()

    assert (2, 20.0) == counts[ItemKind.NEEDS_REVIEW]
    assert (0, None) == counts[ItemKind.AUDIT]


def test_dropping_a_partitions_items_ends_their_leases() -> None:
    """On revocation the items go to another console; here they are gone."""
    item = review_item("a")
    queue, _ = queue_with(item)
    lease = queue.claim_next("alice", Role.REVIEWER)
    assert lease is not None

    queue.drop([item.key])

    assert queue.held_by("alice") is None
    with pytest.raises(LeaseRefused, match="no longer in the queue"):
        queue.renew(item.key, lease.lease_id, "alice")
