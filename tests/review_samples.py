"""Machine results as the review console reads them: encoded by the worker's own encoder, parsed as the
console parses them, for the review tests of every tier."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from worker.contracts import Submission
from worker.domain import Decision, Reason, Tag, Verdict
from worker.records import SourceCoordinates, encode_result
from worker.review.items import ItemKind, ReviewItem, parse_item

POLICY_VERSION = "sha256:0123456789abcdef"
SECRET_QUERY = "sv=2024-01-01&sig=TOPSECRETSIGNATURE"
SUBMISSION = SourceCoordinates("images.submitted", 0, 7)


def image_url(image_id: str) -> str:
    """The submitted URL of ``image_id``, SAS token and all."""
    return f"https://images.example.com/{image_id}.png?{SECRET_QUERY}"


def result_value(
    image_id: str = "img-1",
    *,
    decision: Decision = Decision.NEEDS_REVIEW,
    reasons: tuple[Reason, ...] = (Reason("blocklist_review", tag="weapon", confidence=0.62),),
    source: SourceCoordinates = SUBMISSION,
    audit: dict[str, object] | None = None,
) -> bytes:
    """A ``moderation-result.v1`` value as the worker writes it (``audit`` added as audit sampling does)."""
    value = encode_result(
        submission=Submission(
            id=image_id, image_url=f"https://images.example.com/{image_id}.png?{SECRET_QUERY}"
        ),
        verdict=Verdict(decision, reasons),
        policy_version=POLICY_VERSION,
        model_version="2023-10-01",
        analyzed_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
        source=source,
        worker_version="test",
        tags=(Tag("weapon", 0.62), Tag("outdoor", 0.9)),
    )
    if audit is None:
        return value
    return orjson.dumps(orjson.loads(value) | {"audit": audit})


def review_item(
    image_id: str = "img-1",
    *,
    offset: int = 0,
    enqueued_at_s: float = 1_000.0,
    kind: ItemKind = ItemKind.NEEDS_REVIEW,
    topic: str = "images.needs-review",
    partition: int = 0,
    reasons: tuple[Reason, ...] = (Reason("blocklist_review", tag="weapon", confidence=0.62),),
    audit: dict[str, object] | None = None,
    headers: tuple[tuple[str, bytes | None], ...] = (),
) -> ReviewItem:
    """The ``ReviewItem`` of a review record at ``topic/partition/offset``, Kafka timestamp ``enqueued_at_s``
    (seconds)."""
    decision = Decision.NEEDS_REVIEW if audit is None else Decision(str(audit["published_decision"]))
    value = result_value(image_id, decision=decision, reasons=reasons, audit=audit)
    coordinates = SourceCoordinates(topic, partition, offset, int(enqueued_at_s * 1000))
    return parse_item(kind, value, coordinates, headers)
