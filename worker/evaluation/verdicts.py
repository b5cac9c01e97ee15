"""Reading ``review-decision.v1`` records: one human verdict on one machine result; pure.

The reader takes what calibration needs from the shape the review console writes
(``schemas/review-decision.v1.json``) and tolerates the rest (consumers ignore fields they do not know):
``id``, ``verdict`` (approve | reject | escalate) and ``machine`` with its ``decision``, its ``reasons``
(``{rule, tag, confidence}`` as in ``moderation-result.v1``; a record without them falls back to the bare
``rules``), its ``tags`` (``{name, confidence}``) and, on audit verdicts, ``audit_probability``. Per-tag and
per-band figures need tags or tag reasons; a record with rules only counts per rule. A record that is not
a usable verdict raises ``VerdictError`` naming where it came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.domain import Decision, Reason, Tag
from worker.errors import ConfigurationError

SCHEMA = "review-decision.v1"
VERDICTS = {"approve": Decision.APPROVED, "reject": Decision.REJECTED, "escalate": None}


class VerdictError(ConfigurationError):
    """A record that is not a usable review decision; the message starts with where it came from."""


@dataclass(frozen=True, slots=True)
class ReviewVerdict:
    """One human verdict. ``human`` is the decision it amounts to (``None``: escalated, no decision yet);
    ``audit_probability`` is set on audit samples of automatic decisions (in (0, 1])."""

    image_id: str
    human: Decision | None
    machine: Decision
    reasons: tuple[Reason, ...]
    tags: tuple[Tag, ...]
    audit_probability: float | None = None

    @property
    def weight(self) -> float:
        """The Horvitz-Thompson weight: how many decisions of the population this verdict stands for."""
        return 1.0 if self.audit_probability is None else 1.0 / self.audit_probability


def parse_verdict(document: object, where: str) -> ReviewVerdict:
    """The verdict in ``document``; raises ``VerdictError`` naming ``where`` (e.g. ``file:line``)."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise VerdictError(f"{where}: not a {SCHEMA} record")
    verdict, machine = document.get("verdict"), document.get("machine")
    if verdict not in VERDICTS or not isinstance(machine, dict):
        raise VerdictError(f"{where}: verdict must be approve, reject or escalate, with a machine object")
    try:
        decision = Decision(str(machine.get("decision")))
    except ValueError:
        raise VerdictError(
            f"{where}: machine.decision {machine.get('decision')!r} is not a decision"
        ) from None
    probability = _probability(machine, where)
    return ReviewVerdict(
        image_id=str(document.get("id", "")),
        human=VERDICTS[verdict],
        machine=decision,
        reasons=_reasons(machine, where),
        tags=tuple(_tag(entry, where) for entry in machine.get("tags") or ()),
        audit_probability=probability,
    )


def _probability(machine: Mapping[str, object], where: str) -> float | None:
    value = machine.get("audit_probability")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 < value <= 1.0:
        raise VerdictError(f"{where}: the audit probability must be a number in (0, 1], not {value!r}")
    return float(value)


def _reasons(machine: Mapping[str, object], where: str) -> tuple[Reason, ...]:
    reasons = machine.get("reasons")
    if isinstance(reasons, list):
        parsed = []
        for entry in reasons:
            if not isinstance(entry, dict) or not isinstance(entry.get("rule"), str):
                raise VerdictError(f"{where}: each machine reason needs a rule")
            confidence = entry.get("confidence")
            tag = entry.get("tag")
            parsed.append(
                Reason(
                    entry["rule"],
                    tag.casefold() if isinstance(tag, str) else None,
                    float(confidence) if isinstance(confidence, int | float) else None,
                )
            )
        return tuple(parsed)
    rules = machine.get("rules") or ()
    if not isinstance(rules, list | tuple) or not all(isinstance(rule, str) for rule in rules):
        raise VerdictError(f"{where}: machine.rules must be a list of rule names")
    return tuple(Reason(rule) for rule in rules)


def _tag(entry: object, where: str) -> Tag:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise VerdictError(f"{where}: each machine tag needs a name and a confidence")
    confidence = entry.get("confidence")
    if not isinstance(confidence, int | float) or isinstance(confidence, bool):
        raise VerdictError(f"{where}: each machine tag needs a name and a confidence")
    return Tag(entry["name"].casefold(), float(confidence))


def read_verdict_file(path: Path) -> list[ReviewVerdict]:
    """Every verdict of a JSONL file of ``review-decision.v1`` records; blank lines are skipped."""
    return list(_verdict_lines(path))


def _verdict_lines(path: Path) -> Iterator[ReviewVerdict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerdictError(f"{path}:0: cannot read: {exc}") from exc
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise VerdictError(f"{path}:{line}: not JSON: {exc}") from exc
            yield parse_verdict(document, f"{path}:{line}")
