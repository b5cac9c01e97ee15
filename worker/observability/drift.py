"""Drift of what the worker sees: PSI and Jensen-Shannon of sliding windows against a reference distribution.

Pure math and bookkeeping (time passed in, monotonic seconds); the only I/O is the pair of small functions at
the end that persist a captured reference. Thresholds (see docs/drift.md): PSI < 0.1 stable, 0.1-0.25 watch,
> 0.25 act.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from worker.domain import Decision

PSI_WATCH = 0.1
"""PSI at or above this: the distribution moved; look at it."""
PSI_ACT = 0.25
"""PSI above this: the distribution changed materially; act (re-tune the policy, re-pin the reference)."""


class DriftDimension(StrEnum):
    """What a drift score compares; the value is the ``dimension`` label of the drift metrics."""

    DECISION_MIX = "decision_mix"
    TAG_DETECTION = "tag_detection"
    TAG_CONFIDENCE = "tag_confidence"


DECISION_BUCKETS = tuple(str(decision) for decision in Decision)
DETECTION_BUCKETS = ("detected", "not_detected")

DriftKey = tuple[DriftDimension, str]
"""``(dimension, tag)``; ``tag`` is ``""`` for the decision mix."""

_REFERENCE_FORMAT_VERSION = 1

K = TypeVar("K", bound=Hashable)

_Seen = tuple[tuple[str, int, bool], ...]
"""The watched tags one analysis reported: ``(tag, confidence bin, detected)`` each, at most once per tag."""


def psi(reference: Sequence[float], current: Sequence[float], *, epsilon: float = 1e-4) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` over bins, natural log, always >= 0.

    Inputs are counts or proportions (each is normalised to sum 1); a proportion below ``epsilon`` is raised
    to ``epsilon`` (without renormalising) so empty bins give a large but finite score.
    """
    ref, cur = _normalised_pair(reference, current)
    return math.fsum(
        (c - r) * math.log(c / r) for r, c in zip(_floor(ref, epsilon), _floor(cur, epsilon), strict=True)
    )


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in base 2: 0 for identical, 1 for disjoint distributions, symmetric.

    Inputs are counts or proportions, normalised here; empty bins need no smoothing (``0 log 0 = 0``).
    """
    pn, qn = _normalised_pair(p, q)
    mid = [(a + b) / 2.0 for a, b in zip(pn, qn, strict=True)]
    divergence = 0.5 * _kl_base2(pn, mid) + 0.5 * _kl_base2(qn, mid)
    return min(1.0, max(0.0, divergence))  # rounding can stray a hair outside [0, 1]


def psi_level(score: float) -> str:
    """``stable`` (< 0.1), ``watch`` (0.1-0.25) or ``act`` (> 0.25)."""
    if score < PSI_WATCH:
        return "stable"
    return "watch" if score <= PSI_ACT else "act"


def confidence_buckets(bins: int = 10) -> tuple[str, ...]:
    """Labels of the confidence bins: their upper bounds, ``"0.1"`` .. ``"1.0"`` for 10 bins (like ``le``)."""
    return tuple(str((i + 1) / bins) for i in range(bins))


def confidence_bin(confidence: float, bins: int = 10) -> int:
    """Index of the bin holding ``confidence``: the first whose upper bound is >= it (Prometheus ``le``)."""
    return min(bisect.bisect_left(_bin_bounds(bins), confidence), bins - 1)


@functools.cache
def _bin_bounds(bins: int) -> tuple[float, ...]:
    # Called for every watched tag of every message: build the bounds once per bin count.
    return tuple((i + 1) / bins for i in range(bins))


def _normalised_pair(a: Sequence[float], b: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(a) != len(b) or not a:
        raise ValueError(f"distributions need the same, non-zero number of bins, got {len(a)} and {len(b)}")
    return _normalised(a), _normalised(b)


def _normalised(values: Sequence[float]) -> list[float]:
    if any(not (value >= 0.0 and math.isfinite(value)) for value in values):
        raise ValueError(f"bins must be finite and >= 0, got {list(values)}")
    total = math.fsum(values)
    if total <= 0.0:
        raise ValueError("a distribution needs at least one non-empty bin")
    if abs(total - 1.0) <= 1e-9:
        return list(values)  # already proportions: keep them bit-exact so saved references round-trip
    return [value / total for value in values]


def _floor(proportions: Iterable[float], epsilon: float) -> list[float]:
    return [max(value, epsilon) for value in proportions]


def _kl_base2(p: Sequence[float], m: Sequence[float]) -> float:
    return math.fsum(a * math.log2(a / b) for a, b in zip(p, m, strict=True) if a > 0.0)


class SlidingCounts(Generic[K]):
    """Counts per category over the last ``window_s`` seconds, kept in ``bucket_s`` time buckets.

    The window is the current bucket plus the ones before it, ``ceil(window_s / bucket_s)`` in all, so an
    event leaves the window between ``window_s - bucket_s`` and ``window_s`` seconds after it was added.
    """

    def __init__(self, window_s: float, *, bucket_s: float = 1.0) -> None:
        if not (window_s > 0.0 and bucket_s > 0.0):
            raise ValueError(f"window_s and bucket_s must be positive, got {window_s} and {bucket_s}")
        self._bucket_s = bucket_s
        self._slots = max(1, math.ceil(window_s / bucket_s))
        self._buckets: deque[tuple[int, Counter[K]]] = deque()

    def add(self, category: K, now: float, count: int = 1) -> None:
        """Count ``count`` events of ``category`` at ``now``."""
        index = math.floor(now / self._bucket_s)
        if not self._buckets or self._buckets[-1][0] < index:
            self._buckets.append((index, Counter()))
            self._evict(index)  # only a new bucket can push an old one out
        self._buckets[-1][1][category] += count  # a clock stepping back lands in the newest bucket

    def snapshot(self, now: float) -> dict[K, int]:
        """Counts per category inside the window ending at ``now`` (categories with no events are absent)."""
        self._evict(math.floor(now / self._bucket_s))
        total: Counter[K] = Counter()
        for _, counts in self._buckets:
            total.update(counts)
        return {category: count for category, count in total.items() if count > 0}

    def window_full(self, since: float, now: float) -> bool:
        """Whether the window at ``now`` has run its whole length since ``since``: the bucket holding
        ``since`` is the oldest still inside it (all added from ``since`` on still counts) or has left it."""
        return math.floor(now / self._bucket_s) - math.floor(since / self._bucket_s) >= self._slots - 1

    def _evict(self, index: int) -> None:
        while self._buckets and self._buckets[0][0] <= index - self._slots:
            self._buckets.popleft()


class DriftScore(NamedTuple):
    """Drift of one key: PSI (natural log) and Jensen-Shannon divergence (base 2)."""

    psi: float
    jensen_shannon: float


@dataclass(frozen=True)
class DriftReference:
    """Reference distributions by key, each as proportions by bucket label (see the module's ``*_BUCKETS``).

    JSON form (``to_dict``/``from_dict``), every part optional; this is also how a reference is pinned::

        {"version": 1,
         "decision_mix": {"approved": 0.8, "needs_review": 0.15, "rejected": 0.05},
         "tags": {"weapon": {"detection_rate": 0.02, "confidence": [0.0, 0.1, ..., 0.3]}}}

    ``confidence`` lists one proportion per bin, lowest bin first.
    """

    distributions: Mapping[DriftKey, Mapping[str, float]] = field(default_factory=dict)

    def fill_from(self, other: DriftReference) -> DriftReference:
        """This reference, with the keys it lacks taken from ``other``."""
        return DriftReference({**other.distributions, **self.distributions})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``from_dict(to_dict())`` gives an equal reference."""
        data: dict[str, Any] = {"version": _REFERENCE_FORMAT_VERSION}
        tags: dict[str, dict[str, Any]] = {}
        for (dimension, tag), proportions in sorted(self.distributions.items()):
            if dimension == DriftDimension.DECISION_MIX:
                data[str(DriftDimension.DECISION_MIX)] = dict(proportions)
            elif dimension == DriftDimension.TAG_DETECTION:
                tags.setdefault(tag, {})["detection_rate"] = proportions["detected"]
            else:
                labels = confidence_buckets(len(proportions))
                tags.setdefault(tag, {})["confidence"] = [proportions[label] for label in labels]
        if tags:
            data["tags"] = tags
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        """Parse the JSON form; raises ``ValueError`` naming what is wrong."""
        if data.get("version", _REFERENCE_FORMAT_VERSION) != _REFERENCE_FORMAT_VERSION:
            raise ValueError(f"unsupported drift reference version {data.get('version')!r}")
        distributions: dict[DriftKey, Mapping[str, float]] = {}
        mix_key = DriftDimension.DECISION_MIX
        if mix_key in data:
            mix = _mapping(data[mix_key], mix_key)
            unknown = set(mix) - set(DECISION_BUCKETS)
            if unknown:
                raise ValueError(f"unknown decisions in drift reference: {sorted(unknown)}")
            values = _normalised([_number(mix.get(bucket, 0.0), mix_key) for bucket in DECISION_BUCKETS])
            distributions[(mix_key, "")] = dict(zip(DECISION_BUCKETS, values, strict=True))
        for tag, tag_data in _mapping(data.get("tags", {}), "tags").items():
            parts = _mapping(tag_data, f"tags.{tag}")
            if "detection_rate" in parts:
                rate = _number(parts["detection_rate"], f"tags.{tag}.detection_rate")
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"detection_rate of {tag!r} must be in [0, 1], got {rate}")
                distributions[(DriftDimension.TAG_DETECTION, tag)] = {
                    "detected": rate,
                    "not_detected": 1.0 - rate,
                }
            if "confidence" in parts:
                confidence = parts["confidence"]
                if not isinstance(confidence, list):
                    raise ValueError(f"tags.{tag}.confidence must be a list of proportions")
                values = _normalised([_number(value, f"tags.{tag}.confidence") for value in confidence])
                labels = confidence_buckets(len(values))
                distributions[(DriftDimension.TAG_CONFIDENCE, tag)] = dict(zip(labels, values, strict=True))
        return cls(distributions)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"drift reference: {where} must be an object")  # noqa: TRY004 - one error type for a bad file
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"drift reference: {where} must hold numbers, got {value!r}")  # noqa: TRY004 - as above
    return float(value)


