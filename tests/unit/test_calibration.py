"""Calibration from review decisions: override rates per rule, tag and band, audit weights, moves."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from worker.domain import Decision
from worker.evaluation.calibration import TAG_SEEN, CellKey, band_of, calibrate
from worker.evaluation.threshold_moves import ThresholdMove, propose_moves
from worker.evaluation.verdicts import VerdictError, parse_verdict, read_verdict_file
from worker.policy import BlockRule, Policy, PolicyMode

POLICY = Policy(
    PolicyMode.BLOCKLIST,
    blocklist={"weapon": BlockRule(0.5, 0.85), "nudity": BlockRule(0.4, 0.8)},
)


def _decision(
    verdict: str,
    machine: str,
    *,
    reasons: list[dict[str, object]] | None = None,
    tags: list[dict[str, object]] | None = None,
    probability: float | None = None,
) -> dict[str, object]:
    document: dict[str, object] = {
        "schema": "review-decision.v1", "id": "img",
        "queue": "needs_review" if probability is None else "audit", "verdict": verdict, "reason": "r",
        "note": "", "reviewer": "rev-1", "role": "reviewer", "lease_id": "l-1",
        "claimed_at": "2026-12-03T09:59:00Z", "decided_at": "2026-12-03T10:00:00Z",
        "item": {"topic": "images.needs-review", "partition": 0, "offset": 1},
        "machine": {
            "decision": machine, "rules": [str(reason["rule"]) for reason in reasons or []],
            "reasons": reasons or [], "tags": tags or [],
            "policy_version": "sha256:0123456789abcdef", "model_version": "2023-10-01",
            "source": {"topic": "images.submitted", "partition": 0, "offset": 1},
        },
        "published_to": None,
    }  # fmt: skip
    if probability is not None:
        machine_object = document["machine"]
        assert isinstance(machine_object, dict)
        machine_object |= {"audit_probability": probability, "published_decision": machine}
    return document


def _review(verdict: str, tag: str, confidence: float) -> dict[str, object]:
    reason = {"rule": "blocklist_review", "tag": tag, "confidence": confidence}
    return _decision(
        verdict, "needs_review", reasons=[reason], tags=[{"name": tag, "confidence": confidence}]
    )


def _audited_approval(verdict: str, probability: float, nudity: float) -> dict[str, object]:
    return _decision(
        verdict, "approved", tags=[{"name": "nudity", "confidence": nudity}], probability=probability
    )


def _write(tmp_path: Path, documents: list[dict[str, object]]) -> Path:
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(b"".join(orjson.dumps(document) + b"\n" for document in documents))
    return path


def test_audit_samples_are_weighted_by_one_over_their_probability(tmp_path: Path) -> None:
    """Two approvals sampled at 0.5 upheld (weight 2 each) and one sampled at 0.05 overturned (weight 20):
    the approvals' override rate is 20/24, not the unweighted 1/3."""
    documents = [
        _audited_approval("approve", 0.5, 0.1),
        _audited_approval("approve", 0.5, 0.1),
        _audited_approval("reject", 0.05, 0.1),
    ]
    calibration = calibrate(read_verdict_file(_write(tmp_path, documents)))
    approvals = calibration.by_decision[Decision.APPROVED]
    assert (3, 20 / 24, 20 / 24) == (approvals.evidence, approvals.overturn_rate, approvals.human_reject_rate)


def test_rates_per_rule_tag_and_band_match_the_verdicts(tmp_path: Path) -> None:
    """Reviewed weapon images at 0.82 (19 rejected of 20) and 0.75 (12 of 12), automatic rejections at 0.9
    audited at 0.5 (1 overturned of 4): each row holds its own rate, an escalation is counted apart."""
    documents = [_review("reject", "weapon", 0.82)] * 19 + [_review("approve", "weapon", 0.82)]
    documents += [_review("reject", "weapon", 0.75)] * 12 + [_review("escalate", "weapon", 0.75)]
    reject_reason = [{"rule": "blocklist_reject", "tag": "weapon", "confidence": 0.9}]
    documents += [_decision("reject", "rejected", reasons=reject_reason, probability=0.5)] * 3
    documents += [_decision("approve", "rejected", reasons=reject_reason, probability=0.5)]
    cells = calibrate(read_verdict_file(_write(tmp_path, documents))).cells
    high, low = (
        cells[CellKey("blocklist_review", "weapon", 0.8)],
        cells[CellKey("blocklist_review", "weapon", 0.7)],
    )
    rejected = cells[CellKey("blocklist_reject", "weapon", 0.9)]
    expected = ((20, 0.95, None), (12, 1, 1.0), (4, 0.25))
    actual = (
        (high.evidence, high.human_reject_rate, high.overturn_rate),
        (low.evidence, low.escalated, low.human_reject_rate),
        (rejected.evidence, rejected.overturn_rate),
    )
    assert expected == actual


