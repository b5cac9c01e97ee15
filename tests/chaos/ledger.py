"""The independent ledger: where every submitted id ended up, how the replicas exited, which targets were met.

Pure: it judges what the reader saw in the topics and what the supervisor saw of the processes.

- **lost**: an id in the input topic that is in no output topic;
- **duplicated**: an id more than once in one route (``duplicate_records`` counts the extra records);
- **contradictory**: an id in two different routes;
- **misrouted**: an id in exactly one route, but not the one its image must get.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

#: the exit codes ``moderation-worker run`` documents (docs/configuration.md)
DOCUMENTED_EXIT_CODES: dict[int, str] = {
    0: "clean stop",
    2: "configuration error",
    3: "fatal error",
    5: "cannot reach or authenticate to Kafka",
}
SIGKILL_CODE = -9
#: how many ids of each kind of problem a report names
SAMPLE = 10


class ExitCause(StrEnum):
    """What the chaos run had done to a process before it exited."""

    SIGKILL = "sigkill"
    SIGTERM = "sigterm"
    SIGTERM_TIMEOUT = "sigterm-timeout"  # SIGTERM ignored past the deadline, then SIGKILL
    UNPROVOKED = "unprovoked"


@dataclass(frozen=True)
class Exit:
    """One process exit: the replica slot, its incarnation, the return code (negative: the signal)."""

    replica: int
    incarnation: int
    code: int
    cause: ExitCause
    at_s: float
    log: str


@dataclass(frozen=True)
class ExitRow:
    """How often one (code, cause) pair was seen, what it means and whether it is a finding."""

    code: int
    cause: ExitCause
    count: int
    meaning: str
    finding: bool


def exit_meaning(code: int, cause: ExitCause) -> tuple[str, bool]:
    """The meaning of ``code`` after ``cause`` and whether it is a finding (neither documented nor ours)."""
    if code == SIGKILL_CODE and cause is ExitCause.SIGKILL:
        return "killed by the chaos run's SIGKILL", False
    if cause is ExitCause.SIGTERM_TIMEOUT:
        return "ignored SIGTERM past the deadline (killed)", True
    if code in DOCUMENTED_EXIT_CODES:
        return DOCUMENTED_EXIT_CODES[code], False
    if code < 0:
        return f"killed by signal {-code}", True
    return "undocumented exit code", True


def exit_rows(exits: Iterable[Exit]) -> list[ExitRow]:
    """One row per (code, cause) seen, most frequent first."""
    counts = Counter((exit.code, exit.cause) for exit in exits)
    rows = [
        ExitRow(code, cause, count, *exit_meaning(code, cause)) for (code, cause), count in counts.items()
    ]
    return sorted(rows, key=lambda row: (-row.count, row.code, row.cause))


@dataclass(frozen=True)
class Tally:
    """The ledger of one scenario (``routed`` counts output records per route, duplicates included)."""

    input_ids: int
    input_duplicates: tuple[str, ...]
    lost: tuple[str, ...]
    duplicated: tuple[str, ...]
    duplicate_records: int
    contradictory: tuple[str, ...]
    misrouted: tuple[str, ...]
    unknown: tuple[str, ...]
    routed: dict[str, int]

    @property
    def duplicate_rate(self) -> float:
        """Duplicated ids per input id."""
        return len(self.duplicated) / self.input_ids if self.input_ids else 0.0


def tally(expected: Mapping[str, str], input_keys: Sequence[str], seen: Mapping[str, Sequence[str]]) -> Tally:
    """Judge ``seen`` (id -> the route of each output record) against the ``input_keys`` read back from the
    input topic and ``expected`` (id -> its route); ``unknown`` are output ids nobody submitted."""
    submitted = Counter(input_keys)
    lost, duplicated, contradictory, misrouted = [], [], [], []
    duplicate_records = 0
    for image_id in sorted(submitted):
        routes = Counter(seen.get(image_id, ()))
        if not routes:
            lost.append(image_id)
            continue
        extra = sum(count - 1 for count in routes.values())
        if extra:
            duplicated.append(image_id)
            duplicate_records += extra
        if len(routes) > 1:
            contradictory.append(image_id)
        elif next(iter(routes)) != expected.get(image_id):
            misrouted.append(image_id)
    return Tally(
        input_ids=len(submitted),
        input_duplicates=tuple(sorted(key for key, count in submitted.items() if count > 1)),
        lost=tuple(lost),
        duplicated=tuple(duplicated),
        duplicate_records=duplicate_records,
        contradictory=tuple(contradictory),
        misrouted=tuple(misrouted),
        unknown=tuple(sorted(set(seen) - set(submitted))),
        routed=dict(sorted(Counter(route for routes in seen.values() for route in routes).items())),
    )


@dataclass(frozen=True)
class Target:
    """One target of the run: what it asks, what was measured, whether it was met."""

    name: str
    goal: str
    actual: str
    met: bool


def targets(
    ledger: Tally,
    rows: Sequence[ExitRow],
    *,
    expected_ids: int,
    duplicates_must_be_zero: bool,
    drained: bool,
) -> list[Target]:
    """The targets of one scenario; duplicates are a target only where ``duplicates_must_be_zero``."""
    findings = sum(row.count for row in rows if row.finding)
    found = [
        Target(
            "input intact",
            f"{expected_ids} ids once each",
            _input_actual(ledger),
            ledger.input_ids == expected_ids and not ledger.input_duplicates,
        ),
        Target("lost", "0", str(len(ledger.lost)), not ledger.lost),
        Target("contradictory", "0", str(len(ledger.contradictory)), not ledger.contradictory),
        Target("misrouted", "0", str(len(ledger.misrouted)), not ledger.misrouted),
        Target("unknown ids in outputs", "0", str(len(ledger.unknown)), not ledger.unknown),
        Target("undocumented exits", "0", str(findings), findings == 0),
        Target("group lag 0 (committed)", "yes", "yes" if drained else "no", drained),
    ]
    if duplicates_must_be_zero:
        found.append(Target("duplicated", "0", str(len(ledger.duplicated)), not ledger.duplicated))
    return found


def _input_actual(ledger: Tally) -> str:
    if ledger.input_duplicates:
        return f"{ledger.input_ids} ids, {len(ledger.input_duplicates)} more than once"
    return f"{ledger.input_ids} ids"
