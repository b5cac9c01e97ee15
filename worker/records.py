"""What the worker writes: result and dead-letter documents, and the output record handed to Kafka.

``encode_result`` and ``encode_dead_letter`` serialise the ``moderation-result.v1`` and ``dead-letter.v1``
contracts; ``ConsumedRecord`` is what the Kafka loop hands in, ``Routed`` carries one encoded record back to
it. Pure: no Kafka, HTTP or Azure imports.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

import orjson

from worker.contracts import InvalidSubmission, SchemaName, Submission
from worker.domain import Analysis, Reason, Tag, Verdict
from worker.redact import redact_text, redact_url

DEFAULT_KEEP_VALUE_BYTES: Final = 262_144
"""Largest prefix of an original value a dead letter carries, so the dead letter fits the broker's limit."""
MAX_RESULT_TAGS: Final = 32
MAX_HEADERS: Final = 64
"""Headers a dead letter keeps (the first ones); Kafka records rarely carry more than a handful."""
_RESULT_SCHEMA: Final = str(SchemaName.MODERATION_RESULT)


class SourceCoordinates(NamedTuple):
    """Where a consumed record came from; ``timestamp_ms`` is the record's Kafka timestamp."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


class ConsumedRecord(Protocol):
    """A record as the consumer delivers it: the fields of aiokafka's ``ConsumerRecord`` the worker reads.

    Read-only, so an immutable stand-in (a frozen dataclass in tests and benchmarks) satisfies it too.
    ``timestamp`` is the record's Kafka timestamp in milliseconds since the epoch; ``value`` is ``None`` for
    a tombstone.
    """

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]:
        """Kafka allows a header without a value (``None``)."""


class Outcome(NamedTuple):
    """What a routed record counts as in metrics: the dead-letter reason or the decision, and the submit
    time in seconds since the epoch (a float is all the end-to-end latency needs, and cheaper per record)."""

    label: str
    submitted_at_s: float | None


class ContentHashes(NamedTuple):
    """Hashes of the image's bytes (worker-side fetch only): ``sha256`` and ``pdq`` as lower-case hex,
    ``pdq_quality`` 0-100 (PDQ's own score: below 50 the hash says little); PDQ is ``None`` when the
    bytes could not be decoded as pixels."""

    sha256: str
    pdq: str | None = None
    pdq_quality: int | None = None


class AnalysisSource(StrEnum):
    """Where a result's analysis came from: the analyzer call, the analysis cache, or none (a hash bank
    matched and decided)."""

    ANALYZER = "analyzer"
    CACHE = "cache"
    BANK = "bank"


class SideRecord(NamedTuple):
    """A record produced alongside an input's result, on a topic of its own (an audit copy, the full
    analysis, a shadow result): never on one of the four result topics, where an id has exactly one record."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]


class Decided(NamedTuple):
    """One submission as decided, what a ``SideRecordSource`` of ``worker.moderation`` is told.

    ``analysis`` is ``None`` when the analyzer refused the image; ``analyzed_at`` is the result's own
    timestamp (timezone-aware), ``policy_version`` the live policy's and ``hold`` whether a hold was in
    force (so another policy can be asked the same question).
    """

    submission: Submission
    verdict: Verdict
    analysis: Analysis | None
    policy_version: str
    source: SourceCoordinates
    analyzed_at: datetime
    hold: bool = False


class AuditMark(NamedTuple):
    """What an audit item adds to its result: the inclusion probability with which it was sampled."""

    probability: float


class ReviewProvenance(NamedTuple):
    """The human verdict on a reviewed image, written as the result's ``review`` object.

    ``verdict`` is ``approve`` or ``reject``; ``queue`` is ``needs_review`` or ``escalated`` (a lead
    decided); ``machine_decision`` is what the worker had decided. ``decided_at`` must be timezone-aware.
    """

    verdict: str
    reason: str
    reviewer: str
    role: str
    decided_at: datetime
    lease_id: str
    machine_decision: str
    queue: str


class Routed(NamedTuple):
    """One output record: where it goes, what it says, the label metrics count it under, and its outcome.

    ``side`` are the records produced with it; the input's offset becomes committable only once the result
    and every side record are acknowledged. A named tuple rather than a frozen dataclass: one is built per
    record, at a third of the cost.
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    label: str
    outcome: Outcome
    side: tuple[SideRecord, ...] = ()


class Stall(Protocol):
    """What a record's handler may tell the Kafka loop about the record's partition while it works on it."""

    __slots__ = ()

    def stall(self) -> None:
        """The record cannot progress (retry budget spent): stop intake from its partition."""

    def unstall(self) -> None:
        """The record progresses again: intake from its partition may resume."""


def _in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (orjson writes it with ``OPT_UTC_Z`` as ``...Z``); naive: ValueError."""
    if moment.tzinfo is UTC:
        return moment
    if moment.utcoffset() is None:
        raise ValueError("timestamps in contracts must be timezone-aware")
    return moment.astimezone(UTC)


