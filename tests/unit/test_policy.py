"""Specification of the moderation policy: loading, versioning, and the decision rules of docs/policy.md."""

from __future__ import annotations

import copy
import importlib.resources
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.contracts import Contracts, Guard, SchemaName, default_schemas_dir
from worker.domain import Analysis, Decision, Reason, Tag, Verdict
from worker.errors import ConfigurationError
from worker.policy import (
    BlockRule,
    Policy,
    PolicyMode,
    Rule,
    decide,
    decide_image_error,
)
from worker.policy_file import load_default_policy, load_policy, policy_from_document

CONTRACTS = Contracts.load()
SEVERITY = {Decision.APPROVED: 0, Decision.NEEDS_REVIEW: 1, Decision.REJECTED: 2}

BLOCKLIST = Policy(
    mode=PolicyMode.BLOCKLIST,
    min_confidence=0.5,
    blocklist={
        "gun": BlockRule(review_at=0.5, reject_at=0.85),
        "knife": BlockRule(review_at=0.7, reject_at=None),
    },
)
ALLOWLIST = Policy(
    mode=PolicyMode.ALLOWLIST,
    min_confidence=0.5,
    blocklist={"gun": BlockRule(review_at=0.5, reject_at=0.85)},
    allowlist={"shoe": 0.8, "product": 0.7},
)


def analysis(*tags: tuple[str, float]) -> Analysis:
    return Analysis("2023-10-01", tuple(Tag(name, confidence) for name, confidence in tags))


def document(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"mode": "blocklist", "blocklist": {"gun": {}}}
    base.update(fields)
    return base


# --- blocklist mode -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (0.49, Verdict(Decision.APPROVED, ())),
        (0.5, Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.BLOCKLIST_REVIEW, "gun", 0.5),))),
        (0.84, Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.BLOCKLIST_REVIEW, "gun", 0.84),))),
        (0.85, Verdict(Decision.REJECTED, (Reason(Rule.BLOCKLIST_REJECT, "gun", 0.85),))),
    ],
)
def test_blocklisted_tag_reviews_then_rejects_at_its_thresholds(confidence: float, expected: Verdict) -> None:
    """Thresholds are inclusive: at ``review_at`` the image is reviewed, at ``reject_at`` rejected."""
    assert expected == decide(BLOCKLIST, analysis(("outdoor", 0.9), ("gun", confidence)))


def test_tag_names_are_compared_case_insensitively() -> None:
    """The analyzer's ``Gun`` is the policy's ``gun``; reasons name the case-folded tag."""
    policy = policy_from_document(document(blocklist={"GUN": {}}), contracts=CONTRACTS)
    expected = Verdict(Decision.REJECTED, (Reason(Rule.BLOCKLIST_REJECT, "gun", 0.9),))
    assert expected == decide(policy, analysis(("outdoor", 0.9), ("Gun", 0.9)))


def test_review_only_tag_never_rejects() -> None:
    """``reject_at: null`` sends to review at any confidence above ``review_at``, never rejects."""
    expected = Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.BLOCKLIST_REVIEW, "knife", 1.0),))
    assert expected == decide(BLOCKLIST, analysis(("kitchen", 0.9), ("knife", 1.0)))


@pytest.mark.parametrize(
    "tags",
    [(), (("outdoor", 0.49),), (("gun", 0.4),), (("gun", 0.49), ("tree", 0.3)), (("knife", 0.6),)],
)
def test_no_usable_signal_goes_to_review(tags: tuple[tuple[str, float], ...]) -> None:
    """Without a non-blocklisted tag at ``min_confidence`` the analyzer told us nothing we can approve on.

    A blocklisted tag below its ``review_at`` is not such a signal: it is never evidence the image is fine.
    """
    expected = Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.NO_SIGNAL),))
    assert expected == decide(BLOCKLIST, analysis(*tags))


def test_reasons_list_every_finding_most_severe_first() -> None:
    """Rejections come before reviews; within a rule, higher confidence first."""
    policy = Policy(
        mode=PolicyMode.BLOCKLIST,
        blocklist={name: BlockRule(0.5, 0.8) for name in ("gun", "blood", "knife", "rifle")},
    )
    verdict = decide(
        policy, analysis(("knife", 0.6), ("gun", 0.9), ("rifle", 0.95), ("blood", 0.7), ("tree", 0.9))
    )
    expected = (
        Reason(Rule.BLOCKLIST_REJECT, "rifle", 0.95),
        Reason(Rule.BLOCKLIST_REJECT, "gun", 0.9),
        Reason(Rule.BLOCKLIST_REVIEW, "blood", 0.7),
        Reason(Rule.BLOCKLIST_REVIEW, "knife", 0.6),
    )
    assert expected == verdict.reasons
    expected_decision = Decision.REJECTED
    assert expected_decision == verdict.decision


