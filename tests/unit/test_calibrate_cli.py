"""The `calibrate` command on a verdict file: printed override rates, the JSON figures, the proposed moves."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from worker.cli import main


def _verdict(verdict: str, machine: str, confidence: float, probability: float | None) -> bytes:
    reasons = (
        []
        if machine == "approved"
        else [{"rule": "blocklist_review", "tag": "weapon", "confidence": confidence}]
    )
    document: dict[str, object] = {
        "schema": "review-decision.v1", "id": "i",
        "queue": "needs_review" if probability is None else "audit", "verdict": verdict, "reason": "r",
        "note": "", "reviewer": "a", "role": "reviewer", "lease_id": "l",
        "claimed_at": "2026-12-03T09:59:00Z", "decided_at": "2026-12-03T10:00:00Z",
        "item": {"topic": "images.needs-review", "partition": 0, "offset": 0},
        "machine": {"decision": machine, "rules": [str(reason["rule"]) for reason in reasons],
                    "reasons": reasons, "tags": [{"name": "weapon", "confidence": confidence}],
                    "policy_version": "sha256:0123456789abcdef", "model_version": None,
                    "source": {"topic": "images.submitted", "partition": 0, "offset": 0}},
        "published_to": None,
    }  # fmt: skip
    if probability is not None:
        machine_object = document["machine"]
        assert isinstance(machine_object, dict)
        machine_object |= {"audit_probability": probability, "published_decision": machine}
    return orjson.dumps(document) + b"\n"


def test_calibrate_reports_weighted_override_rates_and_a_move(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten reviewed weapon images at 0.8, all rejected, and four audited approvals (probability 0.25, one
    overturned): exit 0, approvals overturned 25 %, and the bundled policy's weapon reject_at 0.85 -> 0.8."""
    verdicts = tmp_path / "verdicts.jsonl"
    lines = [_verdict("reject", "needs_review", 0.8, None)] * 10
    lines += [_verdict("approve", "approved", 0.1, 0.25)] * 3 + [_verdict("reject", "approved", 0.1, 0.25)]
    verdicts.write_bytes(b"".join(lines))
    figures = tmp_path / "calibration.json"
    code = main(["calibrate", "--file", str(verdicts), "--json", str(figures)])
    out = capsys.readouterr().out
    report = orjson.loads(figures.read_bytes())
    moves = [(m["tag"], m["setting"], m["current"], m["proposed"], m["evidence"]) for m in report["moves"]]
    assert (0, 0.25, [("weapon", "reject_at", 0.85, 0.8, 10)], True) == (
        code,
        report["calibration"]["by_decision"]["approved"]["overturn_rate"],
        moves,
        "proposed: weapon.reject_at 0.85 -> 0.8" in out,
    )


def test_a_bad_verdict_file_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line that is not a review decision: exit 2 and the file:line on stderr."""
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_bytes(_verdict("approve", "approved", 0.1, None) + b'{"schema": "other"}\n')
    code = main(["calibrate", "--file", str(verdicts)])
    assert (2, True) == (code, f"{verdicts}:2: not a review-decision.v1 record" in capsys.readouterr().err)
