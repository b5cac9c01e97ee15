"""What a reviewer reviews: a machine result read from a review topic, as a typed ``ReviewItem``.

Pure. ``parse_item`` reads a ``moderation-result.v1`` document from ``images.needs-review``,
``images.review-audit`` or ``images.review-escalated`` and keeps what the console shows and what the verdict
records need; a record that is no such document raises ``NotReviewable`` (the source logs and skips it).
Audit copies carry ``audit`` (sampling probability and the published decision); escalations carry the
first reviewer's verdict in the ``moderation-escalation`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import orjson

from worker.domain import Reason, Tag
from worker.records import SourceCoordinates

ESCALATION_HEADER: Final = "moderation-escalation"
"""Header of an escalated item: JSON ``{"reviewer", "reason", "note", "decided_at"}`` of the first verdict."""


class ItemKind(StrEnum):
    """Which queue an item is in; the value names it in metrics and in review-decision records."""

    NEEDS_REVIEW = "needs_review"
    AUDIT = "audit"
    ESCALATED = "escalated"


class NotReviewable(Exception):
    """A record on a review topic that is not a machine result the console can show."""


@dataclass(frozen=True, slots=True)
class Audit:
    """An audit copy's sampling: ``probability`` in (0, 1] and the decision that was published."""

    probability: float
    published_decision: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """The first-level verdict that sent an item to the leads."""

    reviewer: str
    reason: str
    note: str
    decided_at: str


@dataclass(frozen=True, slots=True)
class MachineResult:
    """The fields of a ``moderation-result.v1`` the console uses; ``image_url`` is already redacted."""

    image_id: str
    decision: str
    reasons: tuple[Reason, ...]
    tags: tuple[Tag, ...]
    policy_version: str
    model_version: str | None
    analyzed_at: str
    source: SourceCoordinates
    image_url: str
    worker_version: str
    audit: Audit | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One item of the queue: the machine result, where its review record is, and when it was enqueued.

    ``key`` is ``topic/partition/offset`` of the review record (unique, unlike image ids, which a producer
    may resubmit). ``enqueued_at_s`` is the review record's Kafka timestamp, seconds since the epoch;
    ``value`` the record's bytes (an escalation forwards them unchanged).
    """

    kind: ItemKind
    result: MachineResult
    record: SourceCoordinates
    enqueued_at_s: float
    value: bytes
    escalation: Escalation | None = None

    @property
    def key(self) -> str:
        """``topic/partition/offset`` of the review record."""
        return f"{self.record.topic}/{self.record.partition}/{self.record.offset}"

    @property
    def strongest_confidence(self) -> float | None:
        """The highest confidence among the reasons (the machine's leaning strength), if any has one."""
        values = [reason.confidence for reason in self.result.reasons if reason.confidence is not None]
        return max(values) if values else None


def parse_item(
    kind: ItemKind,
    value: bytes | None,
    record: SourceCoordinates,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> ReviewItem:
    """The ``ReviewItem`` of one review-topic record; ``NotReviewable`` names what is wrong with it."""
    if not value:
        raise NotReviewable("the record has no value")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise NotReviewable("the value is not JSON") from None
    if not isinstance(document, dict) or document.get("schema") != "moderation-result.v1":
        raise NotReviewable("the value is not a moderation-result.v1 document")
    try:
        result = _machine_result(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise NotReviewable(f"the result lacks a usable field ({type(exc).__name__}: {exc})") from None
    if kind is ItemKind.AUDIT and result.audit is None:
        raise NotReviewable("an audit item must carry 'audit'")
    timestamp_ms = record.timestamp_ms if record.timestamp_ms is not None else 0
    escalation = _escalation(dict(headers).get(ESCALATION_HEADER)) if kind is ItemKind.ESCALATED else None
    return ReviewItem(kind, result, record, timestamp_ms / 1000.0, value, escalation)


def _machine_result(document: Mapping[str, object]) -> MachineResult:
    source = _mapping(document["source"])
    reasons = tuple(
        Reason(
            rule=str(reason["rule"]),
            tag=_optional_str(reason.get("tag")),
            confidence=_optional_float(reason.get("confidence")),
            detail=_optional_str(reason.get("detail")),
        )
        for reason in map(_mapping, _sequence(document["reasons"]))
    )
    tags = tuple(
        Tag(str(tag["name"]), float(str(tag["confidence"])))
        for tag in map(_mapping, _sequence(document.get("tags", [])))
    )
    audit_doc = document.get("audit")
    audit = None
    if audit_doc is not None:
        audit_map = _mapping(audit_doc)
        audit = Audit(float(str(audit_map["probability"])), str(audit_map["published_decision"]))
    datetime.fromisoformat(str(document["analyzed_at"]).replace("Z", "+00:00"))  # ValueError if not a time
    return MachineResult(
        image_id=str(document["id"]),
        decision=str(document["decision"]),
        reasons=reasons,
        tags=tags,
        policy_version=str(document["policy_version"]),
        model_version=_optional_str(document.get("model_version")),
        analyzed_at=str(document["analyzed_at"]),
        source=SourceCoordinates(
            str(source["topic"]), int(str(source["partition"])), int(str(source["offset"]))
        ),
        image_url=str(_mapping(document["image"])["url"]),
        worker_version=str(document["worker_version"]),
        audit=audit,
    )


def _escalation(raw: bytes | None) -> Escalation | None:
    if not raw:
        return None
    try:
        document = _mapping(orjson.loads(raw))
        return Escalation(
            reviewer=str(document["reviewer"]),
            reason=str(document.get("reason", "")),
            note=str(document.get("note", "")),
            decided_at=str(document.get("decided_at", "")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _mapping(value: object) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _sequence(value: object) -> Sequence[object]:
    if not isinstance(value, list):
        raise TypeError("expected an array")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))
