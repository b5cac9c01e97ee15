"""A policy decided over every observation of a labeled set: the matrix, the sweeps, the targets; pure.

``score_policy`` decides each analyzed image with ``worker.policy.decide`` (a refused image with
``decide_image_error``), exactly as the worker would, and compares with the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.domain import Decision
from worker.evaluation.confusion import ConfusionMatrix
from worker.evaluation.labeled_set import Observation
from worker.evaluation.sweep import DEFAULT_THRESHOLDS, TagSweep, evidence_for, sweep_tag
from worker.policy import Policy, decide, decide_image_error


@dataclass(frozen=True, slots=True)
class Targets:
    """What a rollout must meet; ``None`` sets no target.

    ``reject_precision``: the least share of automatic rejections labeled ``rejected``.
    ``approve_miss_rate``: the largest share of images labeled needs_review or rejected that may be approved
    automatically.
    """

    reject_precision: float | None = None
    approve_miss_rate: float | None = None


@dataclass(frozen=True, slots=True)
class PolicyScore:
    """How a policy did on a labeled set: each image's decision (input order), the matrix, per-tag sweeps."""

    policy_version: str
    decisions: tuple[Decision, ...]
    matrix: ConfusionMatrix
    sweeps: tuple[TagSweep, ...]
    refused: int

    def to_json(self) -> dict[str, object]:
        """The figures as a JSON-ready document."""
        return {
            "policy_version": self.policy_version,
            "images": len(self.decisions),
            "refused_by_analyzer": self.refused,
            "confusion": self.matrix.to_json(),
            "sweeps": [sweep.to_json() for sweep in self.sweeps],
        }


def decide_observation(policy: Policy, observation: Observation) -> Decision:
    """What the worker would decide for this image under ``policy``."""
    if observation.analysis is None:
        return decide_image_error(policy, observation.error_code or "unknown").decision
    return decide(policy, observation.analysis).decision


def score_policy(
    policy: Policy, observations: Sequence[Observation], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> PolicyScore:
    """Decide every observation under ``policy`` and sweep every blocklisted tag."""
    decisions = tuple(decide_observation(policy, observation) for observation in observations)
    matrix = ConfusionMatrix.of(
        (observation.image.expected, decision)
        for observation, decision in zip(observations, decisions, strict=True)
    )
    sweeps = tuple(sweep_tag(tag, evidence_for(tag, observations), thresholds) for tag in policy.blocklist)
    refused = sum(observation.analysis is None for observation in observations)
    return PolicyScore(policy.version, decisions, matrix, sweeps, refused)


def missed_targets(matrix: ConfusionMatrix, targets: Targets) -> list[str]:
    """One sentence per target the matrix misses; empty when every target is met.

    A target whose rate cannot be measured (nothing rejected, nothing that should be flagged) is met:
    there is no evidence against it, and the sentence would only ask for a bigger labeled set.
    """
    missed = []
    precision, miss = matrix.reject_precision, matrix.approve_miss_rate
    if (
        targets.reject_precision is not None
        and precision is not None
        and precision < targets.reject_precision
    ):
        missed.append(f"reject precision {precision:.3f} is below the target {targets.reject_precision:.3f}")
    if targets.approve_miss_rate is not None and miss is not None and miss > targets.approve_miss_rate:
        missed.append(f"approve miss rate {miss:.3f} is above the target {targets.approve_miss_rate:.3f}")
    return missed
