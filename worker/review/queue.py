"""The review queue: pending items oldest first, filters, and leases that keep two reviewers apart.

Pure: no Kafka, HTTP or wall clock. Time is an injected monotonic ``Clock`` (seconds); lease ids come from an
injected generator. A reviewer holds at most one lease at a time; an item under a live lease is shown to
nobody else; a lease that is not renewed expires and its item returns to the queue. A verdict is accepted
only under the live lease of the reviewer who sends it (``begin_verdict``), and while it is being published
the item is *deciding*: nobody can claim it, and it leaves the queue once the records are acknowledged
(``finish``) or returns to it if publishing failed (``abort``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from worker.clock import Clock
from worker.review.items import ItemKind, ReviewItem

DEFAULT_LEASE_S = 300.0


class Role(StrEnum):
    """What a signed-in person may see: reviewers the first-level queue, leads also the escalations."""

    REVIEWER = "reviewer"
    LEAD = "lead"

    def sees(self, kind: ItemKind) -> bool:
        """True if items of ``kind`` are in this role's queue."""
        return self is Role.LEAD or kind is not ItemKind.ESCALATED


@dataclass(frozen=True, slots=True)
class Lease:
    """A reviewer's claim on one item until ``expires_at`` (on the queue's clock, seconds).

    ``claimed_at`` is when the claim was first taken (renewals keep it), for the claim-to-verdict histogram.
    """

    lease_id: str
    item_key: str
    reviewer: str
    claimed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """Which pending items to show: ``rule`` matches any reason's rule, ``tag`` the tag of any reason (the tag
    a rule fired on); ``kind`` one queue. ``None`` matches everything."""

    rule: str | None = None
    tag: str | None = None
    kind: ItemKind | None = None

    def matches(self, item: ReviewItem) -> bool:
        """True if ``item`` passes every set criterion."""
        if self.kind is not None and item.kind is not self.kind:
            return False
        if self.rule is not None and self.rule not in {reason.rule for reason in item.result.reasons}:
            return False
        if self.tag is not None:
            return self.tag in {reason.tag for reason in item.result.reasons}
        return True


