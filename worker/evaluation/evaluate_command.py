"""What ``moderation-worker evaluate`` does once its options are parsed: build the analyzer, run, write.

``EvaluateOptions`` mirrors the command line (docs/evaluate.md). The analyzer is the offline model, or
Image Analysis 4.0 through the SDK for ``azure`` and ``emulator`` (endpoint from the option or
``MODERATION_AZURE_ENDPOINT``, key from ``MODERATION_AZURE_KEY`` only: a key on a command line ends up in
shell histories and process lists). ``summary`` is the text the command prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.analysis.limiter import QuotaLimiter
from worker.errors import ConfigurationError
from worker.evaluation.analysis_cache import AnalysisCache
from worker.evaluation.analyzers import AzureImageAnalyzer, ImageAnalyzer, OfflineImageAnalyzer
from worker.evaluation.collect import Progress
from worker.evaluation.evaluate import EvaluationRun, run_evaluation
from worker.evaluation.labeled_set import read_labeled_set
from worker.evaluation.report import write_report
from worker.evaluation.scoring import Targets
from worker.policy_file import load_default_policy, load_policy

ANALYZERS = ("offline", "emulator", "azure")
ENDPOINT_VARIABLE, KEY_VARIABLE = "MODERATION_AZURE_ENDPOINT", "MODERATION_AZURE_KEY"


@dataclass(frozen=True, slots=True)
class EvaluateOptions:
    """The command's options. ``policy`` ``None``: the bundled default policy; ``report_dir`` /
    ``suggest_policy`` ``None``: not written; ``quota_per_s``: analyzer calls per second at most."""

    labeled_set: Path
    policy: Path | None
    analyzer: str
    endpoint: str | None
    cache_dir: Path
    report_dir: Path | None
    targets: Targets
    suggest_policy: Path | None
    quota_per_s: float


async def build_analyzer(options: EvaluateOptions, environ: Mapping[str, str]) -> ImageAnalyzer:
    """The analyzer the options name; raises ``ConfigurationError`` for a missing endpoint, key or extra.

    Call it in the running event loop (the SDK's session binds to it).
    """
    if options.analyzer == "offline":
        from worker.analysis.offline import ImageModel  # noqa: PLC0415 - the model extra, loaded on demand

        return OfflineImageAnalyzer(ImageModel())
    if options.analyzer not in ANALYZERS:
        raise ConfigurationError(f"--analyzer {options.analyzer!r} is not one of {', '.join(ANALYZERS)}")
    endpoint = options.endpoint or environ.get(ENDPOINT_VARIABLE, "")
    key = environ.get(KEY_VARIABLE, "")
    if not endpoint or not key:
        raise ConfigurationError(
            f"--analyzer {options.analyzer} needs --endpoint (or {ENDPOINT_VARIABLE}) and {KEY_VARIABLE}"
        )
    return AzureImageAnalyzer(endpoint, key, kind=options.analyzer)


async def evaluate(
    options: EvaluateOptions,
    environ: Mapping[str, str],
    progress: Callable[[int], AbstractContextManager[Progress]],
) -> EvaluationRun:
    """Run the evaluation and write the report and the suggested policy the options ask for.

    ``progress(images)`` opens the progress sink (a bar) for a set of that many images. Raises
    ``ConfigurationError`` (bad set, policy, options) or the analyzer error that stopped the run.
    """
    policy = load_default_policy() if options.policy is None else load_policy(options.policy)
    images = read_labeled_set(options.labeled_set)
    async with AsyncExitStack() as stack:
        analyzer = await build_analyzer(options, environ)
        stack.push_async_callback(analyzer.aclose)
        cache = stack.enter_context(AnalysisCache(options.cache_dir))
        bar = stack.enter_context(progress(len(images)))
        run = await run_evaluation(
            options.labeled_set,
            images,
            policy,
            options.targets,
            analyzer=analyzer,
            cache=cache,
            limiter=QuotaLimiter(options.quota_per_s),
            progress=bar,
        )
    if options.suggest_policy is not None:
        options.suggest_policy.write_bytes(orjson.dumps(run.suggested_document, option=orjson.OPT_INDENT_2))
    if options.report_dir is not None:
        write_report(run, options.report_dir)
    return run


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def summary(run: EvaluationRun, options: EvaluateOptions) -> list[str]:
    """The lines the command prints: counts, the matrix, the rates, each missed target, where files went."""
    matrix = run.score.matrix
    lines = [
        f"{len(run.collected.observations)} images, {run.collected.analyzer_calls} analyzer calls, "
        f"{run.collected.cached} from the cache ({run.analyzer})",
        f"policy {run.score.policy_version}: rows = label, columns = approved / needs_review / rejected",
        *(
            f"  {label:<13}{row}"
            for label, row in zip(("approved", "needs_review", "rejected"), matrix.rows(), strict=True)
        ),
        f"harmful approved {_pct(matrix.harmful_approved_rate)}, harmless rejected "
        f"{_pct(matrix.harmless_rejected_rate)}, approve miss rate {_pct(matrix.approve_miss_rate)}, "
        f"reject precision {_pct(matrix.reject_precision)}, review share {_pct(matrix.review_share)}",
    ]
    lines.extend(f"target missed: {missed}" for missed in run.missed)
    if options.suggest_policy is not None:
        lines.append(f"suggested policy written to {options.suggest_policy} (not applied)")
    if options.report_dir is not None:
        lines.append(f"report written to {options.report_dir / 'report.html'}")
    return lines
