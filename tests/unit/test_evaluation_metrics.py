"""The pure metrics of `evaluate`: confusion matrices, decision diffs and threshold sweeps, by hand."""

from __future__ import annotations

from worker.domain import Analysis, Decision, Tag
from worker.evaluation.confusion import ConfusionMatrix
from worker.evaluation.decision_diff import DecisionDiff, DiffReport, Redecided
from worker.evaluation.labeled_set import LabeledImage, Observation
from worker.evaluation.sweep import TagEvidence, evidence_for, point_at, sweep_tag

A, R, N = Decision.APPROVED, Decision.REJECTED, Decision.NEEDS_REVIEW

# Ten labeled images, (truth, decided), counted by hand:
#            decided A  N  R
#   truth A          3  1  1
#   truth N          1  1  0
#   truth R          1  0  2
TEN = [(A, A)] * 3 + [(A, N), (A, R), (N, A), (N, N), (R, A), (R, R), (R, R)]


def test_the_matrix_counts_each_pair_in_approved_review_rejected_order() -> None:
    """Rows are the truth, columns the decision, both in the order approved, needs_review, rejected."""
    matrix = ConfusionMatrix.of(TEN)
    assert ([[3, 1, 1], [1, 1, 0], [1, 0, 2]], 10) == (matrix.rows(), matrix.total)


def test_the_rates_follow_from_the_hand_computed_matrix() -> None:
    """Harmful approved 1/3, harmless rejected 1/5, approve miss (1+1)/5, reject precision 2/3, review 2/10,
    agreement 6/10."""
    matrix = ConfusionMatrix.of(TEN)
    expected = {
        "harmful_approved_rate": 1 / 3,
        "harmless_rejected_rate": 1 / 5,
        "approve_miss_rate": 2 / 5,
        "reject_precision": 2 / 3,
        "review_share": 2 / 10,
        "agreement": 6 / 10,
    }
    actual = {name: matrix.to_json()[name] for name in expected}
    assert expected == actual


def test_a_rate_without_a_denominator_is_none_not_zero() -> None:
    """Nothing rejected: reject precision is unknown (None), not perfect and not zero."""
    matrix = ConfusionMatrix.of([(A, A), (R, A)])
    assert (None, 1.0) == (matrix.reject_precision, matrix.harmful_approved_rate)


def _diff(triples: list[tuple[str, Decision, Decision]], examples: int = 5) -> DiffReport:
    """The diff `evaluate` reports for ``(image id, current decision, suggested decision)`` triples."""
    diff = DecisionDiff()
    for image_id, old, new in triples:
        diff.add(Redecided(image_id, old, new))
    return diff.report("sha256:suggested", examples=examples)


def test_the_diff_counts_changes_and_keeps_the_first_examples_of_each() -> None:
    """Four images: one stays, three move from approved to rejected; two examples are kept, in input order."""
    diff = _diff([("a", A, A), ("b", A, R), ("c", A, R), ("d", A, R)], examples=2)
    examples = tuple(item.id for item in diff.examples[A, R])
    assert (3, [(A, R, 3)], ("b", "c")) == (diff.changed, diff.changes(), examples)


def test_the_diff_document_lists_only_real_changes() -> None:
    """The JSON gives each change its count and examples; unchanged images add no change."""
    document = _diff([("a", N, N), ("b", N, A)]).to_json()
    pairs = document["pairs"]
    assert isinstance(pairs, list)
    changes = [
        {"old": pair["old"], "new": pair["new"], "count": pair["count"], "examples": pair["examples"]}
        for pair in pairs
        if pair["old"] != pair["new"] and pair["count"]
    ]
    example: dict[str, object] = {"id": "b", "url": None, "old_policy_version": "", "reasons": []}
    expected = [{"old": "needs_review", "new": "approved", "count": 1, "examples": [example]}]
    assert (2, 1, expected) == (document["images"], document["changed"], changes)


def test_the_diff_as_a_matrix_has_old_decisions_in_rows() -> None:
    """The evaluate report draws the diff as a matrix: current policy in rows, suggested in columns."""
    matrix = _diff([("a", N, N), ("b", N, A), ("c", R, R)]).matrix
    assert (1, 1, 0, 1, 3) == (
        matrix.count(N, N),
        matrix.count(N, A),
        matrix.count(A, N),
        matrix.count(R, R),
        matrix.total,
    )


# One tag over six images, by hand (score, truth):
#   0.9 R, 0.8 A, 0.7 R, 0.6 N, 0.3 R, 0.1 A
SIX = [
    TagEvidence(0.9, R),
    TagEvidence(0.8, A),
    TagEvidence(0.7, R),
    TagEvidence(0.6, N),
    TagEvidence(0.3, R),
    TagEvidence(0.1, A),
]


def test_a_sweep_point_matches_the_hand_computed_precision_recall_and_miss_rate() -> None:
    """At 0.65: flagged 0.9, 0.8, 0.7 -> precision 2/3, recall 2/3 (0.3 missed), miss rate 2/4 (0.6 N and
    0.3 R are below), flagged share 3/6."""
    point = point_at(SIX, 0.65)
    assert (3, 0.5, 2 / 3, 2 / 3, 0.5) == (
        point.flagged,
        point.flagged_share,
        point.precision,
        point.recall,
        point.miss_rate,
    )


def test_the_threshold_is_inclusive_as_in_the_policy() -> None:
    """A score equal to the threshold flags, as `confidence >= review_at` does in the policy."""
    assert 1 == point_at([TagEvidence(0.7, R)], 0.7).flagged


def test_a_sweep_is_ascending_without_duplicates() -> None:
    """Thresholds come out sorted once each; at 0 every image is flagged and nothing is missed."""
    sweep = sweep_tag("weapon", SIX, [0.5, 0.0, 0.5, 1.0])
    first = sweep.points[0]
    assert ([0.0, 0.5, 1.0], 6, 0.0) == ([p.threshold for p in sweep.points], first.flagged, first.miss_rate)


def test_per_tag_truth_overrides_the_expected_decision() -> None:
    """An image labeled rejected for another reason, whose truth says "no weapon", is no weapon positive."""
    evidence = TagEvidence(0.9, R, tag_truth=False)
    assert (False, False) == (evidence.harmful, evidence.should_flag)


def test_evidence_takes_the_strongest_case_folded_confidence_and_skips_refused_images() -> None:
    """`Weapon` 0.4 and `weapon` 0.7 in one analysis give 0.7; an absent tag scores 0; a refused image is
    left out."""
    image = LabeledImage("/x.png", R, {"weapon": True})
    seen = Observation(image, Analysis("m", (Tag("Weapon", 0.4), Tag("weapon", 0.7))))
    absent = Observation(LabeledImage("/y.png", A), Analysis("m", (Tag("cat", 0.9),)))
    refused = Observation(LabeledImage("/z.png", A), error_code="InvalidImageFormat")
    expected = [TagEvidence(0.7, R, True), TagEvidence(0.0, A, None)]
    assert expected == evidence_for("WEAPON", [seen, absent, refused])
