"""The moderation policy: a versioned, pure mapping from what the analyzer saw to a decision with reasons.

Built from a ``policy.v1`` document by ``worker.policy_file`` (docs/policy.md); ``decide`` and
``decide_image_error`` do no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import orjson

from worker.contracts import DEFAULT_MAX_VALUE_BYTES, Guard, SchemaName
from worker.domain import Analysis, Decision, Reason, Verdict, strongest_of
from worker.errors import ConfigurationError

DEFAULT_REVIEW_AT: Final = 0.5
DEFAULT_REJECT_AT: Final = 0.85
DEFAULT_APPROVE_AT: Final = 0.8
DEFAULT_MIN_CONFIDENCE: Final = 0.5
_MAX_DETAIL_CHARS: Final = 64


class PolicyMode(StrEnum):
    """Blocklist: approve unless a listed tag fires. Allowlist: approve only when a listed tag fires."""

    BLOCKLIST = "blocklist"
    ALLOWLIST = "allowlist"


class Rule(StrEnum):
    """The closed set of ``Reason.rule`` values, in the order reasons of equal severity are listed."""

    HASH_BANK = "hash_bank"
    BLOCKLIST_REJECT = "blocklist_reject"
    IMAGE_ERROR = "image_error"
    ALLOWLIST_MISSING = "allowlist_missing"
    BLOCKLIST_REVIEW = "blocklist_review"
    NO_SIGNAL = "no_signal"
    HOLD = "hold"
    ALLOWLIST_MATCH = "allowlist_match"
    HUMAN_REVIEW = "human_review"  # never the policy's: the review console's final result (docs/review.md)


_SEVERITY: Final = {Decision.APPROVED: 0, Decision.NEEDS_REVIEW: 1, Decision.REJECTED: 2}
_RULE_ORDER: Final = {rule: index for index, rule in enumerate(Rule)}
# Reasons without a tag, and verdicts without a tag reason, are the same every time: built once.
_NO_SIGNAL: Final = Reason(Rule.NO_SIGNAL)
_ALLOWLIST_MISSING: Final = Reason(Rule.ALLOWLIST_MISSING)
_HOLD: Final = Reason(Rule.HOLD)
_APPROVED: Final = Verdict(Decision.APPROVED, ())
_HELD: Final = Verdict(Decision.NEEDS_REVIEW, (_HOLD,))


@dataclass(frozen=True, slots=True)
class BlockRule:
    """Thresholds of one blocklisted tag; ``reject_at`` ``None`` means the tag only ever sends to review."""

    review_at: float
    reject_at: float | None


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy in sorted key order, so iteration (and so reason order) never depends on the file."""
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy. Tag names are stored case-folded; ``version`` hashes the canonical form.

    Build it with ``policy_from_document`` / ``load_policy``; direct construction is checked the same way.
    Raises ``ConfigurationError`` for thresholds out of [0, 1], ``review_at`` above ``reject_at``, a tag in
    both lists, an allowlist in blocklist mode, or an ``approved`` fallback route.
    """

    mode: PolicyMode
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    blocklist: Mapping[str, BlockRule] = field(default_factory=dict, hash=False)
    allowlist: Mapping[str, float] = field(default_factory=dict, hash=False)
    on_image_error: Decision = Decision.NEEDS_REVIEW
    on_allowlist_miss: Decision = Decision.NEEDS_REVIEW
    watched_tags: tuple[str, ...] = ()
    consent_required: bool = False
    consent_purposes: frozenset[str] = frozenset()
    url_hosts: tuple[str, ...] = ()
    version: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        blocklist = _casefolded(self.blocklist, "blocklist")
        allowlist = _casefolded(self.allowlist, "allowlist")
        fallbacks = (self.on_image_error, self.on_allowlist_miss)
        _check(self.mode, self.min_confidence, blocklist, allowlist, fallbacks)
        # Frozen: the normalised values are written once, here, before anyone can see the object.
        object.__setattr__(self, "blocklist", _frozen(blocklist))
        object.__setattr__(self, "allowlist", _frozen(allowlist))
        watched = sorted({tag.casefold() for tag in self.watched_tags})
        object.__setattr__(self, "watched_tags", tuple(watched))
        hosts = sorted({host.lower().rstrip(".") for host in self.url_hosts})
        object.__setattr__(self, "url_hosts", tuple(hosts))
        digest = hashlib.sha256(orjson.dumps(self.to_document(), option=orjson.OPT_SORT_KEYS)).hexdigest()
        object.__setattr__(self, "version", f"sha256:{digest[:16]}")

    def to_document(self) -> dict[str, Any]:
        """The canonical ``policy.v1`` document: defaults filled into every tag, nothing without effect.

        Two files that decide alike (key order, tag case, omitted defaults, descriptions) give the same
        document and so the same ``version``.
        """
        document: dict[str, Any] = {
            "schema": str(SchemaName.POLICY),
            "mode": str(self.mode),
            "defaults": {"min_confidence": self.min_confidence},
            "blocklist": {
                name: {"review_at": rule.review_at, "reject_at": rule.reject_at}
                for name, rule in self.blocklist.items()
            },
            "on_image_error": str(self.on_image_error),
            "watched_tags": list(self.watched_tags),
        }
        if self.mode is PolicyMode.ALLOWLIST:
            document["allowlist"] = {name: {"approve_at": at} for name, at in self.allowlist.items()}
            document["on_allowlist_miss"] = str(self.on_allowlist_miss)
        if self.consent_required:
            document["consent"] = {"required": True, "purposes": sorted(self.consent_purposes)}
        if self.url_hosts:
            document["url_hosts"] = list(self.url_hosts)
        return document

    def guard(self, *, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Guard:
        """The submission guard this policy asks for (host allowlist, consent), with the given size limit."""
        return Guard(
            max_value_bytes=max_value_bytes,
            url_hosts=self.url_hosts,
            consent_required=self.consent_required,
            consent_purposes=self.consent_purposes,
        )


def _casefolded(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for name, value in mapping.items():
        key = name.casefold()
        if key in folded:
            raise ConfigurationError(f"policy {what} lists tag {key!r} twice (tag names ignore case)")
        folded[key] = value
    return folded


def _check(
    mode: PolicyMode,
    min_confidence: float,
    blocklist: Mapping[str, BlockRule],
    allowlist: Mapping[str, float],
    fallbacks: Iterable[Decision],
) -> None:
    thresholds = [("min_confidence", min_confidence), *(("approve_at", at) for at in allowlist.values())]
    for rule in blocklist.values():
        thresholds.append(("review_at", rule.review_at))
        if rule.reject_at is not None:
            thresholds.append(("reject_at", rule.reject_at))
    for name, value in thresholds:
        if not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"policy {name} {value} is outside [0, 1]")
    for tag, rule in blocklist.items():
        if rule.reject_at is not None and rule.review_at > rule.reject_at:
            raise ConfigurationError(f"policy blocklist tag {tag!r}: review_at {rule.review_at} > reject_at")
    if both := sorted(blocklist.keys() & allowlist.keys()):
        raise ConfigurationError(f"policy tags {both} are in both the blocklist and the allowlist")
    if mode is PolicyMode.BLOCKLIST and allowlist:
        raise ConfigurationError("policy has an allowlist but its mode is blocklist")
    if Decision.APPROVED in fallbacks:
        raise ConfigurationError("policy fallback routes (on_image_error, on_allowlist_miss) cannot approve")


def _ordered(decision: Decision, findings: list[tuple[Decision, Reason]]) -> Verdict:
    findings.sort(
        key=lambda item: (
            -_SEVERITY[item[0]],
            _RULE_ORDER[Rule(item[1].rule)],
            -(item[1].confidence or 0.0),
            item[1].tag or "",
        )
    )
    return Verdict(decision, tuple(reason for _, reason in findings))


def decide(policy: Policy, analysis: Analysis, *, hold: bool = False) -> Verdict:
    """Map an analysis to exactly one decision, with every rule that fired as a reason, most severe first.

    Blocklisted tags at/above ``reject_at`` reject and at/above ``review_at`` review. In allowlist mode an
    allowlisted tag at/above ``approve_at`` approves; without one, ``on_allowlist_miss`` applies. No tag
    outside the blocklist at/above ``min_confidence`` means no usable signal: review. The most severe finding
    wins (rejected > needs_review > approved); ``hold`` turns an approval into needs_review.
    """
    findings: list[tuple[Decision, Reason]] = []
    matched = False
    signal = False
    for name, confidence in strongest_of(analysis.tags, casefold=True).items():
        rule = policy.blocklist.get(name)
        if rule is not None:
            if rule.reject_at is not None and confidence >= rule.reject_at:
                findings.append((Decision.REJECTED, Reason(Rule.BLOCKLIST_REJECT, name, confidence)))
            elif confidence >= rule.review_at:
                findings.append((Decision.NEEDS_REVIEW, Reason(Rule.BLOCKLIST_REVIEW, name, confidence)))
            continue  # a blocklisted tag is never evidence that the image is fine
        signal = signal or confidence >= policy.min_confidence
        approve_at = policy.allowlist.get(name)
        if policy.mode is PolicyMode.ALLOWLIST and approve_at is not None and confidence >= approve_at:
            matched = True
            findings.append((Decision.APPROVED, Reason(Rule.ALLOWLIST_MATCH, name, confidence)))
    if not signal:
        findings.append((Decision.NEEDS_REVIEW, _NO_SIGNAL))
    if policy.mode is PolicyMode.ALLOWLIST and not matched:
        findings.append((policy.on_allowlist_miss, _ALLOWLIST_MISSING))
    if not findings:  # the common case of a blocklist policy: nothing fired
        return _HELD if hold else _APPROVED
    decision = max((found for found, _ in findings), key=_SEVERITY.__getitem__)
    if hold and decision is Decision.APPROVED:
        decision = Decision.NEEDS_REVIEW
        findings.append((Decision.NEEDS_REVIEW, _HOLD))
    return _ordered(decision, findings)


def decide_image_error(policy: Policy, code: str) -> Verdict:
    """The verdict for an image the analyzer refused; ``code`` is its error code (e.g. InvalidImageFormat)."""
    return Verdict(policy.on_image_error, (Reason(Rule.IMAGE_ERROR, detail=code[:_MAX_DETAIL_CHARS]),))