def _reason_document(reason: Reason) -> dict[str, object]:
    document: dict[str, object] = {"rule": reason.rule}
    if reason.tag is not None:
        document["tag"] = reason.tag
    if reason.confidence is not None:
        document["confidence"] = reason.confidence
    if reason.detail is not None:
        document["detail"] = redact_text(reason.detail)[:256]
    return document


def _by_confidence(tag: Tag) -> tuple[float, str]:
    return -tag.confidence, tag.name


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def encode_result(
    *,
    submission: Submission,
    verdict: Verdict,
    policy_version: str,
    model_version: str | None,
    analyzed_at: datetime,
    source: SourceCoordinates,
    worker_version: str,
    tags: Sequence[Tag] = (),
    audit: AuditMark | None = None,
    review: ReviewProvenance | None = None,
    content: ContentHashes | None = None,
    analysis_source: AnalysisSource | None = None,
) -> bytes:
    """Serialise a ``moderation-result.v1`` document; the image URL is written redacted.

    ``tags`` are the ones worth showing downstream (matched or top tags); at most ``MAX_RESULT_TAGS`` are
    kept, highest confidence first. ``analyzed_at`` must be timezone-aware. ``audit`` makes the document an
    audit item (the ``audit`` property), the copy of a published result sampled for reviewers. ``review`` is
    set on the final result of a human-reviewed image (the review console's, whose reasons start with
    ``human_review``). ``content`` and ``analysis_source`` are written when given (the worker fetched the
    image itself).
    """
    document: dict[str, object] = {
        "schema": _RESULT_SCHEMA,
        "id": submission.id,
        "decision": verdict.decision,  # a StrEnum: orjson writes its value
        "reasons": [_reason_document(reason) for reason in verdict.reasons],
        "policy_version": policy_version,
        "model_version": model_version,
        "analyzed_at": _in_utc(analyzed_at),
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "image": {"url": redact_url(submission.image_url)},
        "worker_version": worker_version,
    }
    if tags:
        kept = sorted(tags, key=_by_confidence)[:MAX_RESULT_TAGS] if len(tags) > 1 else tags
        document["tags"] = [{"name": tag.name, "confidence": tag.confidence} for tag in kept]
    if audit is not None:
        document["audit"] = {"probability": audit.probability, "published_decision": verdict.decision}
    if review is not None:
        document["review"] = review._asdict() | {"decided_at": _in_utc(review.decided_at)}
    if content is not None:
        document["content"] = content._asdict()
    if analysis_source is not None:
        document["analysis_source"] = analysis_source
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def encode_dead_letter(
    *,
    error: InvalidSubmission,
    value: bytes | None,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    source: SourceCoordinates,
    failed_at: datetime,
    worker_version: str,
    keep_value_bytes: int = DEFAULT_KEEP_VALUE_BYTES,
) -> bytes:
    """Serialise a ``dead-letter.v1`` document carrying the original record (base64) and the typed error.

    A value longer than ``keep_value_bytes`` is cut to that prefix (``truncated`` true) so the dead letter
    itself fits the broker's record limit; ``value_sha256`` always hashes the whole original.
    """
    coordinates: dict[str, object] = {
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
    }
    if source.timestamp_ms is not None:
        coordinates["timestamp_ms"] = source.timestamp_ms
    truncated = value is not None and len(value) > keep_value_bytes
    document = {
        "schema": str(SchemaName.DEAD_LETTER),
        "original": {
            "value_b64": _b64(value[:keep_value_bytes] if value is not None else None),
            "value_bytes": 0 if value is None else len(value),
            "value_sha256": None if value is None else hashlib.sha256(value).hexdigest(),
            "truncated": truncated,
            "key_b64": _b64(key),
            "headers": [{"key": name[:256], "value_b64": _b64(data)} for name, data in headers[:MAX_HEADERS]],
        },
        "error": {"class": str(error.reason), "message": error.message},
        "source": coordinates,
        "failed_at": _in_utc(failed_at),
        "worker_version": worker_version,
    }
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)