# --- allowlist mode -----------------------------------------------------------------------------------------


def test_allowlisted_tag_at_its_threshold_approves() -> None:
    """In allowlist mode an allowed tag at or above ``approve_at`` is the reason to approve."""
    expected = Verdict(Decision.APPROVED, (Reason(Rule.ALLOWLIST_MATCH, "shoe", 0.8),))
    assert expected == decide(ALLOWLIST, analysis(("shoe", 0.8), ("indoor", 0.6)))


def test_allowlist_miss_goes_to_review_or_is_rejected_by_option() -> None:
    """Without an allowed tag the ``on_allowlist_miss`` route applies."""
    tags = analysis(("shoe", 0.79), ("indoor", 0.9))
    assert Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.ALLOWLIST_MISSING),)) == decide(ALLOWLIST, tags)
    strict = policy_from_document(
        {"mode": "allowlist", "allowlist": {"shoe": {}}, "on_allowlist_miss": "rejected"}, contracts=CONTRACTS
    )
    assert Verdict(Decision.REJECTED, (Reason(Rule.ALLOWLIST_MISSING),)) == decide(strict, tags)


def test_blocklist_still_applies_on_top_of_an_allowlist_match() -> None:
    """An allowed shoe next to a gun is rejected; the match is still reported, after the rejection."""
    expected = Verdict(
        Decision.REJECTED,
        (Reason(Rule.BLOCKLIST_REJECT, "gun", 0.9), Reason(Rule.ALLOWLIST_MATCH, "shoe", 0.95)),
    )
    assert expected == decide(ALLOWLIST, analysis(("shoe", 0.95), ("gun", 0.9)))


# --- hold and image errors ----------------------------------------------------------------------------------


def test_hold_turns_an_approval_into_review() -> None:
    """During a hold nothing is approved automatically; the reason says why."""
    expected = Verdict(
        Decision.NEEDS_REVIEW,
        (Reason(Rule.HOLD), Reason(Rule.ALLOWLIST_MATCH, "shoe", 0.9)),
    )
    assert expected == decide(ALLOWLIST, analysis(("shoe", 0.9)), hold=True)


def test_hold_leaves_reviews_and_rejections_alone() -> None:
    """Hold only ever acts on approvals, so it adds no reason elsewhere."""
    tags = analysis(("outdoor", 0.9), ("gun", 0.9))
    assert decide(BLOCKLIST, tags) == decide(BLOCKLIST, tags, hold=True)


def test_image_errors_follow_the_policy_option() -> None:
    """The analyzer's refusal routes to review by default, or to rejected when the policy says so."""
    expected = Verdict(Decision.NEEDS_REVIEW, (Reason(Rule.IMAGE_ERROR, detail="InvalidImageFormat"),))
    assert expected == decide_image_error(BLOCKLIST, "InvalidImageFormat")
    strict = policy_from_document(document(on_image_error="rejected"), contracts=CONTRACTS)
    expected_decision = Decision.REJECTED
    assert expected_decision == decide_image_error(strict, "InvalidImageSize").decision


# --- loading and versioning ---------------------------------------------------------------------------------


def test_rule_names_are_exactly_the_result_schema_rules() -> None:
    """The closed set of reason rules is the same in code and in moderation-result.v1."""
    schema = orjson.loads((default_schemas_dir() / "moderation-result.v1.json").read_bytes())
    expected = set(schema["properties"]["reasons"]["items"]["properties"]["rule"]["enum"])
    assert expected == {str(rule) for rule in Rule}


def test_bundled_default_and_example_policies_load() -> None:
    """The packaged default (blocklist) and the documented example (allowlist) are valid and versioned."""
    default = load_default_policy(contracts=CONTRACTS)
    example = load_policy(default_schemas_dir() / "examples" / "policy.v1.json", contracts=CONTRACTS)
    expected_modes = (PolicyMode.BLOCKLIST, PolicyMode.ALLOWLIST)
    assert expected_modes == (default.mode, example.mode)
    assert default.version.startswith("sha256:")
    assert len(default.version) == len("sha256:") + 16


def test_the_policy_page_shows_the_bundled_default_and_the_example() -> None:
    """docs/policy.md quotes the real files, so its examples are valid policies by construction."""
    default = importlib.resources.files("worker").joinpath("policies/default.json").read_bytes()
    example = (default_schemas_dir() / "examples" / "policy.v1.json").read_bytes()
    page = (default_schemas_dir().parent / "docs" / "policy.md").read_text()
    blocks = [orjson.loads(block.split("```", 1)[0]) for block in page.split("```json\n")[1:]]
    assert [orjson.loads(default), orjson.loads(example)] == blocks