class DriftMonitor:
    """Sliding windows of the decision mix and of watched tags, scored against a reference.

    Keys: ``("decision_mix", "")``; per watched tag ``("tag_detection", tag)`` (share of analyses reporting
    the tag at or above ``detection_threshold``) and ``("tag_confidence", tag)`` (its confidence, when
    reported, in ``confidence_bins`` equal bins). A key's reference is pinned (given) or captured: once the
    first window is full (it reaches back to the first observation), a key with at least ``min_samples`` in
    its window takes that window as its reference. Keys with fewer than
    ``min_samples`` in the current window are not scored: PSI over a handful of events is noise.
    """

    def __init__(
        self,
        *,
        watched_tags: Sequence[str],
        window_s: float,
        min_samples: int = 200,
        detection_threshold: float = 0.0,
        confidence_bins: int = 10,
        bucket_s: float | None = None,
        pinned: DriftReference | None = None,
        captured: DriftReference | None = None,
        epsilon: float = 1e-4,
    ) -> None:
        if min_samples < 1 or confidence_bins < 1:
            raise ValueError("min_samples and confidence_bins must be >= 1")
        self._tags = tuple(dict.fromkeys(watched_tags))
        self._watched = frozenset(self._tags)
        self._confidence_labels = confidence_buckets(confidence_bins)
        self._window_s = window_s
        self._min_samples = min_samples
        self._threshold = detection_threshold
        self._bins = confidence_bins
        self._epsilon = epsilon
        self._buckets: dict[DriftKey, tuple[str, ...]] = {(DriftDimension.DECISION_MIX, ""): DECISION_BUCKETS}
        for tag in self._tags:
            self._buckets[(DriftDimension.TAG_DETECTION, tag)] = DETECTION_BUCKETS
            self._buckets[(DriftDimension.TAG_CONFIDENCE, tag)] = self._confidence_labels
        slot_s = bucket_s if bucket_s is not None else window_s / 60.0
        # One window of whole observations, (decision, watched tags seen), split into keys only when read:
        # a message costs one count, not one per key (the keys are 1 + 2 per watched tag).
        self._window: SlidingCounts[tuple[str, _Seen]] = SlidingCounts(window_s, bucket_s=slot_s)
        self._pinned = self._checked(pinned or DriftReference(), "pinned")
        self._captured = self._checked(captured or DriftReference(), "captured")
        self._window_started_at: float | None = None

    @property
    def captured(self) -> DriftReference:
        """The part of the reference captured from traffic: what the runner persists."""
        return self._captured

    @property
    def reference(self) -> DriftReference:
        """The reference in force: pinned keys, then captured ones."""
        return self._pinned.fill_from(self._captured)

    @property
    def watched(self) -> frozenset[str]:
        """The watched tags."""
        return self._watched

    def observe_strongest(self, decision: str, best: Mapping[str, float], now: float) -> None:
        """Record one decided message at ``now``; ``best`` holds the best confidence of each watched tag its
        analysis reported (``worker.domain.strongest_of``), empty without an analysis."""
        if self._window_started_at is None:
            self._window_started_at = now
        seen: tuple[tuple[str, int, bool], ...] = ()
        if best:  # most images show no watched tag
            seen = tuple(
                (name, confidence_bin(confidence, self._bins), confidence >= self._threshold)
                for name, confidence in best.items()
            )
        self._window.add((str(decision), seen), now)

    def _counts(self, now: float) -> dict[DriftKey, dict[str, int]]:
        """Counts by bucket of every key's current window (every bucket present, zeros included)."""
        result = {key: dict.fromkeys(labels, 0) for key, labels in self._buckets.items()}
        mix = result[(DriftDimension.DECISION_MIX, "")]
        for (decision, seen), count in self._window.snapshot(now).items():
            mix[decision] += count
            for name, confidence_bin_index, detected in seen:
                confidence = result[(DriftDimension.TAG_CONFIDENCE, name)]
                confidence[self._confidence_labels[confidence_bin_index]] += count
                if detected:
                    result[(DriftDimension.TAG_DETECTION, name)]["detected"] += count
        observed = sum(mix.values())
        for name in self._tags:
            detection = result[(DriftDimension.TAG_DETECTION, name)]
            detection["not_detected"] = observed - detection["detected"]
        return result

    def capture(self, now: float) -> list[DriftKey]:
        """Capture a reference for each key lacking one whose full window is big enough; return those keys."""
        started = self._window_started_at
        if started is None or not self._window.window_full(started, now):
            return []
        have = self.reference.distributions
        new: dict[DriftKey, Mapping[str, float]] = {}
        for key, counts in self._counts(now).items():
            total = sum(counts.values())
            if key not in have and total >= self._min_samples:
                new[key] = {label: count / total for label, count in counts.items()}
        if new:
            self._captured = DriftReference({**self._captured.distributions, **new})
        return list(new)

    def scores(self, now: float) -> dict[DriftKey, DriftScore]:
        """Capture what is due, then score every key with a reference and ``min_samples`` in its window."""
        self.capture(now)
        reference = self.reference.distributions
        result: dict[DriftKey, DriftScore] = {}
        for key, counts in self._counts(now).items():
            if key not in reference or sum(counts.values()) < self._min_samples:
                continue
            ref = [reference[key][label] for label in self._buckets[key]]
            cur = [float(counts[label]) for label in self._buckets[key]]
            result[key] = DriftScore(psi(ref, cur, epsilon=self._epsilon), jensen_shannon(ref, cur))
        return result

    def _checked(self, reference: DriftReference, what: str) -> DriftReference:
        kept: dict[DriftKey, Mapping[str, float]] = {}
        for key, proportions in reference.distributions.items():
            if key not in self._buckets:
                continue  # a tag no longer watched: its old reference is harmless, just unused
            if set(proportions) != set(self._buckets[key]):
                raise ValueError(f"{what} drift reference for {key} has buckets {sorted(proportions)}")
            kept[key] = proportions
        return DriftReference(kept)


# --- persistence: the only I/O in this module ---------------------------------------------------------


def load_reference(path: Path) -> DriftReference | None:
    """Read a reference saved by ``save_reference``; None when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return DriftReference.from_dict(json.loads(text))


def save_reference(path: Path, reference: DriftReference) -> None:
    """Write ``reference`` atomically (temporary file, then rename), so a crash never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(reference.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
