"""The chaos run's outputs: a plain-text table per scenario and one JSON document for the whole run.

Pure: both are built from ``ScenarioResult`` values. Ids are listed only as samples (``ledger.SAMPLE``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import orjson

from tests.chaos.ledger import SAMPLE
from tests.chaos.plan import ChaosPlan
from tests.chaos.scenario import ScenarioResult


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def render(plan: ChaosPlan, results: Sequence[ScenarioResult]) -> str:
    """The run as text: per scenario its figures, targets and exit codes; a last line PASSED or FAILED."""
    size = "short" if plan.short else "full"
    lines = [f"chaos run: {size}, seed {plan.seed}, plan {plan.fingerprint()}, {plan.replicas} replicas"]
    for result in results:
        ledger = result.ledger
        lines += [
            "",
            f"scenario {result.name}: {result.submissions} submissions ({result.malformed} malformed, "
            f"{result.flaky} flaky), {len(result.faults)} faults, {result.elapsed_s:.0f} s",
            f"  routed {ledger.routed}; duplicated ids {len(ledger.duplicated)} "
            f"({100 * ledger.duplicate_rate:.2f} %, {ledger.duplicate_records} extra records); "
            f"every id routed {result.drain_s_after_last_fault:.1f} s after the last fault, "
            f"committed {_seconds(result.committed_s_after_last_fault)}",
        ]
        rows = [("target", "goal", "actual", "met")]
        rows += [(t.name, t.goal, t.actual, "yes" if t.met else "NO") for t in result.targets]
        lines += ["  " + line for line in _table(rows)]
        codes = [("exit code", "after", "count", "meaning", "finding")]
        codes += [
            (str(r.code), str(r.cause), str(r.count), r.meaning, "FINDING" if r.finding else "")
            for r in result.exit_rows
        ]
        lines += ["  " + line for line in _table(codes)]
        for fault in result.faults:
            detail = " ".join(f"{key}={value}" for key, value in fault.detail.items())
            lines.append(
                f"  {fault.started_s:7.1f}-{fault.ended_s:7.1f} s  {fault.fault.kind}  {detail}".rstrip()
            )
    passed = all(result.passed for result in results)
    lines += ["", "PASSED: every target met" if passed else "FAILED: " + _missed(results)]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "never (group lag stayed)" if value is None else f"after {value:.1f} s"


def _missed(results: Sequence[ScenarioResult]) -> str:
    return ", ".join(
        f"{result.name}: {target.name} {target.actual} (goal {target.goal})"
        for result in results
        for target in result.targets
        if not target.met
    )


def _scenario_json(result: ScenarioResult) -> dict[str, object]:
    ledger = result.ledger
    return {
        "name": result.name,
        "passed": result.passed,
        "submissions": result.submissions,
        "malformed": result.malformed,
        "flaky": result.flaky,
        "routed": ledger.routed,
        "lost": len(ledger.lost),
        "duplicated_ids": len(ledger.duplicated),
        "duplicate_records": ledger.duplicate_records,
        "duplicate_rate": round(ledger.duplicate_rate, 5),
        "contradictory": len(ledger.contradictory),
        "misrouted": len(ledger.misrouted),
        "samples": {
            "lost": list(ledger.lost[:SAMPLE]),
            "duplicated": list(ledger.duplicated[:SAMPLE]),
            "contradictory": list(ledger.contradictory[:SAMPLE]),
            "misrouted": list(ledger.misrouted[:SAMPLE]),
            "unknown": list(ledger.unknown[:SAMPLE]),
            "input_duplicates": list(ledger.input_duplicates[:SAMPLE]),
        },
        "targets": [asdict(target) for target in result.targets],
        "exit_codes": [asdict(row) for row in result.exit_rows],
        "exits": [asdict(exit) for exit in result.exits],
        "faults": [
            {
                "kind": str(f.fault.kind),
                "planned_at_s": f.fault.at_s,
                "started_s": f.started_s,
                "ended_s": f.ended_s,
                "replica": f.fault.replica,
                "duration_s": f.fault.duration_s,
                **f.detail,
            }
            for f in result.faults
        ],
        "produced_s": result.produced_s,
        "drained": result.drained,
        "lag_when_given_up": result.lag_when_given_up,
        "drain_s_after_last_fault": result.drain_s_after_last_fault,
        "committed_s_after_last_fault": result.committed_s_after_last_fault,
        "elapsed_s": result.elapsed_s,
        "analyzer_answers": result.analyzer_answers,
    }


def to_json(plan: ChaosPlan, results: Sequence[ScenarioResult], *, machine: Mapping[str, str | int]) -> bytes:
    """The whole run as an indented JSON document."""
    document = {
        "seed": plan.seed,
        "short": plan.short,
        "plan_fingerprint": plan.fingerprint(),
        "replicas": plan.replicas,
        "partitions": plan.partitions,
        "machine": dict(machine),
        "passed": all(result.passed for result in results),
        "scenarios": [_scenario_json(result) for result in results],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