def test_defaults_are_filled_into_each_tag() -> None:
    """A tag entry without thresholds takes the policy's defaults (or the built-in ones)."""
    policy = policy_from_document(
        document(defaults={"review_at": 0.4}, blocklist={"gun": {}, "blood": {"reject_at": None}}),
        contracts=CONTRACTS,
    )
    expected = {"blood": BlockRule(0.4, None), "gun": BlockRule(0.4, 0.85)}
    assert expected == dict(policy.blocklist)


def test_equivalent_files_have_the_same_version() -> None:
    """Key order, tag case, spelled-out defaults and descriptions do not change the version."""
    terse = document(blocklist={"gun": {}, "knife": {"reject_at": None}})
    verbose = {
        "description": "same rules, written out",
        "blocklist": {
            "Knife": {"reject_at": None, "review_at": 0.5},
            "GUN": {"review_at": 0.5, "reject_at": 0.85},
        },
        "defaults": {"min_confidence": 0.5, "review_at": 0.5},
        "on_image_error": "needs_review",
        "mode": "blocklist",
    }
    expected = policy_from_document(terse, contracts=CONTRACTS).version
    assert expected == policy_from_document(verbose, contracts=CONTRACTS).version


def test_any_change_in_behaviour_changes_the_version() -> None:
    """A threshold, a route or a tag that decides differently gives a different version."""
    variants = [
        document(),
        document(blocklist={"gun": {"reject_at": 0.9}}),
        document(blocklist={"gun": {}, "knife": {}}),
        document(on_image_error="rejected"),
        document(defaults={"min_confidence": 0.4}),
        document(consent={"required": True, "purposes": ["content_moderation"]}),
        document(url_hosts=["images.example.com"]),
    ]
    versions = {policy_from_document(variant, contracts=CONTRACTS).version for variant in variants}
    assert len(variants) == len(versions)


def test_canonical_document_round_trips() -> None:
    """``to_document`` is a valid policy.v1 file that loads back to the same policy."""
    policy = load_policy(default_schemas_dir() / "examples" / "policy.v1.json", contracts=CONTRACTS)
    canonical = policy.to_document()
    assert CONTRACTS.describe_violation(SchemaName.POLICY, canonical) is None
    reloaded = policy_from_document(canonical, contracts=CONTRACTS)
    assert (policy, policy.version) == (reloaded, reloaded.version)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (document(blocklst={}), "Additional properties"),
        (document(blocklist={"gun": {"review_at": 0.9, "reject_at": 0.5}}), "review_at 0.9 > reject_at"),
        (document(blocklist={"gun": {"reject_at": 1.5}}), r"\$\.blocklist\.gun\.reject_at"),
        (document(blocklist={"gun": {}, "Gun": {}}), "twice"),
        (document(allowlist={"shoe": {}}), "mode is blocklist"),
        ({"mode": "allowlist", "allowlist": {"gun": {}}, "blocklist": {"gun": {}}}, "both"),
        (document(on_image_error="approved"), r"\$\.on_image_error"),
        ({"blocklist": {}}, "'mode' is a required property"),
    ],
)
def test_invalid_policies_are_refused_with_a_precise_message(doc: dict[str, Any], message: str) -> None:
    """A policy that is malformed or contradicts itself stops start-up and says where."""
    with pytest.raises(ConfigurationError, match=message):
        policy_from_document(doc, contracts=CONTRACTS)


def test_unreadable_policy_files_are_configuration_errors(tmp_path: Path) -> None:
    """Missing files, broken JSON and non-object JSON are all refused as configuration errors."""
    broken, listing = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text("{")
    listing.write_text("[]")
    for path in (tmp_path / "missing.json", broken, listing):
        with pytest.raises(ConfigurationError, match=path.name):
            load_policy(path, contracts=CONTRACTS)


def test_policy_provides_the_submission_guard() -> None:
    """Host allowlist and consent rules travel from the policy file to the decoder's guard."""
    policy = policy_from_document(
        document(
            consent={"required": True, "purposes": ["content_moderation"]}, url_hosts=["Images.Example.com."]
        ),
        contracts=CONTRACTS,
    )
    expected = Guard(
        max_value_bytes=4096,
        url_hosts=("images.example.com",),
        consent_required=True,
        consent_purposes=frozenset({"content_moderation"}),
    )
    assert expected == policy.guard(max_value_bytes=4096)


# --- properties ---------------------------------------------------------------------------------------------