def test_the_verdicts_support_moving_reject_at_down_and_review_at_down(tmp_path: Path) -> None:
    """Weapon: humans rejected 31 of 32 reviewed images from 0.7 up: reject_at 0.85 -> 0.7. Nudity: audited
    approvals at 0.35 were rejected 2 times in 10 (weight 10 each): review_at 0.4 -> 0.3."""
    documents = [_review("reject", "weapon", 0.82)] * 19 + [_review("approve", "weapon", 0.82)]
    documents += [_review("reject", "weapon", 0.75)] * 12
    documents += [_audited_approval("reject", 0.1, 0.35)] * 2 + [_audited_approval("approve", 0.1, 0.35)] * 8
    moves = propose_moves(calibrate(read_verdict_file(_write(tmp_path, documents))), POLICY)
    expected = [
        ThresholdMove("nudity", "review_at", 0.4, 0.3, 10, 0.2, "humans rejected these automatic approvals"),
        ThresholdMove("weapon", "reject_at", 0.85, 0.7, 32, 31 / 32, "humans rejected these reviewed images"),
    ]
    assert expected == moves


def test_too_little_evidence_proposes_nothing(tmp_path: Path) -> None:
    """Nine unanimous verdicts are below the default ten: no move."""
    documents = [_review("reject", "weapon", 0.82)] * 9
    assert [] == propose_moves(calibrate(read_verdict_file(_write(tmp_path, documents))), POLICY)


def test_reviewers_approving_everything_move_review_at_up(tmp_path: Path) -> None:
    """Ten reviewed weapon images at 0.55, all approved: review_at 0.5 -> 0.6 (the band's upper edge)."""
    documents = [_review("approve", "weapon", 0.55)] * 10
    moves = propose_moves(calibrate(read_verdict_file(_write(tmp_path, documents))), POLICY)
    assert [("weapon", "review_at", 0.6, 10)] == [(m.tag, m.setting, m.proposed, m.evidence) for m in moves]


def test_an_approval_counts_its_tags_that_fired_no_rule() -> None:
    """An audited approval with nudity 0.35 is a `tag_seen` row for nudity in band 0.3."""
    verdict = parse_verdict(_audited_approval("approve", 0.1, 0.35), "here")
    assert {CellKey(TAG_SEEN, "nudity", 0.3), CellKey("none")} == set(calibrate([verdict]).cells)


def test_the_console_shape_with_rules_and_machine_audit_probability_reads() -> None:
    """Bare `machine.rules` and `machine.audit_probability` (the console's shape) give rule-only reasons and
    weight 4."""
    document = _decision("reject", "approved")
    machine = document["machine"]
    assert isinstance(machine, dict)
    del machine["reasons"], machine["tags"]
    machine |= {"rules": ["no_signal"], "audit_probability": 0.25}
    verdict = parse_verdict(document, "here")
    assert (("no_signal",), 4.0) == (tuple(reason.rule for reason in verdict.reasons), verdict.weight)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "moderation-result.v1"}, "here: not a review-decision.v1 record"),
        ({"verdict": "maybe"}, "here: verdict must be approve, reject or escalate"),
        ({"audit_probability": 0}, "here: the audit probability must be a number in (0, 1]"),
    ],
)
def test_a_bad_record_names_where_it_came_from(change: dict[str, object], message: str) -> None:
    """Each unusable record raises VerdictError starting with its origin."""
    document = _decision("approve", "approved")
    machine = document["machine"]
    assert isinstance(machine, dict)
    if "audit_probability" in change:
        machine |= change
    else:
        document |= change
    with pytest.raises(VerdictError) as raised:
        parse_verdict(document, "here")
    assert str(raised.value).startswith(message)


def test_bands_are_a_tenth_wide_and_the_last_one_holds_one() -> None:
    """0.0 -> 0.0, 0.35 -> 0.3, 0.7 -> 0.7 (no float drift), 1.0 -> 0.9."""
    assert [0.0, 0.3, 0.7, 0.9] == [band_of(c) for c in (0.0, 0.35, 0.7, 1.0)]
