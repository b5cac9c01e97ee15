"""A human verdict as records: the ``review-decision.v1`` log entry and the final result or escalation.

Pure. ``plan_verdict`` checks a verdict against the item's queue and the configured reason labels and returns
the records to produce, all of which must be acknowledged before the item's offset may be committed:

- needs-review approve/reject: the decision, and the final ``moderation-result.v1`` on the approved or
  rejected topic, whose reasons start with ``human_review`` (detail: the reason label) followed by the
  machine's, and whose ``review`` object names the reviewer, lease and the machine's decision;
- escalated approve/reject (leads only): the same, with ``review.queue`` = ``escalated``;
- needs-review escalate: the decision, and the machine result unchanged on the escalation topic with the
  first verdict in the ``moderation-escalation`` header;
- audit approve/reject: the decision only. An audit verdict never publishes a result: the automatic decision
  stays published, and the verdict feeds the audit-agreement metric;
- reject and ban (a reject with ``ban``, on a needs-review or escalated item): the reject's records, and the
  ``BanEntry``'s records that add the image's hashes to the ban bank; the decision names the bank and hashes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import orjson
from jsonschema import Draft202012Validator

from worker.contracts import Submission, default_schemas_dir
from worker.domain import Decision, Reason, Verdict
from worker.policy import Rule
from worker.records import ReviewProvenance, encode_result
from worker.review.items import ESCALATION_HEADER, ItemKind, ReviewItem
from worker.review.queue import Lease, Role

REVIEW_DECISION_SCHEMA: Final = "review-decision.v1"
MAX_NOTE_CHARS: Final = 1000
ESCALATE_REASON: Final = "second_opinion"


class VerdictKind(StrEnum):
    """What a reviewer can say about an item."""

    APPROVE = "approve"
    REJECT = "reject"
    ESCALATE = "escalate"


class VerdictRefused(Exception):
    """A verdict that cannot be recorded as sent; ``message`` tells the reviewer why."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ReasonLabels:
    """The reason labels a reviewer may choose, per verdict (the first is the default)."""

    approve: tuple[str, ...]
    reject: tuple[str, ...]

    def allowed(self, verdict: VerdictKind) -> tuple[str, ...]:
        """The labels of ``verdict`` (escalation has the one fixed label)."""
        if verdict is VerdictKind.ESCALATE:
            return (ESCALATE_REASON,)
        return self.approve if verdict is VerdictKind.APPROVE else self.reject


@dataclass(frozen=True, slots=True)
class ReviewTopics:
    """Where verdicts go: final results, decisions, escalations."""

    approved: str
    rejected: str
    decisions: str
    escalated: str


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: topic, key, value, headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class VerdictPlan:
    """The records a verdict produces (decision first) and where its follow-up went (``None``: audit)."""

    records: tuple[OutRecord, ...]
    published_to: str | None


@dataclass(frozen=True, slots=True)
class VerdictRequest:
    """What the reviewer sent: the verdict, a reason label (empty: the verdict's first), a note, and for a
    reject whether the image is also banned."""

    verdict: VerdictKind
    reason: str = ""
    note: str = ""
    ban: bool = False


@dataclass(frozen=True, slots=True)
class BanEntry:
    """An image going into a hash bank with a reject: its hashes, and the bank-topic records that add it."""

    bank: str
    sha256: str
    pdq: str | None
    pdq_quality: int | None
    records: tuple[OutRecord, ...]


def check_bannable(item: ReviewItem, request: VerdictRequest) -> None:
    """``VerdictRefused`` unless a ban goes with a reject that publishes a final result."""
    if request.verdict is not VerdictKind.REJECT:
        raise VerdictRefused("only a reject can ban the image")
    if item.kind is ItemKind.AUDIT:
        raise VerdictRefused("audit items are not banned: their automatic decision stays published")


def plan_verdict(
    item: ReviewItem,
    lease: Lease,
    role: Role,
    request: VerdictRequest,
    *,
    labels: ReasonLabels,
    topics: ReviewTopics,
    claimed_at: datetime,
    decided_at: datetime,
    ban: BanEntry | None = None,
) -> VerdictPlan:
    """The records of ``request`` on ``item``; ``VerdictRefused`` for a verdict the item's queue forbids,
    an unknown reason label, an over-long note, or a ban without its ``ban`` entry or on another verdict."""
    if request.ban:
        check_bannable(item, request)
        if ban is None:
            raise VerdictRefused("banning is not enabled on this console")
    allowed = labels.allowed(request.verdict)
    reason = request.reason or allowed[0]
    if reason not in allowed:
        raise VerdictRefused(
            f"'{reason[:64]}' is not a reason for {request.verdict}: choose {', '.join(allowed)}"
        )
    if len(request.note) > MAX_NOTE_CHARS:
        raise VerdictRefused(f"the note is longer than {MAX_NOTE_CHARS} characters")
    if request.verdict is VerdictKind.ESCALATE and item.kind is not ItemKind.NEEDS_REVIEW:
        raise VerdictRefused("only first-level items can be escalated")
    if item.kind is ItemKind.ESCALATED and role is not Role.LEAD:
        raise VerdictRefused("only leads decide escalated items")
    key = item.result.image_id.encode()
    follow_up: OutRecord | None
    if item.kind is ItemKind.AUDIT:
        follow_up = None
    elif request.verdict is VerdictKind.ESCALATE:
        follow_up = _escalation(
            item, lease=lease, reason=reason, note=request.note, decided_at=decided_at, topic=topics.escalated
        )
    else:
        follow_up = _final_result(
            item,
            lease=lease,
            role=role,
            verdict=request.verdict,
            reason=reason,
            decided_at=decided_at,
            topics=topics,
        )
    published_to = None if follow_up is None else follow_up.topic
    decision = OutRecord(
        topics.decisions,
        key,
        decision_document(
            item,
            lease=lease,
            role=role,
            verdict=request.verdict,
            reason=reason,
            note=request.note,
            claimed_at=claimed_at,
            decided_at=decided_at,
            published_to=published_to,
            ban=ban if request.ban else None,
        ),
    )
    follow_ups = () if follow_up is None else (follow_up,)
    banned = ban.records if request.ban and ban is not None else ()
    return VerdictPlan((decision, *follow_ups, *banned), published_to)