class LeaseRefused(Exception):
    """A claim, renewal or verdict under a lease that is not (or no longer) the sender's; ``message`` says
    which case it is in words a reviewer understands."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class _Entry:
    item: ReviewItem
    lease: Lease | None = None
    deciding: bool = False


def new_lease_id() -> str:
    """An unguessable lease id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class ReviewQueue:
    """Items awaiting a human verdict, keyed by ``ReviewItem.key`` (the review record's coordinates).

    ``lease_s`` is how long a claim or a renewal lasts. Not thread-safe; the console runs on one event loop.
    """

    def __init__(
        self, clock: Clock, *, lease_s: float = DEFAULT_LEASE_S, lease_ids: Callable[[], str] = new_lease_id
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._clock = clock
        self._lease_s = lease_s
        self._lease_ids = lease_ids
        self._entries: dict[str, _Entry] = {}

    @property
    def lease_s(self) -> float:
        """How long a claim or renewal lasts, seconds."""
        return self._lease_s

    def add(self, item: ReviewItem) -> bool:
        """Queue ``item``; False (and nothing changes) if an item with its key is already queued."""
        if item.key in self._entries:
            return False
        self._entries[item.key] = _Entry(item)
        return True

    def drop(self, keys: Iterable[str]) -> None:
        """Forget items (their partition moved to another console); their leases end with them."""
        for key in keys:
            self._entries.pop(key, None)

    def get(self, key: str) -> ReviewItem | None:
        """The queued item with ``key``, or ``None``."""
        entry = self._entries.get(key)
        return None if entry is None else entry.item

    def pending(self, role: Role, where: ItemFilter | None = None) -> list[ReviewItem]:
        """Items nobody holds or decides, visible to ``role`` and matching ``where``, oldest first."""
        now = self._clock()
        where = where or ItemFilter()
        items = [
            entry.item
            for entry in self._entries.values()
            if self._free(entry, now) and role.sees(entry.item.kind) and where.matches(entry.item)
        ]
        return sorted(items, key=_age_order)

    def counts(self) -> dict[ItemKind, tuple[int, float | None]]:
        """Per kind: how many items are queued (held or not) and the enqueue time of the oldest (epoch s)."""
        result: dict[ItemKind, tuple[int, float | None]] = dict.fromkeys(ItemKind, (0, None))
        for entry in self._entries.values():
            count, oldest = result[entry.item.kind]
            enqueued = entry.item.enqueued_at_s
            result[entry.item.kind] = (count + 1, enqueued if oldest is None else min(oldest, enqueued))
        return result

    def held_by(self, reviewer: str) -> Lease | None:
        """The live lease ``reviewer`` holds, if any."""
        now = self._clock()
        for entry in self._entries.values():
            lease = entry.lease
            if (
                lease is not None
                and lease.reviewer == reviewer
                and lease.expires_at > now
                and not entry.deciding
            ):
                return lease
        return None

    def claim_next(self, reviewer: str, role: Role, where: ItemFilter | None = None) -> Lease | None:
        """The reviewer's current lease if they hold one, else a new lease on the oldest free item.

        ``None`` when nothing visible to ``role`` and matching ``where`` is free.
        """
        held = self.held_by(reviewer)
        if held is not None:
            return held
        pending = self.pending(role, where)
        if not pending:
            return None
        return self._lease(self._entries[pending[0].key], reviewer)

    def claim(self, key: str, reviewer: str, role: Role) -> Lease:
        """A lease on the item ``key`` (the reviewer's own if they already hold it); ``LeaseRefused`` if it
        is gone, held by someone else or not in the reviewer's queue. Other leases of the reviewer end."""
        entry = self._entry(key)
        now = self._clock()
        if not role.sees(entry.item.kind):
            raise LeaseRefused("this item is in the leads' escalation queue")
        if entry.lease is not None and entry.lease.reviewer == reviewer and entry.lease.expires_at > now:
            return entry.lease
        if not self._free(entry, now):
            raise LeaseRefused("another reviewer is working on this item")
        held = self.held_by(reviewer)
        if held is not None:
            self._entries[held.item_key].lease = None
        return self._lease(entry, reviewer)

    def renew(self, key: str, lease_id: str, reviewer: str) -> Lease:
        """Extend the live lease ``lease_id`` by ``lease_s`` from now; ``LeaseRefused`` if it is not live."""
        entry = self._entry(key)
        lease = self._check(entry, lease_id, reviewer)
        renewed = replace(lease, expires_at=self._clock() + self._lease_s)
        entry.lease = renewed
        return renewed

    def release(self, key: str, lease_id: str, reviewer: str) -> None:
        """Give the item back to the queue; ``LeaseRefused`` if the lease is not the reviewer's live one."""
        entry = self._entry(key)
        self._check(entry, lease_id, reviewer)
        entry.lease = None

    def check(self, key: str, lease_id: str, reviewer: str) -> tuple[ReviewItem, Lease]:
        """The item and the live lease ``lease_id`` of ``reviewer`` on it; ``LeaseRefused`` otherwise."""
        entry = self._entry(key)
        return entry.item, self._check(entry, lease_id, reviewer)

    def begin_verdict(self, key: str, lease_id: str, reviewer: str) -> tuple[ReviewItem, Lease]:
        """Accept a verdict under ``lease_id``: the item becomes *deciding* until ``finish`` or ``abort``.

        ``LeaseRefused`` when the lease expired, belongs to someone else, or the item was already decided.
        """
        entry = self._entry(key)
        lease = self._check(entry, lease_id, reviewer)
        entry.deciding = True
        return entry.item, lease

    def finish(self, key: str) -> ReviewItem | None:
        """The verdict's records are acknowledged: the item leaves the queue (returned, if it was there)."""
        entry = self._entries.pop(key, None)
        return None if entry is None else entry.item

    def abort(self, key: str) -> None:
        """Publishing the verdict failed: the item is free again (its lease ends)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.deciding = False
            entry.lease = None

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            raise LeaseRefused(
                "this item is no longer in the queue (already decided, or moved to another console)"
            )
        return entry

    def _check(self, entry: _Entry, lease_id: str, reviewer: str) -> Lease:
        lease = entry.lease
        if entry.deciding:
            raise LeaseRefused("a verdict for this item is already being recorded")
        if lease is None or lease.lease_id != lease_id:
            if lease is not None and lease.expires_at > self._clock() and lease.reviewer != reviewer:
                raise LeaseRefused("another reviewer holds this item now; your claim on it has ended")
            raise LeaseRefused("your claim on this item has ended; open it again to review it")
        if lease.reviewer != reviewer:
            raise LeaseRefused("this claim belongs to another reviewer")
        if lease.expires_at <= self._clock():
            raise LeaseRefused("your claim on this item expired; open it again to review it")
        return lease

    def _free(self, entry: _Entry, now: float) -> bool:
        return not entry.deciding and (entry.lease is None or entry.lease.expires_at <= now)

    def _lease(self, entry: _Entry, reviewer: str) -> Lease:
        now = self._clock()
        lease = Lease(
            self._lease_ids(), entry.item.key, reviewer, claimed_at=now, expires_at=now + self._lease_s
        )
        entry.lease = lease
        return lease


def _age_order(item: ReviewItem) -> tuple[float, str]:
    return item.enqueued_at_s, item.key
