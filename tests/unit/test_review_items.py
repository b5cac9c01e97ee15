"""Specification of reading review-topic records into items: what is shown, and what is skipped."""

from __future__ import annotations

import orjson
import pytest

from tests.review_samples import SECRET_QUERY, result_value
from worker.records import SourceCoordinates
from worker.review.items import ItemKind, NotReviewable, parse_item

RECORD = SourceCoordinates("images.needs-review", 2, 40, 1_765_000_000_000)


def test_a_needs_review_result_becomes_an_item_keyed_by_its_record() -> None:
    """Reasons, tags, versions and the submission's coordinates; the URL stays redacted."""
    item = parse_item(ItemKind.NEEDS_REVIEW, result_value("img-7"), RECORD)

    assert "images.needs-review/2/40" == item.key
    assert 1_765_000_000.0 == item.enqueued_at_s
    assert ("img-7", "needs_review", "sha256:0123456789abcdef") == (
        item.result.image_id,
        item.result.decision,
        item.result.policy_version,
    )
    assert SourceCoordinates("images.submitted", 0, 7) == item.result.source
    assert SECRET_QUERY not in item.result.image_url
    assert 0.62 == item.strongest_confidence


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "no value"),
        (b"{not json", "not JSON"),
        (b'{"schema": "image-submitted.v1"}', "not a moderation-result.v1"),
        (orjson.dumps({"schema": "moderation-result.v1", "id": "x"}), "lacks a usable field"),
    ],
)
def test_records_that_are_no_machine_result_are_not_reviewable(value: bytes | None, message: str) -> None:
    """The source logs and skips them (and counts them decided), so one bad record blocks nothing."""
    with pytest.raises(NotReviewable, match=message):
        parse_item(ItemKind.NEEDS_REVIEW, value, RECORD)


def test_an_audit_item_must_carry_its_sampling() -> None:
    """Without ``audit`` the agreement metric could not be computed."""
    with pytest.raises(NotReviewable, match="audit"):
        parse_item(ItemKind.AUDIT, result_value(), RECORD)
    item = parse_item(
        ItemKind.AUDIT, result_value(audit={"probability": 0.5, "published_decision": "rejected"}), RECORD
    )
    assert item.result.audit is not None
    assert (0.5, "rejected") == (item.result.audit.probability, item.result.audit.published_decision)
