"""Specification of a verdict's records: review-decision.v1, the final result, the escalation, audits."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.review_samples import SECRET_QUERY, review_item
from worker.contracts import Contracts, SchemaName, default_schemas_dir
from worker.domain import Decision, Reason, Tag
from worker.evaluation.verdicts import ReviewVerdict, parse_verdict
from worker.review.items import ESCALATION_HEADER, ItemKind, ReviewItem, parse_item
from worker.review.queue import Lease, Role
from worker.review.verdicts import (
    ReasonLabels,
    ReviewTopics,
    VerdictKind,
    VerdictPlan,
    VerdictRefused,
    VerdictRequest,
    plan_verdict,
)

CONTRACTS = Contracts.load()
LABELS = ReasonLabels(approve=("acceptable",), reject=("violence", "other"))
TOPICS = ReviewTopics(
    "images.approved", "images.rejected", "images.review-decisions", "images.review-escalated"
)
CLAIMED = datetime(2026, 12, 3, 12, 1, tzinfo=UTC)
DECIDED = datetime(2026, 12, 3, 12, 2, tzinfo=UTC)
AUDIT = {"probability": 0.05, "published_decision": "approved"}


def lease_on(key: str, reviewer: str = "alice") -> Lease:
    return Lease("lease-1", key, reviewer, claimed_at=1.0, expires_at=61.0)


def plan(item: ReviewItem, request: VerdictRequest, role: Role = Role.REVIEWER) -> VerdictPlan:
    return plan_verdict(
        item,
        lease_on(item.key),
        role,
        request,
        labels=LABELS,
        topics=TOPICS,
        claimed_at=CLAIMED,
        decided_at=DECIDED,
    )


def test_a_reject_produces_the_decision_and_a_final_rejected_result_with_human_review_first() -> None:
    """Downstream watches approved/rejected only: the final result says a human decided, and who."""
    item = review_item("img-9", offset=4)

    decision, final = plan(item, VerdictRequest(VerdictKind.REJECT, "violence", "knife at a child")).records

    assert ("images.review-decisions", b"img-9") == (decision.topic, decision.key)
    assert ("images.rejected", b"img-9") == (final.topic, final.key)
    document = orjson.loads(final.value)
    assert CONTRACTS.describe_violation(SchemaName.MODERATION_RESULT, document) is None
    assert "rejected" == document["decision"]
    assert {"rule": "human_review", "detail": "violence"} == document["reasons"][0]
    assert "blocklist_review" == document["reasons"][1]["rule"]
    expected_review = {
        "verdict": "reject",
        "reason": "violence",
        "reviewer": "alice",
        "role": "reviewer",
        "decided_at": "2026-12-03T12:02:00Z",
        "lease_id": "lease-1",
        "machine_decision": "needs_review",
        "queue": "needs_review",
    }
    assert expected_review == document["review"]
    assert {"topic": "images.submitted", "partition": 0, "offset": 7} == document["source"]
    assert SECRET_QUERY not in final.value.decode()


def test_the_decision_record_carries_the_verdict_note_lease_and_machine_provenance() -> None:
    """review-decision.v1 is the durable log of who decided what about which machine result."""
    item = review_item("img-9", offset=4)

    decision = plan(item, VerdictRequest(VerdictKind.APPROVE, "", "fine")).records[0]

    document = orjson.loads(decision.value)
    expected = {
        "schema": "review-decision.v1",
        "id": "img-9",
        "queue": "needs_review",
        "verdict": "approve",
        "reason": "acceptable",
        "note": "fine",
        "reviewer": "alice",
        "role": "reviewer",
        "lease_id": "lease-1",
        "claimed_at": "2026-12-03T12:01:00Z",
        "decided_at": "2026-12-03T12:02:00Z",
        "item": {"topic": "images.needs-review", "partition": 0, "offset": 4},
        "machine": {
            "decision": "needs_review",
            "rules": ["blocklist_review"],
            "reasons": [{"rule": "blocklist_review", "tag": "weapon", "confidence": 0.62}],
            "tags": [{"name": "outdoor", "confidence": 0.9}, {"name": "weapon", "confidence": 0.62}],
            "policy_version": "sha256:0123456789abcdef",
            "model_version": "2023-10-01",
            "source": {"topic": "images.submitted", "partition": 0, "offset": 7},
        },
        "published_to": "images.approved",
    }
    assert expected == document


def test_an_audit_verdict_publishes_no_result_and_records_the_sampling_probability() -> None:
    """The automatic decision stays published; only the decision record is produced."""
    item = review_item("img-a", kind=ItemKind.AUDIT, topic="images.review-audit", audit=AUDIT)

    outcome = plan(item, VerdictRequest(VerdictKind.REJECT, "other"))

    assert outcome.published_to is None
    assert ["images.review-decisions"] == [record.topic for record in outcome.records]
    machine = orjson.loads(outcome.records[0].value)["machine"]
    assert (0.05, "approved") == (machine["audit_probability"], machine["published_decision"])
    with pytest.raises(VerdictRefused, match="first-level"):
        plan(item, VerdictRequest(VerdictKind.ESCALATE))


def test_an_escalation_forwards_the_machine_result_to_the_leads_with_the_first_verdict() -> None:
    """The leads' item is the same machine result; the header says who escalated and why."""
    item = review_item("img-e", offset=3)

    decision, forwarded = plan(item, VerdictRequest(VerdictKind.ESCALATE, "", "not sure")).records

    assert "escalate" == orjson.loads(decision.value)["verdict"]
    assert ("images.review-escalated", item.value) == (forwarded.topic, forwarded.value)
    escalated = parse_item(ItemKind.ESCALATED, forwarded.value, item.record, forwarded.headers)
    assert escalated.escalation is not None
    assert ("alice", "not sure") == (escalated.escalation.reviewer, escalated.escalation.note)
    assert ESCALATION_HEADER == forwarded.headers[0][0]


