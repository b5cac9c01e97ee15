"""The review desk: what a reviewer can do (claim, renew, release, decide), against the queue and Kafka.

``decide`` is one verdict's journey: the lease is checked, the records are planned
(``worker.review.verdicts``), the item is marked deciding, every record is produced and acknowledged, and
only then is the item settled (its offset committed, ``worker.review.source``) and removed from the queue.
If producing fails the item returns to the queue and the reviewer is told; nothing is committed. A reject
and ban first asks the ``Banner`` for the image's bank entry, whose records are produced with the verdict's.
The producer, the settler and the banner are protocols, so the desk is tested with fakes and runs on aiokafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from worker.clock import Clock
from worker.review.auth import Identity
from worker.review.items import ReviewItem
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ItemFilter, Lease, LeaseRefused, ReviewQueue, Role
from worker.review.verdicts import (
    BanEntry,
    ReasonLabels,
    ReviewTopics,
    VerdictPlan,
    VerdictRefused,
    VerdictRequest,
    check_bannable,
    plan_verdict,
)

log = logging.getLogger(__name__)


class RecordProducer(Protocol):
    """aiokafka's ``AIOKafkaProducer.send_and_wait`` shape: returns once the broker acknowledged."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> object: ...


class Settler(Protocol):
    """``ReviewSource.settle``: commit an item whose verdict is acknowledged."""

    async def settle(self, item: ReviewItem) -> bool: ...


class Banner(Protocol):
    """``worker.review.ban.ImageBanner``: the hashes of an item's image and the records banning it."""

    @property
    def bank(self) -> str: ...

    async def entry(self, item: ReviewItem) -> BanEntry: ...


class PublishFailed(Exception):
    """The verdict's records were not all acknowledged; the item is back in the queue."""


class ReviewDesk:
    """Reviewer actions over ``queue``; verdicts produced with ``producer`` and settled with ``settler``.

    ``clock`` is the queue's monotonic clock, ``wall_clock`` epoch seconds (for record timestamps).
    ``banner`` (``None``: no reject and ban) is offered to ``ban_role`` (leads always may).
    """

    def __init__(
        self,
        queue: ReviewQueue,
        producer: RecordProducer,
        settler: Settler,
        metrics: ReviewMetrics,
        *,
        labels: ReasonLabels,
        topics: ReviewTopics,
        clock: Clock,
        wall_clock: Callable[[], float],
        banner: Banner | None = None,
        ban_role: Role = Role.LEAD,
    ) -> None:
        self.queue = queue
        self.labels = labels
        self._producer = producer
        self._settler = settler
        self._metrics = metrics
        self._topics = topics
        self._clock = clock
        self._wall_clock = wall_clock
        self._banner = banner
        self._ban_role = ban_role

    @property
    def ban_bank(self) -> str | None:
        """The bank reject and ban adds to (``None``: banning is off)."""
        return None if self._banner is None else self._banner.bank

    def may_ban(self, who: Identity) -> bool:
        """Whether the reviewer is offered reject and ban."""
        return self._banner is not None and (who.role is Role.LEAD or self._ban_role is Role.REVIEWER)

    def claim_next(self, who: Identity, where: ItemFilter | None = None) -> tuple[ReviewItem, Lease] | None:
        """The item the reviewer holds, else a claim on the oldest free one; ``None`` when none is free."""
        lease = self.queue.claim_next(who.reviewer, who.role, where)
        if lease is None:
            return None
        item = self.queue.get(lease.item_key)
        return None if item is None else (item, lease)

    def claim(self, who: Identity, key: str) -> tuple[ReviewItem, Lease]:
        """A claim on item ``key``; ``LeaseRefused`` when someone else holds it or it is gone."""
        try:
            lease = self.queue.claim(key, who.reviewer, who.role)
        except LeaseRefused:
            self._metrics.observe_refused("lease")
            raise
        item = self.queue.get(key)
        if item is None:  # claim() raised for a missing item already; kept for the type checker
            raise LeaseRefused("this item is no longer in the queue")
        return item, lease

    def renew(self, who: Identity, key: str, lease_id: str) -> Lease:
        """Extend the reviewer's claim; ``LeaseRefused`` when it already ended."""
        try:
            return self.queue.renew(key, lease_id, who.reviewer)
        except LeaseRefused:
            self._metrics.observe_refused("lease")
            raise

    def release(self, who: Identity, key: str, lease_id: str) -> None:
        """Give the item back; ``LeaseRefused`` when the claim already ended."""
        self.queue.release(key, lease_id, who.reviewer)

    async def decide(self, who: Identity, key: str, lease_id: str, request: VerdictRequest) -> VerdictPlan:
        """Record a verdict; returns what was produced.

        ``LeaseRefused`` (expired or foreign lease, item gone), ``VerdictRefused`` (not allowed for this item
        or reason unknown) leave the queue as it was; ``PublishFailed`` returns the item to the queue.
        """
        try:
            item, lease = self.queue.check(key, lease_id, who.reviewer)
        except LeaseRefused:
            self._metrics.observe_refused("lease")
            raise
        try:
            ban = await self._ban_entry(who, item, request)
        except VerdictRefused:
            self._metrics.observe_refused("invalid")
            raise
        now_wall, now = self._wall_clock(), self._clock()
        try:
            plan = plan_verdict(
                item,
                lease,
                who.role,
                request,
                labels=self.labels,
                topics=self._topics,
                claimed_at=datetime.fromtimestamp(now_wall - (now - lease.claimed_at), UTC),
                decided_at=datetime.fromtimestamp(now_wall, UTC),
                ban=ban,
            )
        except VerdictRefused:
            self._metrics.observe_refused("invalid")
            raise
        self.queue.begin_verdict(key, lease_id, who.reviewer)
        try:
            await asyncio.gather(
                *(
                    self._producer.send_and_wait(
                        record.topic, record.value, key=record.key, headers=list(record.headers)
                    )
                    for record in plan.records
                )
            )
        except Exception as exc:
            self.queue.abort(key)
            log.warning("review_publish_failed", extra={"item": key, "error": type(exc).__name__})
            raise PublishFailed(
                "the verdict could not be recorded (Kafka did not acknowledge it); try again"
            ) from exc
        await self._settler.settle(item)
        self.queue.finish(key)
        self._metrics.observe_verdict(item, request.verdict, claimed_s=now - lease.claimed_at)
        if ban is not None:
            self._metrics.observe_ban()
            log.info("review_banned", extra={"bank": ban.bank, "sha256": ban.sha256})
        return plan

    async def _ban_entry(self, who: Identity, item: ReviewItem, request: VerdictRequest) -> BanEntry | None:
        """The bank entry of a reject and ban (``None`` for any other verdict); ``VerdictRefused`` when
        this reviewer may not ban, the verdict cannot carry a ban, or the image cannot be read."""
        if not request.ban:
            return None
        if self._banner is None:
            raise VerdictRefused("banning is not enabled on this console")
        if not self.may_ban(who):
            raise VerdictRefused("only leads can ban images on this console")
        check_bannable(item, request)
        return await self._banner.entry(item)
