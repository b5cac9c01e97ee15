"""Specification of drift: PSI and Jensen-Shannon against hand-computed values, sliding windows, monitor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain import Tag, strongest_of
from worker.observability.drift import (
    DriftDimension,
    DriftMonitor,
    DriftReference,
    SlidingCounts,
    confidence_bin,
    confidence_buckets,
    jensen_shannon,
    load_reference,
    psi,
    psi_level,
    save_reference,
)

DECISION_MIX = DriftDimension.DECISION_MIX
TAG_DETECTION = DriftDimension.TAG_DETECTION
TAG_CONFIDENCE = DriftDimension.TAG_CONFIDENCE

distributions = st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=2, max_size=12).filter(
    lambda values: sum(values) > 1e-3
)

# --- PSI ---------------------------------------------------------------------------------------------------


def test_psi_of_a_two_bin_shift() -> None:
    """Reference (0.5, 0.5), current (0.25, 0.75).

    (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3 = 0.274653
    """
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_normalises_counts() -> None:
    """Counts (80, 15, 5) vs (60, 30, 10) are proportions (0.8, 0.15, 0.05) vs (0.6, 0.3, 0.1).

    -0.2 ln(0.75) + 0.15 ln 2 + 0.05 ln 2 = 0.057536 + 0.103972 + 0.034657 = 0.196166
    """
    assert psi([80, 15, 5], [60, 30, 10]) == pytest.approx(0.196166, abs=1e-6)


def test_psi_floors_empty_bins_at_epsilon() -> None:
    """Reference (1, 0) vs current (0.5, 0.5), epsilon 1e-4: the empty bin counts as 1e-4.

    (0.5 - 1) ln(0.5/1) + (0.5 - 0.0001) ln(0.5/0.0001) = 0.346574 + 0.4999 * 8.517193 = 0.346574 + 4.257745
    = 4.604318
    """
    assert psi([1.0, 0.0], [0.5, 0.5], epsilon=1e-4) == pytest.approx(4.604318, abs=1e-6)


def test_psi_of_identical_distributions_is_zero() -> None:
    """No shift, no score, whatever the scale of the counts."""
    assert psi([3, 1, 0], [30, 10, 0]) == 0.0


def test_psi_refuses_mismatched_or_empty_inputs() -> None:
    """Different bin counts or an all-zero distribution are caller bugs."""
    with pytest.raises(ValueError, match="same"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        psi([0, 0], [1, 1])


@given(distributions, st.data())
def test_psi_is_non_negative_and_zero_on_itself(reference: list[float], data: st.DataObject) -> None:
    """Property: PSI >= 0, and PSI(x, x) = 0."""
    current = data.draw(st.lists(st.floats(0.0, 1000.0), min_size=len(reference), max_size=len(reference)))
    if sum(current) > 1e-3:
        assert psi(reference, current) >= 0.0
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_psi_levels_follow_the_documented_thresholds() -> None:
    """< 0.1 stable, 0.1-0.25 watch, > 0.25 act."""
    assert [psi_level(x) for x in (0.0, 0.099, 0.1, 0.25, 0.2501)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "act",
    ]


# --- Jensen-Shannon ----------------------------------------------------------------------------------------


def test_js_of_certain_vs_uniform() -> None:
    """p = (1, 0), q = (0.5, 0.5), m = (0.75, 0.25).

    KL(p||m) = log2(1/0.75) = 0.415037; KL(q||m) = 0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25)
    = 0.5 * -0.584963 + 0.5 * 1 = 0.207519; JS = (0.415037 + 0.207519) / 2 = 0.311278
    """
    assert jensen_shannon([1.0, 0.0], [0.5, 0.5]) == pytest.approx(0.311278, abs=1e-6)


def test_js_of_a_two_bin_shift() -> None:
    """p = (0.5, 0.5), q = (0.25, 0.75), m = (0.375, 0.625).

    KL(p||m) = 0.5 log2(0.5/0.375) + 0.5 log2(0.5/0.625) = 0.5 * 0.415037 + 0.5 * -0.321928 = 0.046555
    KL(q||m) = 0.25 log2(0.25/0.375) + 0.75 log2(0.75/0.625) = 0.25 * -0.584963 + 0.75 * 0.263034 = 0.051035
    JS = (0.046555 + 0.051035) / 2 = 0.048795
    """
    assert jensen_shannon([50, 50], [25, 75]) == pytest.approx(0.048795, abs=1e-6)


def test_js_is_zero_for_identical_and_one_for_disjoint() -> None:
    """The two ends of the base-2 scale."""
    assert jensen_shannon([2, 1, 1], [2, 1, 1]) == 0.0
    assert jensen_shannon([1, 0, 0], [0, 3, 1]) == 1.0


@given(distributions, st.data())
def test_js_is_symmetric_and_bounded(p: list[float], data: st.DataObject) -> None:
    """Property: JS(p, q) = JS(q, p), within [0, 1]."""
    q = data.draw(st.lists(st.floats(0.0, 1000.0), min_size=len(p), max_size=len(p)))
    if sum(q) > 1e-3:
        forward, backward = jensen_shannon(p, q), jensen_shannon(q, p)
        assert forward == pytest.approx(backward, abs=1e-12)
        assert 0.0 <= forward <= 1.0


# --- confidence bins and sliding counts --------------------------------------------------------------------


def test_confidence_bins_use_upper_bounds_like_prometheus_le() -> None:
    """0.3 falls in the 0.3 bin (value <= le); 0.0 in the first, 1.0 in the last; labels are the bounds."""
    assert [confidence_bin(x) for x in (0.0, 0.05, 0.1, 0.3, 0.31, 0.95, 1.0)] == [0, 0, 0, 2, 3, 9, 9]
    assert confidence_buckets(10) == ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0")


def test_sliding_counts_sum_the_window() -> None:
    """Events at 0, 1.5 and 2.5 s with a 10 s window are all counted at t=5."""
    counts: SlidingCounts[str] = SlidingCounts(10.0, bucket_s=1.0)
    counts.add("approved", 0.0)
    counts.add("rejected", 1.5)
    counts.add("approved", 2.5)
    assert counts.snapshot(5.0) == {"approved": 2, "rejected": 1}


def test_sliding_counts_forget_events_older_than_the_window() -> None:
    """Window 10 s in 1 s buckets: the event of t=0.5 (bucket 0) is kept at t=9.9 and gone at t=10."""
    counts: SlidingCounts[str] = SlidingCounts(10.0, bucket_s=1.0)
    counts.add("approved", 0.5)
    counts.add("rejected", 4.0)
    assert counts.snapshot(9.9) == {"approved": 1, "rejected": 1}
    assert counts.snapshot(10.0) == {"rejected": 1}
    assert counts.snapshot(100.0) == {}


# --- the monitor -------------------------------------------------------------------------------------------


def observe(monitor: DriftMonitor, decision: str, tags: Sequence[Tag], now: float) -> None:
    """Record one decided message as ``DecisionMetrics`` does: its best confidence per watched tag."""
    monitor.observe_strongest(decision, strongest_of(tags, monitor.watched), now)


def feed(monitor: DriftMonitor, start: float, decisions: dict[str, int], tags: list[tuple[Tag, ...]]) -> None:
    """Observe ``decisions`` one per 0.01 s from ``start``, cycling through ``tags`` for their analyses."""
    now = start
    index = 0
    for decision, count in decisions.items():
        for _ in range(count):
            observe(monitor, decision, tags[index % len(tags)] if tags else (), now)
            index += 1
            now += 0.01


def test_reference_is_captured_from_the_first_full_window_then_a_shift_scores() -> None:
    """First window: 50 approved / 50 needs_review is captured; later 25 / 75 scores like the two-bin shift.

    60 s window in 1 s buckets, first event at t=0: the window is full at t=59, when bucket 0 is its oldest.

    The rejected bin is empty in both, so its PSI term is (1e-4 - 1e-4) ln 1 = 0 and its JS term is 0:
    PSI = 0.274653 and JS = 0.048795, as computed in the two-bin tests above.
    """
    monitor = DriftMonitor(watched_tags=[], window_s=60.0, min_samples=100, bucket_s=1.0)
    feed(monitor, 0.0, {"approved": 50, "needs_review": 50}, [])
    assert monitor.scores(30.0) == {}  # window not full yet: nothing captured, nothing scored
    assert monitor.capture(58.9) == []
    assert monitor.capture(59.0) == [(DECISION_MIX, "")]
    assert monitor.reference.distributions[(DECISION_MIX, "")] == {
        "approved": 0.5,
        "needs_review": 0.5,
        "rejected": 0.0,
    }
    feed(monitor, 200.0, {"approved": 25, "needs_review": 75}, [])
    score = monitor.scores(201.0)[(DECISION_MIX, "")]
    assert score.psi == pytest.approx(0.274653, abs=1e-6)
    assert score.jensen_shannon == pytest.approx(0.048795, abs=1e-6)


def test_small_windows_are_neither_captured_nor_scored() -> None:
    """Below min_samples a full window is not captured, and a pinned key is not scored: 10 messages in the
    window are too few for min_samples 11 and enough for 10."""
    pinned = DriftReference.from_dict({"decision_mix": {"approved": 1.0}})
    monitors = {
        min_samples: DriftMonitor(
            watched_tags=["weapon"], window_s=10.0, min_samples=min_samples, pinned=pinned
        )
        for min_samples in (11, 10)
    }
    for monitor in monitors.values():
        feed(monitor, 0.0, {"rejected": 10}, [(Tag("weapon", 0.9),)])
    assert monitors[11].capture(9.9) == []
    assert monitors[11].scores(9.9) == {}
    assert monitors[10].capture(9.9) == [(TAG_DETECTION, "weapon"), (TAG_CONFIDENCE, "weapon")]
    assert (DECISION_MIX, "") in monitors[10].scores(9.9)


def test_pinned_reference_scores_without_capture() -> None:
    """Pinned 80 % detected for "weapon", current 60 %: the 2-bin PSI is hand-computed.

    (0.6 - 0.8) ln(0.6/0.8) + (0.4 - 0.2) ln(0.4/0.2) = 0.057536 + 0.138629 = 0.196166
    """
    pinned = DriftReference.from_dict({"tags": {"weapon": {"detection_rate": 0.8}}})
    monitor = DriftMonitor(watched_tags=["weapon"], window_s=600.0, min_samples=10, pinned=pinned)
    present, absent = (Tag("weapon", 0.7), Tag("cat", 0.9)), (Tag("cat", 0.9),)
    feed(monitor, 0.0, {"approved": 10}, [present, present, present, absent, absent])
    scores = monitor.scores(1.0)
    assert list(scores) == [(TAG_DETECTION, "weapon")]
    assert scores[(TAG_DETECTION, "weapon")].psi == pytest.approx(0.196166, abs=1e-6)


def test_detection_uses_the_threshold_and_confidence_uses_reported_values() -> None:
    """With threshold 0.5 a weapon at 0.3 is not detected but its confidence still lands in the 0.3 bin.

    Read from the reference captured once the 60 s window is full (min_samples 1): 1 of 3 detected; one
    confidence at 0.3, one at 0.95 (its best report).
    """
    monitor = DriftMonitor(watched_tags=["weapon"], window_s=60.0, min_samples=1, detection_threshold=0.5)
    observe(monitor, "approved", [Tag("weapon", 0.3)], 0.0)
    observe(monitor, "rejected", [Tag("weapon", 0.2), Tag("weapon", 0.95)], 0.0)
    observe(monitor, "approved", [], 0.0)
    monitor.capture(59.0)
    captured = monitor.captured.distributions
    assert captured[(TAG_DETECTION, "weapon")] == {"detected": 1 / 3, "not_detected": 2 / 3}
    assert {k: v for k, v in captured[(TAG_CONFIDENCE, "weapon")].items() if v} == {"0.3": 0.5, "1.0": 0.5}


OBSERVATIONS = st.lists(
    st.tuples(
        st.sampled_from(["approved", "needs_review", "rejected"]),
        st.lists(
            st.builds(
                Tag, st.sampled_from(["weapon", "knife", "cat"]), st.floats(min_value=0.0, max_value=1.0)
            ),
            max_size=4,
        ),
    ),
    max_size=40,
)


def _counted_per_key(
    observations: list[tuple[str, list[Tag]]], threshold: float
) -> dict[object, dict[str, int]]:
    """The definition, key by key: each message counts once in the decision mix, once per watched tag in its
    detection (detected at or above ``threshold``), and its highest confidence per reported watched tag."""
    expected: dict[object, dict[str, int]] = {
        (DECISION_MIX, ""): {"approved": 0, "needs_review": 0, "rejected": 0}
    }
    for name in ("weapon", "knife"):
        expected[(TAG_DETECTION, name)] = {"detected": 0, "not_detected": 0}
        expected[(TAG_CONFIDENCE, name)] = dict.fromkeys(confidence_buckets(), 0)
    for decision, tags in observations:
        expected[(DECISION_MIX, "")][decision] += 1
        for name in ("weapon", "knife"):
            reported = [tag.confidence for tag in tags if tag.name == name]
            detected = bool(reported) and max(reported) >= threshold
            expected[(TAG_DETECTION, name)]["detected" if detected else "not_detected"] += 1
            if reported:
                expected[(TAG_CONFIDENCE, name)][confidence_buckets()[confidence_bin(max(reported))]] += 1
    return expected


@given(observations=OBSERVATIONS, threshold=st.sampled_from([0.0, 0.5, 0.9]))
def test_window_counts_each_key_as_defined(
    observations: list[tuple[str, list[Tag]]], threshold: float
) -> None:
    """Messages are kept whole in one window and split into keys when read, as the definition says.

    Read from the reference captured when the 60 s window is full (min_samples 1): each key with any
    message, as proportions of its count.
    """
    monitor = DriftMonitor(
        watched_tags=["weapon", "knife"], window_s=60.0, min_samples=1, detection_threshold=threshold
    )
    for decision, tags in observations:
        observe(monitor, decision, tags, 1.0)
    monitor.capture(60.0)
    expected = {
        key: {bucket: count / sum(counts.values()) for bucket, count in counts.items()}
        for key, counts in _counted_per_key(observations, threshold).items()
        if sum(counts.values())
    }
    assert expected == monitor.captured.distributions


def test_pinned_keys_win_over_captured_ones() -> None:
    """A key both pinned and captured (e.g. restored from file) uses the pinned distribution."""
    pinned = DriftReference.from_dict({"decision_mix": {"approved": 0.9, "rejected": 0.1}})
    captured = DriftReference.from_dict({"decision_mix": {"approved": 0.5, "needs_review": 0.5}})
    monitor = DriftMonitor(watched_tags=[], window_s=10.0, pinned=pinned, captured=captured)
    assert monitor.reference.distributions[(DECISION_MIX, "")]["approved"] == 0.9


def test_reference_with_other_bins_is_refused() -> None:
    """A pinned confidence distribution of 5 bins cannot score a monitor of 10 bins."""
    pinned = DriftReference.from_dict({"tags": {"weapon": {"confidence": [1, 1, 1, 1, 1]}}})
    with pytest.raises(ValueError, match="buckets"):
        DriftMonitor(watched_tags=["weapon"], window_s=10.0, pinned=pinned)


def test_reference_round_trips_through_json(tmp_path: Path) -> None:
    """A captured reference saved to disk loads back equal, and the file is plain JSON."""
    monitor = DriftMonitor(watched_tags=["weapon"], window_s=10.0, min_samples=5, bucket_s=1.0)
    feed(monitor, 0.0, {"approved": 3, "needs_review": 4}, [(Tag("weapon", 0.42),), ()])
    monitor.capture(9.5)
    path = tmp_path / "drift-reference.json"
    save_reference(path, monitor.captured)
    loaded = load_reference(path)
    assert loaded is not None
    assert loaded.to_dict() == monitor.captured.to_dict()
    assert json.loads(path.read_text())["tags"]["weapon"]["detection_rate"] == pytest.approx(4 / 7)
    assert DriftMonitor(watched_tags=["weapon"], window_s=10.0, captured=loaded).reference == loaded


def test_missing_reference_file_loads_as_none(tmp_path: Path) -> None:
    """First start: no file yet, nothing to restore."""
    assert load_reference(tmp_path / "absent.json") is None


def test_malformed_reference_is_refused_with_a_value_error() -> None:
    """Bad files fail loudly with a message naming the part that is wrong."""
    with pytest.raises(ValueError, match="detection_rate"):
        DriftReference.from_dict({"tags": {"weapon": {"detection_rate": 1.5}}})
    with pytest.raises(ValueError, match="unknown decisions"):
        DriftReference.from_dict({"decision_mix": {"maybe": 1.0}})
    with pytest.raises(ValueError, match="numbers"):
        DriftReference.from_dict({"tags": {"weapon": {"confidence": ["high"]}}})
