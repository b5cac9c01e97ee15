"""Specification of the offset tracker: a partition commits exactly up to its first unfinished offset."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from worker.kafka.offsets import OffsetTracker


def test_nothing_is_committable_before_anything_finishes() -> None:
    """Starting records alone gives no commit point."""
    tracker = OffsetTracker()
    tracker.start(5)
    tracker.start(6)
    assert tracker.committable() is None
    assert tracker.pending_commit is False
    expected_in_flight = 2
    assert expected_in_flight == tracker.in_flight


def test_out_of_order_finish_commits_only_up_to_the_first_unfinished_offset() -> None:
    """6 and 7 finished but 5 has not: committing 5 says nothing about 5 itself."""
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.start(offset)
    tracker.finish(7)
    tracker.finish(6)
    expected = 5
    assert expected == tracker.committable()
    tracker.finish(5)
    expected = 8
    assert expected == tracker.committable()


def test_gaps_from_compaction_do_not_hold_the_commit_back() -> None:
    """Offsets that do not exist (compaction, transaction markers) never block a commit."""
    tracker = OffsetTracker()
    for offset in (10, 13, 20):
        tracker.start(offset)
    tracker.finish(10)
    tracker.finish(20)
    expected = 13
    assert expected == tracker.committable()
    tracker.finish(13)
    expected = 21
    assert expected == tracker.committable()


def test_pending_commit_clears_when_marked_and_returns_when_progress_is_made() -> None:
    """The pipeline commits only partitions whose commit point moved."""
    tracker = OffsetTracker()
    tracker.start(0)
    tracker.start(1)
    tracker.finish(0)
    assert tracker.pending_commit is True
    tracker.mark_committed(1)
    expected_committed = 1
    assert expected_committed == tracker.committed
    assert tracker.pending_commit is False
    tracker.finish(1)
    assert tracker.pending_commit is True


def test_starting_an_offset_twice_or_backwards_is_refused() -> None:
    """Offsets arrive in increasing order; anything else is a pipeline bug that would corrupt commits."""
    tracker = OffsetTracker()
    tracker.start(3)
    with pytest.raises(ValueError, match="must increase"):
        tracker.start(3)
    with pytest.raises(ValueError, match="must increase"):
        tracker.start(2)


def test_finishing_an_offset_not_in_flight_is_refused() -> None:
    """A double finish would let the commit skip a record that is still being processed."""
    tracker = OffsetTracker()
    tracker.start(3)
    tracker.finish(3)
    with pytest.raises(ValueError, match="not in flight"):
        tracker.finish(3)


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=40),
    data=st.data(),
)
def test_committable_is_the_first_unfinished_offset_for_any_finish_order(
    gaps: list[int], data: st.DataObject
) -> None:
    """Whatever order records finish in, the commit point is the first unfinished offset (or past the end)."""
    offsets = list(itertools.accumulate(gaps))
    order = data.draw(st.permutations(offsets))
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.start(offset)
    finished: set[int] = set()
    for offset in order:
        tracker.finish(offset)
        finished.add(offset)
        unfinished = [candidate for candidate in offsets if candidate not in finished]
        expected = unfinished[0] if unfinished else offsets[-1] + 1
        assert expected == tracker.committable()


class TrackerMachine(RuleBasedStateMachine):
    """Starts, finishes and commits interleaved at random, checked against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.tracker = OffsetTracker()
        self.next_offset = 0
        self.in_flight: list[int] = []
        self.finished: list[int] = []
        self.committed: int | None = None

    @rule(gap=st.integers(min_value=1, max_value=3))
    def start(self, gap: int) -> None:
        self.next_offset += gap
        self.tracker.start(self.next_offset)
        self.in_flight.append(self.next_offset)

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(self.in_flight))
        self.tracker.finish(offset)
        self.in_flight.remove(offset)
        self.finished.append(offset)

    @rule()
    def commit(self) -> None:
        offset = self.tracker.committable()
        if offset is not None:
            self.tracker.mark_committed(offset)
            self.committed = offset

    @invariant()
    def committable_is_first_unfinished(self) -> None:
        if not self.finished:
            expected = None
        elif self.in_flight:
            expected = min(self.in_flight)
        else:
            expected = max(self.finished) + 1
        assert expected == self.tracker.committable()
        assert len(self.in_flight) == self.tracker.in_flight
        assert (expected is not None and expected != self.committed) == self.tracker.pending_commit


TestTrackerMachine = TrackerMachine.TestCase
