"""What ``moderation-worker calibrate`` does once its options are parsed: read verdicts, calibrate, propose.

Verdicts come from a JSONL file of ``review-decision.v1`` records or from the review-decisions topic (read
to its end, then stop; Kafka as configured by the MODERATION_KAFKA_* settings). Without ``--topic`` that is
the topic the review console writes to (``MODERATION_REVIEW_DECISIONS_TOPIC``, read as the console reads
it). The moves are proposed against the policy given (default: the bundled one) and never applied.
``summary`` is the printed text; ``report`` the JSON document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.evaluation.calibration import Calibration, Cell, calibrate
from worker.evaluation.threshold_moves import ThresholdMove, propose_moves
from worker.evaluation.verdicts import read_verdict_file
from worker.policy_file import load_default_policy, load_policy
from worker.review.settings import decisions_topic
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class CalibrateOptions:
    """The command's options: ``verdict_file`` or else ``topic`` (``None``: the console's decisions topic);
    ``policy`` ``None``: the bundled policy."""

    verdict_file: Path | None
    topic: str | None
    policy: Path | None
    band_width: float
    min_evidence: int
    target_precision: float


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    """Where the verdicts came from, how many were unusable, the rows and the proposed moves."""

    source: str
    verdicts: int
    skipped: int
    calibration: Calibration
    moves: tuple[ThresholdMove, ...]

    def report(self) -> dict[str, object]:
        """The JSON document of the run."""
        return {
            "source": self.source,
            "verdicts": self.verdicts,
            "skipped": self.skipped,
            "calibration": self.calibration.to_json(),
            "moves": [move.to_json() for move in self.moves],
        }


async def run_calibration(options: CalibrateOptions, environ: Mapping[str, str]) -> CalibrationRun:
    """Read, calibrate, propose. Raises ``ConfigurationError`` (bad file, policy, topic or settings) or
    ``KafkaConnectionFailed``."""
    policy = load_default_policy() if options.policy is None else load_policy(options.policy)
    if options.verdict_file is not None:
        verdicts, skipped, source = read_verdict_file(options.verdict_file), 0, str(options.verdict_file)
    else:
        from worker.evaluation.verdict_source import read_verdict_topic  # noqa: PLC0415 - loads aiokafka

        topic = options.topic or decisions_topic(environ)
        read = await read_verdict_topic(Settings.from_env(environ, need_analyzer=False), topic)
        verdicts, skipped, source = list(read.verdicts), read.skipped, f"topic {topic}"
    calibration = calibrate(verdicts, options.band_width)
    moves = propose_moves(
        calibration, policy, min_evidence=options.min_evidence, target_precision=options.target_precision
    )
    return CalibrationRun(source, len(verdicts), skipped, calibration, tuple(moves))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f} %"


def _row(label: str, cell: Cell) -> str:
    return (
        f"  {label:<40} evidence {cell.evidence:>5}  humans rejected {_pct(cell.human_reject_rate)}  "
        f"overturned {_pct(cell.overturn_rate)}"
    )


def summary(run: CalibrationRun) -> list[str]:
    """The lines the command prints: headline override rates, every row, every proposed move."""
    calibration = run.calibration
    lines = [f"{run.verdicts} verdicts from {run.source} ({run.skipped} unusable records skipped)"]
    lines.append("by machine decision (audit samples weighted by 1/probability):")
    lines.extend(_row(str(decision), cell) for decision, cell in sorted(calibration.by_decision.items()))
    lines.append("by rule, tag and confidence band:")
    for key, cell in sorted(calibration.cells.items()):
        band = "" if key.band < 0 else f" [{key.band:.2f}, {calibration.band_end(key.band):.2f})"
        lines.append(_row(f"{key.rule} {key.tag}{band}".strip(), cell))
    if not run.moves:
        lines.append("no threshold move has enough evidence")
    for move in run.moves:
        current = "never" if move.current is None else f"{move.current:g}"
        lines.append(
            f"proposed: {move.tag}.{move.setting} {current} -> {move.proposed:g} ({move.why}: "
            f"{_pct(move.rate).strip()} of {move.evidence} verdicts)"
        )
    return lines
