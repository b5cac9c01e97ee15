"""The evaluation commands: ``evaluate`` (a policy on a labeled set) and ``calibrate`` (from reviewers)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from worker.cli.base import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_TARGETS_MISSED, PROG, fatal

_FRACTION = click.FloatRange(0.0, 1.0)


class _Bar:
    """click's progress bar (with an ETA) as the evaluation's ``Progress`` sink."""

    def __init__(self, bar: click._termui_impl.ProgressBar[int]) -> None:
        self._bar = bar

    def advance(self, images: int) -> None:
        self._bar.update(images)


@contextmanager
def _progress(images: int) -> Iterator[_Bar]:
    with click.progressbar(
        length=images, label="analyzing", show_eta=True, show_pos=True, file=sys.stderr
    ) as bar:
        yield _Bar(bar)


@click.command()
@click.option(
    "--set",
    "labeled_set",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="labeled set: CSV or JSONL of image, expected[, tags] (docs/evaluate.md)",
)
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="policy.v1 file to evaluate [default: the bundled policy]",
)
@click.option(
    "--analyzer",
    type=click.Choice(["offline", "emulator", "azure"]),
    default="offline",
    show_default=True,
    help="the offline model, or Image Analysis 4.0 (key from MODERATION_AZURE_KEY)",
)
@click.option(
    "--endpoint", help="Image Analysis endpoint for azure/emulator [default: MODERATION_AZURE_ENDPOINT]"
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".evaluate-cache"),
    show_default=True,
    help="analysis cache: a re-run costs no analyzer call",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="write report.html and report.json here",
)
@click.option("--target-reject-precision", type=_FRACTION, help="least share of rejections labeled rejected")
@click.option(
    "--target-approve-miss-rate",
    type=_FRACTION,
    help="largest share of images labeled review/rejected that may be approved",
)
@click.option(
    "--suggest-policy",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the suggested policy.v1 file here (never applied)",
)
@click.option(
    "--quota-per-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="analyzer calls per second at most (the account's rate limit)",
)
def evaluate(
    *,
    labeled_set: Path,
    policy: Path | None,
    analyzer: str,
    endpoint: str | None,
    cache_dir: Path,
    report_dir: Path | None,
    target_reject_precision: float | None,
    target_approve_miss_rate: float | None,
    suggest_policy: Path | None,
    quota_per_s: float,
) -> int:
    """Measure a policy on labeled images: confusion matrix, error rates, sweeps, suggested thresholds.

    Each image is analyzed once per analyzer (cached in --cache-dir), under --quota-per-s. Exit codes: 0
    every target met, 2 bad options, set or policy, 3 the analyzer failed, 6 a target was missed.
    """
    from worker.errors import AnalyzerError  # noqa: PLC0415 - keeps --help fast
    from worker.evaluation.evaluate_command import EvaluateOptions, summary  # noqa: PLC0415
    from worker.evaluation.evaluate_command import evaluate as run  # noqa: PLC0415
    from worker.evaluation.scoring import Targets  # noqa: PLC0415

    options = EvaluateOptions(
        labeled_set=labeled_set,
        policy=policy,
        analyzer=analyzer,
        endpoint=endpoint,
        cache_dir=cache_dir,
        report_dir=report_dir,
        targets=Targets(target_reject_precision, target_approve_miss_rate),
        suggest_policy=suggest_policy,
        quota_per_s=quota_per_s,
    )
    try:
        result = asyncio.run(run(options, os.environ, _progress))
    except AnalyzerError as exc:
        click.echo(f"{PROG}: fatal: the analyzer failed: {exc}", err=True)
        return EXIT_FATAL
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted; the analyses made so far are cached in {cache_dir}", err=True)
        return EXIT_INTERRUPTED
    click.echo("\n".join(summary(result, options)))
    return EXIT_TARGETS_MISSED if result.missed else 0


@click.command()
@click.option(
    "--file",
    "verdict_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL of review-decision.v1 records [default: read --topic]",
)
@click.option(
    "--topic",
    help="review decisions topic, read to its end (Kafka per MODERATION_KAFKA_*) "
    "[default: MODERATION_REVIEW_DECISIONS_TOPIC, else images.review-decisions]",
)
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="policy.v1 file the moves are proposed for [default: the bundled policy]",
)
@click.option("--band-width", type=click.FloatRange(0.01, 1.0), default=0.1, show_default=True)
@click.option(
    "--min-evidence", type=click.IntRange(min=1), default=10, show_default=True, help="verdicts per band"
)
@click.option(
    "--target-precision",
    type=_FRACTION,
    default=0.95,
    show_default=True,
    help="how clear a band's verdicts must be to move a threshold",
)
@click.option(
    "--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="write the figures"
)
def calibrate(
    *,
    verdict_file: Path | None,
    topic: str | None,
    policy: Path | None,
    band_width: float,
    min_evidence: int,
    target_precision: float,
    json_file: Path | None,
) -> int:
    """Measure how often reviewers overturned the machine, per rule, tag and band; propose threshold moves.

    Audit samples count 1/probability times (Horvitz-Thompson), so the rates are unbiased. Nothing is
    applied. Exit codes: 0 done, 2 bad options, file, policy or settings, 3 Kafka failed while reading, 5
    Kafka cannot be reached or refuses the connection settings.
    """
    import orjson  # noqa: PLC0415 - keeps --help fast
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.evaluation.calibrate_command import CalibrateOptions, run_calibration, summary  # noqa: PLC0415

    options = CalibrateOptions(verdict_file, topic, policy, band_width, min_evidence, target_precision)
    try:
        run = asyncio.run(run_calibration(options, os.environ))
    except (KafkaError, TimeoutError) as exc:  # the cluster answered at start-up, then failed or stalled
        return fatal(exc)
    click.echo("\n".join(summary(run)))
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(run.report(), option=orjson.OPT_INDENT_2))
    return 0