VOCABULARY = ("gun", "knife", "blood", "shoe", "product", "tree", "indoor")
CONFIDENCES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    names = draw(st.permutations(VOCABULARY))
    blocked = names[: draw(st.integers(0, 3))]
    mode = draw(st.sampled_from(PolicyMode))
    allowed = names[3 : 3 + draw(st.integers(0, 3))] if mode is PolicyMode.ALLOWLIST else ()
    blocklist = {}
    for name in blocked:
        review_at, reject_at = sorted((draw(CONFIDENCES), draw(CONFIDENCES)))
        blocklist[name] = BlockRule(review_at, draw(st.sampled_from([reject_at, None])))
    return Policy(
        mode=mode,
        min_confidence=draw(CONFIDENCES),
        blocklist=blocklist,
        allowlist={name: draw(CONFIDENCES) for name in allowed},
        on_allowlist_miss=draw(st.sampled_from([Decision.NEEDS_REVIEW, Decision.REJECTED])),
    )


TAG_PAIRS = st.tuples(st.sampled_from(VOCABULARY + tuple(name.title() for name in VOCABULARY)), CONFIDENCES)
TAGS = st.lists(TAG_PAIRS, max_size=8).map(lambda pairs: analysis(*pairs))


@given(policies(), TAGS, st.booleans())
def test_every_input_gets_exactly_one_decision_consistent_with_its_reasons(
    policy: Policy, seen: Analysis, hold: bool
) -> None:
    """The decision is the most severe finding; tag order never changes the verdict."""
    verdict = decide(policy, seen, hold=hold)
    reversed_tags = Analysis(seen.model_version, tuple(reversed(seen.tags)))
    assert verdict == decide(policy, reversed_tags, hold=hold)
    rules = {reason.rule for reason in verdict.reasons}
    if Rule.BLOCKLIST_REJECT in rules:
        assert verdict.decision is Decision.REJECTED
    if verdict.decision is Decision.APPROVED:
        assert rules <= {Rule.ALLOWLIST_MATCH}


def near_thresholds(policy: Policy) -> st.SearchStrategy[float]:
    """Confidences at and just below the policy's thresholds, where decisions change, or anywhere."""
    rules = policy.blocklist.values()
    edges = {
        policy.min_confidence,
        *(rule.review_at for rule in rules),
        *(rule.reject_at or 1.0 for rule in rules),
    }
    boundary = sorted({max(math.nextafter(edge, 0.0), 0.0) for edge in edges} | edges)
    return st.sampled_from(boundary) | CONFIDENCES


@settings(max_examples=400)  # the interesting corner (no other signal, between thresholds) is narrow
@given(policies(), st.lists(TAG_PAIRS, max_size=3), st.data())
def test_raising_a_blocklisted_confidence_never_makes_the_decision_more_permissive(
    policy: Policy, others: list[tuple[str, float]], data: st.DataObject
) -> None:
    """More evidence of a blocked tag can only keep or tighten the decision, whatever else is seen."""
    assume(policy.blocklist)
    name = data.draw(st.sampled_from(sorted(policy.blocklist)))
    low, high = sorted((data.draw(near_thresholds(policy)), data.draw(near_thresholds(policy))))
    before = decide(policy, analysis(*others, (name, low))).decision
    after = decide(policy, analysis(*others, (name, high))).decision
    assert SEVERITY[before] <= SEVERITY[after]


@given(policies(), TAGS, st.booleans())
def test_allowlist_never_approves_without_an_allowed_tag_at_its_threshold(
    policy: Policy, seen: Analysis, hold: bool
) -> None:
    """An allowlist approval always rests on an allowlisted tag at or above its ``approve_at``."""
    if (
        policy.mode is not PolicyMode.ALLOWLIST
        or decide(policy, seen, hold=hold).decision is not Decision.APPROVED
    ):
        return
    assert any(
        tag.name.casefold() in policy.allowlist and tag.confidence >= policy.allowlist[tag.name.casefold()]
        for tag in seen.tags
    )


@given(policies(), TAGS)
def test_hold_never_approves_and_changes_nothing_else(policy: Policy, seen: Analysis) -> None:
    """With hold set there is no approval; a verdict that was not an approval is unchanged."""
    free, held = decide(policy, seen), decide(policy, seen, hold=True)
    assert held.decision is not Decision.APPROVED
    if free.decision is not Decision.APPROVED:
        assert free == held


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    return copy.deepcopy(value)


@given(policies(), st.randoms(use_true_random=False))
def test_version_is_stable_under_key_reordering(policy: Policy, rng: random.Random) -> None:
    """The same rules written in any key order hash to the same version."""
    reordered = shuffled(policy.to_document(), rng)
    assert policy.version == policy_from_document(reordered, contracts=CONTRACTS).version