def decision_document(
    item: ReviewItem,
    *,
    lease: Lease,
    role: Role,
    verdict: VerdictKind,
    reason: str,
    note: str,
    claimed_at: datetime,
    decided_at: datetime,
    published_to: str | None,
    ban: BanEntry | None = None,
) -> bytes:
    """Serialise the ``review-decision.v1`` of a verdict; raises ``ValueError`` if it breaks the schema."""
    result, reviewed = item.result, orjson.loads(item.value)
    machine: dict[str, object] = {
        "decision": result.decision,
        "rules": [reason.rule for reason in result.reasons],
        # Copied from the record reviewed, so they are exactly as moderation-result.v1 wrote them.
        "reasons": reviewed.get("reasons", []),
        "tags": reviewed.get("tags", []),
        "policy_version": result.policy_version,
        "model_version": result.model_version,
        "source": _coordinates(result.source.topic, result.source.partition, result.source.offset),
    }
    if result.audit is not None:
        machine["audit_probability"] = result.audit.probability
        machine["published_decision"] = result.audit.published_decision
    document = {
        "schema": REVIEW_DECISION_SCHEMA,
        "id": result.image_id,
        "queue": str(item.kind),
        "verdict": str(verdict),
        "reason": reason,
        "note": note,
        "reviewer": lease.reviewer,
        "role": str(role),
        "lease_id": lease.lease_id,
        "claimed_at": claimed_at,
        "decided_at": decided_at,
        "item": _coordinates(item.record.topic, item.record.partition, item.record.offset),
        "machine": machine,
        "published_to": published_to,
    }
    if ban is not None:
        document["ban"] = {
            "bank": ban.bank,
            "sha256": ban.sha256,
            "pdq": ban.pdq,
            "pdq_quality": ban.pdq_quality,
        }
    encoded = orjson.dumps(document, option=orjson.OPT_UTC_Z)
    error = next(iter(_decision_validator().iter_errors(orjson.loads(encoded))), None)
    if error is not None:
        raise ValueError(f"review-decision.v1 violated at {error.json_path}: {error.validator}")
    return encoded


def _final_result(
    item: ReviewItem,
    *,
    lease: Lease,
    role: Role,
    verdict: VerdictKind,
    reason: str,
    decided_at: datetime,
    topics: ReviewTopics,
) -> OutRecord:
    result = item.result
    decision = Decision.APPROVED if verdict is VerdictKind.APPROVE else Decision.REJECTED
    reasons = (Reason(str(Rule.HUMAN_REVIEW), detail=reason), *result.reasons)
    queue = "escalated" if item.kind is ItemKind.ESCALATED else "needs_review"
    value = encode_result(
        # The result's URL is already redacted; redacting it again changes nothing.
        submission=Submission(id=result.image_id, image_url=result.image_url),
        verdict=Verdict(decision, reasons[:64]),
        policy_version=result.policy_version,
        model_version=result.model_version,
        analyzed_at=decided_at,
        source=result.source,
        worker_version=result.worker_version,
        tags=result.tags,
        review=ReviewProvenance(
            verdict=str(verdict),
            reason=reason,
            reviewer=lease.reviewer,
            role=str(role),
            decided_at=decided_at,
            lease_id=lease.lease_id,
            machine_decision=result.decision,
            queue=queue,
        ),
    )
    topic = topics.approved if decision is Decision.APPROVED else topics.rejected
    return OutRecord(topic, result.image_id.encode(), value)


def _escalation(
    item: ReviewItem, *, lease: Lease, reason: str, note: str, decided_at: datetime, topic: str
) -> OutRecord:
    first = {"reviewer": lease.reviewer, "reason": reason, "note": note, "decided_at": decided_at}
    header = orjson.dumps(first, option=orjson.OPT_UTC_Z)
    return OutRecord(topic, item.result.image_id.encode(), item.value, ((ESCALATION_HEADER, header),))


def _coordinates(topic: str, partition: int, offset: int) -> dict[str, object]:
    return {"topic": topic, "partition": partition, "offset": offset}


@functools.cache
def _decision_validator() -> Draft202012Validator:
    schema = orjson.loads((default_schemas_dir() / f"{REVIEW_DECISION_SCHEMA}.json").read_bytes())
    return Draft202012Validator(schema)


def headers_of(record: OutRecord) -> list[tuple[str, bytes]]:
    """The record's headers in the list form Kafka clients take."""
    return list(record.headers)


def first_rule(reasons: Sequence[Reason]) -> str:
    """The rule metrics count a verdict under: the machine's most severe reason, or ``none``."""
    return reasons[0].rule if reasons else "none"
