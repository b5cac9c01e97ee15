"""One ``evaluate`` run: read the labeled set, collect its analyses, score the policy, suggest thresholds.

The I/O is the labeled set, the analysis cache and the analyzer (through ``collect``); everything after is
the pure ``scoring`` and ``suggest``. The suggested policy is scored on the same analyses too, so the report
shows what it would change (``decision_diff``, the diff replay reports too) before anyone applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.analysis.limiter import QuotaLimiter
from worker.evaluation.analysis_cache import AnalysisCache
from worker.evaluation.analyzers import ImageAnalyzer
from worker.evaluation.collect import Collected, Collector, Progress
from worker.evaluation.decision_diff import DecisionDiff, DiffReport, Redecided
from worker.evaluation.labeled_set import LabeledImage
from worker.evaluation.scoring import PolicyScore, Targets, missed_targets, score_policy
from worker.evaluation.suggest import TagSuggestion, suggest_thresholds, suggested_policy
from worker.policy import Policy
from worker.policy_file import policy_from_document
from worker.redact import redact_url

EXAMPLES_PER_CHANGE = 5


@dataclass(frozen=True, slots=True)
class EvaluationRun:
    """Everything a run found. ``missed`` names each target the policy misses (empty: all met),
    ``suggested_missed`` those the suggested policy still misses on the same analyses."""

    labeled_set: Path
    analyzer: str
    collected: Collected
    score: PolicyScore
    targets: Targets
    missed: tuple[str, ...]
    suggestions: tuple[TagSuggestion, ...]
    suggested_document: Mapping[str, Any]
    suggested_score: PolicyScore
    suggested_missed: tuple[str, ...]
    suggested_diff: DiffReport

    @property
    def model_versions(self) -> list[str]:
        """The analyzer model versions behind the analyses, sorted."""
        seen = {o.analysis.model_version for o in self.collected.observations if o.analysis is not None}
        return sorted(seen)

    def figures(self) -> dict[str, object]:
        """The report's figures as a JSON-ready document (``report.json``)."""
        return {
            "labeled_set": str(self.labeled_set),
            "analyzer": self.analyzer,
            "model_versions": self.model_versions,
            "images": len(self.collected.observations),
            "analyzer_calls": self.collected.analyzer_calls,
            "cached": self.collected.cached,
            "targets": {
                "reject_precision": self.targets.reject_precision,
                "approve_miss_rate": self.targets.approve_miss_rate,
            },
            "missed_targets": list(self.missed),
            "policy": self.score.to_json(),
            "suggestions": [suggestion.to_json() for suggestion in self.suggestions],
            "suggested_policy": self.suggested_score.to_json(),
            "suggested_missed_targets": list(self.suggested_missed),
            "suggested_policy_changes": self.suggested_diff.to_json(),
            "images_detail": self.image_rows(),
        }

    def image_rows(self) -> list[dict[str, object]]:
        """Per image: reference (URLs redacted, local files by name), label, decisions, strongest tags."""
        rows = []
        observations = self.collected.observations
        for observation, decided, suggested in zip(
            observations, self.score.decisions, self.suggested_score.decisions, strict=True
        ):
            image = observation.image
            tags = [] if observation.analysis is None else observation.analysis.tags
            strongest = sorted(tags, key=lambda tag: -tag.confidence)[:3]
            rows.append(
                {
                    "image": redact_url(image.reference) if image.is_url else Path(image.reference).name,
                    "line": image.line,
                    "expected": str(image.expected),
                    "decided": str(decided),
                    "suggested": str(suggested),
                    "error_code": observation.error_code,
                    "tags": [[tag.name, tag.confidence] for tag in strongest],
                }
            )
        return rows


async def run_evaluation(
    labeled_set: Path,
    images: Sequence[LabeledImage],
    policy: Policy,
    targets: Targets,
    *,
    analyzer: ImageAnalyzer,
    cache: AnalysisCache,
    limiter: QuotaLimiter,
    progress: Progress,
) -> EvaluationRun:
    """Evaluate ``policy`` on ``images``, read from ``labeled_set`` (``read_labeled_set``); raises
    ``ConfigurationError`` for an unreadable image, an analyzer error that outlasted its retries as it is."""
    collected = await Collector(analyzer, cache, limiter).collect(images, progress)
    observations = collected.observations
    score = score_policy(policy, observations)
    suggestions = suggest_thresholds(policy, observations, targets)
    document = suggested_policy(policy, suggestions)
    suggested = policy_from_document(document)
    suggested_score = score_policy(suggested, observations)
    diff = DecisionDiff()
    for o, old, new in zip(observations, score.decisions, suggested_score.decisions, strict=True):
        url = o.image.reference if o.image.is_url else None
        diff.add(Redecided(f"line {o.image.line}", old, new, url=url, policy_version=policy.version))
    return EvaluationRun(
        labeled_set=labeled_set,
        analyzer=analyzer.identity,
        collected=collected,
        score=score,
        targets=targets,
        missed=tuple(missed_targets(score.matrix, targets)),
        suggestions=suggestions,
        suggested_document=document,
        suggested_score=suggested_score,
        suggested_missed=tuple(missed_targets(suggested_score.matrix, targets)),
        suggested_diff=diff.report(suggested.version, examples=EXAMPLES_PER_CHANGE),
    )
