"""Scoring a policy on a labeled set, target gates and suggested thresholds, against figures by hand."""

from __future__ import annotations

from worker.domain import Analysis, Decision, Tag
from worker.evaluation.confusion import ConfusionMatrix
from worker.evaluation.labeled_set import LabeledImage, Observation
from worker.evaluation.scoring import Targets, missed_targets, score_policy
from worker.evaluation.suggest import suggest_tag, suggest_thresholds, suggested_policy
from worker.evaluation.sweep import TagEvidence
from worker.policy import BlockRule, Policy, PolicyMode
from worker.policy_file import load_default_policy, policy_from_document

A, R, N = Decision.APPROVED, Decision.REJECTED, Decision.NEEDS_REVIEW
CURRENT = BlockRule(review_at=0.5, reject_at=0.85)
# (score, truth): 0.9 R, 0.8 A, 0.7 R, 0.6 N, 0.3 R, 0.1 A
SIX = [
    TagEvidence(score, truth) for score, truth in ((0.9, R), (0.8, A), (0.7, R), (0.6, N), (0.3, R), (0.1, A))
]


def _observation(expected: Decision, *tags: tuple[str, float]) -> Observation:
    analysis = Analysis("m", tuple(Tag(name, confidence) for name, confidence in tags))
    return Observation(LabeledImage(f"/{len(tags)}-{expected}.png", expected), analysis)


def test_reject_at_is_the_lowest_threshold_reaching_the_precision_target() -> None:
    """Precision 1.0 first holds at 0.85 (above the harmless 0.8, below the harmful 0.9)."""
    suggestion = suggest_tag("weapon", SIX, Targets(reject_precision=1.0), CURRENT)
    assert (0.85, 1.0, 0.5) == (suggestion.reject_at, suggestion.precision, suggestion.review_at)


def test_review_at_is_the_highest_threshold_within_the_miss_target_and_its_load_follows() -> None:
    """Four images should be flagged (0.9, 0.7, 0.6, 0.3); missing at most one allows review_at 0.6; the tag
    alone then reviews 0.8, 0.7 and 0.6: half the images."""
    suggestion = suggest_tag("weapon", SIX, Targets(1.0, 0.25), CURRENT)
    expected = (0.6, 0.85, 0.25, 0.5, 3, 4, True)
    actual = (
        suggestion.review_at,
        suggestion.reject_at,
        suggestion.miss_rate,
        suggestion.review_load,
        suggestion.harmful,
        suggestion.should_flag,
        suggestion.meets_targets,
    )
    assert expected == actual


def test_review_at_never_exceeds_reject_at() -> None:
    """Precision 0.6 is reached from 0.15 (3 harmful of 5 flagged), so review_at 0.6 is lowered to 0.15."""
    suggestion = suggest_tag("weapon", SIX, Targets(0.6, 0.25), CURRENT)
    assert (0.15, 0.15) == (suggestion.review_at, suggestion.reject_at)


def test_a_tag_that_never_reaches_the_precision_only_reviews() -> None:
    """Only harmless images score high: no threshold is precise enough, so reject_at is None (review only)."""
    evidence = [TagEvidence(0.95, A), TagEvidence(0.2, R)]
    assert None is suggest_tag("weapon", evidence, Targets(reject_precision=0.9), CURRENT).reject_at


def test_without_targets_the_thresholds_stay() -> None:
    """No target given: the suggestion repeats the current thresholds."""
    suggestion = suggest_tag("weapon", SIX, Targets(), CURRENT)
    assert (0.5, 0.85) == (suggestion.review_at, suggestion.reject_at)


def test_the_suggested_policy_changes_only_the_tuned_tags_and_is_a_valid_policy() -> None:
    """The default policy with `weapon` tuned loads again; every other tag keeps its thresholds."""
    policy = load_default_policy()
    weapon = suggest_tag("weapon", SIX, Targets(1.0, 0.25), policy.blocklist["weapon"])
    document = suggested_policy(policy, [weapon])
    suggested = policy_from_document(document)
    unchanged = {name: rule for name, rule in policy.blocklist.items() if name != "weapon"}
    assert (BlockRule(0.6, 0.85), unchanged) == (
        suggested.blocklist["weapon"],
        {name: rule for name, rule in suggested.blocklist.items() if name != "weapon"},
    )


def test_scoring_decides_as_the_worker_and_counts_refused_images() -> None:
    """weapon 0.9 -> rejected; weapon 0.6 -> review; a cat -> approved; a refused image -> on_image_error
    (needs_review), labeled approved."""
    policy = Policy(PolicyMode.BLOCKLIST, blocklist={"weapon": CURRENT})
    refused = Observation(LabeledImage("/bad.png", A), error_code="InvalidImageFormat")
    observations = [
        _observation(R, ("weapon", 0.9), ("cat", 0.9)),
        _observation(N, ("weapon", 0.6), ("cat", 0.9)),
        _observation(A, ("cat", 0.9)),
        refused,
    ]
    score = score_policy(policy, observations)
    assert ([[1, 1, 0], [0, 1, 0], [0, 0, 1]], 1, ("weapon",)) == (
        score.matrix.rows(),
        score.refused,
        tuple(sweep.tag for sweep in score.sweeps),
    )


def test_suggestions_cover_every_blocklisted_tag() -> None:
    """One suggestion per blocklisted tag, in the policy's order."""
    policy = Policy(PolicyMode.BLOCKLIST, blocklist={"weapon": CURRENT, "blood": CURRENT})
    suggestions = suggest_thresholds(policy, [_observation(R, ("weapon", 0.9))], Targets(0.9, 0.1))
    assert ["blood", "weapon"] == [suggestion.tag for suggestion in suggestions]


def test_missed_targets_name_each_miss_and_pass_when_met() -> None:
    """Precision 2/3 and miss rate 2/5 miss (0.9, 0.1) twice and meet (0.5, 0.5)."""
    ten = [(A, A)] * 3 + [(A, N), (A, R), (N, A), (N, N), (R, A), (R, R), (R, R)]
    matrix = ConfusionMatrix.of(ten)
    expected: tuple[list[str], list[str]] = (
        [
            "reject precision 0.667 is below the target 0.900",
            "approve miss rate 0.400 is above the target 0.100",
        ],
        [],
    )
    assert expected == (missed_targets(matrix, Targets(0.9, 0.1)), missed_targets(matrix, Targets(0.5, 0.5)))
