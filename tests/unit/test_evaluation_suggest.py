"""Scoring a policy on a labeled set, target gates and suggested thresholds, against figures by hand."""

from __future__ import annotations

from worker.domain import Analysis, Decision, Tag
from worker.evaluation.confusion import ConfusionMatrix
from worker.evaluation.labeled_set import LabeledImage, Observation
from worker.evaluation.scoring import Targets, missed_targets, score_policy
from worker.evaluation.suggest import reject_threshold, suggest_thresholds, suggested_policy, tag_suggestion
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
    """Precision 1.0 first holds at 0.85 (above the harmless 0.8, below the harmful 0.9); 0.6 already holds
    from 0.15 (3 harmful of 5 flagged)."""
    assert (0.85, 0.15) == (reject_threshold(SIX, 1.0), reject_threshold(SIX, 0.6))


def test_a_tag_that_never_reaches_the_precision_only_reviews() -> None:
    """Only a harmless image scores high: no threshold is precise enough, reject_at is None (review only)."""
    assert None is reject_threshold([TagEvidence(0.95, A), TagEvidence(0.2, R)], 0.9)


# Seven images, every one with a "cat" 0.9 (a signal): (label, weapon, blood)
SEVEN = [
    (R, 0.9, 0.0),
    (A, 0.8, 0.0),
    (R, 0.7, 0.0),
    (N, 0.0, 0.6),
    (R, 0.2, 0.3),
    (A, 0.1, 0.1),
    (A, 0.0, 0.5),
]
TWO_TAGS = Policy(PolicyMode.BLOCKLIST, blocklist={"weapon": CURRENT, "blood": BlockRule(0.5, 0.9)})


def _seven() -> list[Observation]:
    return [
        _observation(
            label, ("cat", 0.9), *((name, score) for name, score in (("weapon", w), ("blood", b)) if score)
        )
        for label, w, b in SEVEN
    ]


def test_the_joint_search_meets_the_miss_target_catching_most_per_harmless_image() -> None:
    """By hand: precision 1.0 gives reject_at weapon 0.85, blood never. Review starts there (3 of 4
    missed); blood 0.6 catches the N image at no harmless cost; then weapon 0.2 catches both remaining R
    images for one harmless (0.8): nothing missed. Alone, weapon reviews 0.8, 0.7, 0.2 (3/7) and blood 0.6
    (1/7)."""
    suggestions = suggest_thresholds(TWO_TAGS, _seven(), Targets(1.0, 0.25))
    actual = [(s.tag, s.review_at, s.reject_at, s.review_load) for s in suggestions]
    assert [("blood", 0.6, None, 1 / 7), ("weapon", 0.2, 0.85, 3 / 7)] == actual


def test_the_suggested_policy_meets_the_targets_it_was_searched_for() -> None:
    """Scored on the same analyses, the suggested policy misses no target."""
    observations = _seven()
    targets = Targets(1.0, 0.25)
    document = suggested_policy(TWO_TAGS, suggest_thresholds(TWO_TAGS, observations, targets))
    assert [] == missed_targets(score_policy(policy_from_document(document), observations).matrix, targets)


def test_an_image_reviewed_whatever_the_blocklist_is_never_a_miss() -> None:
    """An image with no tag at all goes to review (no signal): nothing to catch, review_at stays at
    reject_at."""
    nothing = Observation(LabeledImage("/empty.png", R), Analysis("m", ()))
    (suggestion,) = suggest_thresholds(
        Policy(PolicyMode.BLOCKLIST, blocklist={"weapon": CURRENT}), [nothing], Targets(None, 0.0)
    )
    assert (0.85, 0.85) == (suggestion.review_at, suggestion.reject_at)


def test_without_targets_the_thresholds_stay() -> None:
    """No target given: the suggestion repeats the current thresholds."""
    (suggestion,) = suggest_thresholds(
        Policy(PolicyMode.BLOCKLIST, blocklist={"weapon": CURRENT}), _seven(), Targets()
    )
    assert (0.5, 0.85) == (suggestion.review_at, suggestion.reject_at)


def test_the_suggested_policy_changes_only_the_tuned_tags_and_is_a_valid_policy() -> None:
    """The default policy with `weapon` tuned loads again; every other tag keeps its thresholds."""
    policy = load_default_policy()
    weapon = tag_suggestion("weapon", SIX, 0.6, 0.85)
    suggested = policy_from_document(suggested_policy(policy, [weapon]))
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