def test_only_leads_decide_escalated_items_and_their_final_result_says_so() -> None:
    """review.queue is escalated and the role is lead."""
    item = review_item("img-l", kind=ItemKind.ESCALATED, topic="images.review-escalated")

    with pytest.raises(VerdictRefused, match="only leads"):
        plan(item, VerdictRequest(VerdictKind.APPROVE))
    final = plan(item, VerdictRequest(VerdictKind.APPROVE), role=Role.LEAD).records[1]

    review = orjson.loads(final.value)["review"]
    assert ("escalated", "lead") == (review["queue"], review["role"])


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (VerdictRequest(VerdictKind.REJECT, "acceptable"), "'acceptable' is not a reason for reject"),
        (VerdictRequest(VerdictKind.APPROVE, "violence"), "'violence' is not a reason for approve"),
        (VerdictRequest(VerdictKind.REJECT, "other", "x" * 1001), "longer than 1000"),
    ],
)
def test_a_verdict_with_an_unknown_reason_or_an_overlong_note_is_refused(
    request_: VerdictRequest, message: str
) -> None:
    """Reason labels come from the configured lists."""
    with pytest.raises(VerdictRefused, match=message):
        plan(review_item(), request_)


def test_the_documented_example_satisfies_review_decision_v1() -> None:
    """schemas/examples/review-decision.v1.json is valid, and so is a document the console writes."""
    schema = orjson.loads((default_schemas_dir() / "review-decision.v1.json").read_bytes())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    example = orjson.loads((default_schemas_dir() / "examples" / "review-decision.v1.json").read_bytes())
    written = orjson.loads(plan(review_item(), VerdictRequest(VerdictKind.REJECT)).records[0].value)

    assert [] == [error.message for error in validator.iter_errors(example)]
    assert [] == [error.message for error in validator.iter_errors(written)]


def test_calibration_reads_the_machine_reasons_tags_and_audit_probability_the_console_writes() -> None:
    """The console's review-decision.v1 is what calibrate counts per rule, tag and confidence band:
    the reader recovers every reason (tag and confidence included), every tag and the audit weight."""
    reasons = (Reason("allowlist_match", tag="dog", confidence=0.97), Reason("no_signal"))
    item = review_item(
        "img-c", kind=ItemKind.AUDIT, topic="images.review-audit", reasons=reasons, audit=AUDIT
    )
    written = plan(item, VerdictRequest(VerdictKind.REJECT, "other")).records[0].value

    verdict = parse_verdict(orjson.loads(written), "images.review-decisions/0@0")

    expected = ReviewVerdict(
        image_id="img-c",
        human=Decision.REJECTED,
        machine=Decision.APPROVED,
        reasons=reasons,
        tags=(Tag("outdoor", 0.9), Tag("weapon", 0.62)),
        audit_probability=0.05,
    )
    assert expected == verdict
