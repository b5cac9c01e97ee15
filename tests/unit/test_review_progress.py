"""Specification of the decided-offset book: a watermark plus the decided offsets above it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.review.progress import MAX_DECIDED_AHEAD, PartitionProgress, decode_decided, encode_decided


def test_the_watermark_is_the_lowest_undecided_offset() -> None:
    """Decisions in any order: the commit moves only over a contiguous decided prefix."""
    progress = PartitionProgress.resume(None, "")
    for offset in range(4):
        assert progress.offer(offset)

    progress.decide(2)
    progress.decide(0)

    assert 1 == progress.watermark
    assert {2} == decode_decided(progress.watermark, progress.metadata())
    progress.decide(1)
    assert 3 == progress.watermark
    assert "d:" == progress.metadata()


def test_after_a_restart_decided_items_are_skipped_and_undecided_ones_offered_again() -> None:
    """Committed watermark 1 with offset 2 decided: offsets 1 and 3 are offered, 2 is not."""
    before = PartitionProgress.resume(None, "")
    for offset in range(4):
        before.offer(offset)
    before.decide(0)
    before.decide(2)

    after = PartitionProgress.resume(before.watermark, before.metadata())

    assert [True, False, True] == [after.offer(offset) for offset in (1, 2, 3)]
    after.decide(1)
    assert 3 == after.watermark


def test_gaps_in_the_offsets_do_not_hold_the_watermark_back() -> None:
    """Compaction and transaction markers skip offsets; the watermark steps over them."""
    progress = PartitionProgress.resume(5, "")
    progress.offer(9)

    progress.decide(9)

    assert 10 == progress.watermark


def test_a_partition_with_too_many_decided_offsets_ahead_is_saturated() -> None:
    """The metadata has a size limit: beyond it the console stops offering new items from the partition."""
    progress = PartitionProgress.resume(0, "")
    for offset in range(MAX_DECIDED_AHEAD + 1):
        progress.offer(offset)
    for offset in range(1, MAX_DECIDED_AHEAD + 1):
        progress.decide(offset)

    assert progress.saturated
    assert len(progress.metadata()) < 4096


def test_foreign_or_garbled_metadata_reads_as_nothing_decided() -> None:
    """A commit written by another tool must not make the console skip items."""
    assert frozenset() == decode_decided(10, "some other tool")
    assert frozenset() == decode_decided(10, "d:zz,!")


@given(st.integers(0, 10**12), st.sets(st.integers(0, 10**6), max_size=50))
def test_metadata_round_trips(watermark: int, deltas: set[int]) -> None:
    """What encode writes, decode reads back."""
    decided = {watermark + delta for delta in deltas}

    assert decided == decode_decided(watermark, encode_decided(watermark, decided))
