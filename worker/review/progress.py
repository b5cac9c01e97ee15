"""Which review records of one partition are decided, as a committed offset plus a list of exceptions.

Pure. Reviewers decide items in any order, but a Kafka offset can only say "everything below is done". So
the console commits the *watermark* (the lowest undecided offset) and, in the commit's metadata, the offsets
above it that are decided already. After a restart or a rebalance the new owner reads both back
(``PartitionProgress.resume``) and skips the decided ones: a restart loses no pending item and offers no
decided one again. The metadata is ``d:`` plus the decided offsets as base-36 deltas from the watermark,
comma-separated; a broker keeps up to ``offset.metadata.max.bytes`` (4096 by default) of it, so at most
``MAX_DECIDED_AHEAD`` are listed, and a partition with more stops offering new items until the oldest are
decided (``saturated``).
"""

from __future__ import annotations

from typing import Final

MAX_DECIDED_AHEAD: Final = 400
_PREFIX: Final = "d:"


class PartitionProgress:
    """The offsets of one partition the console has seen (``offer``) and decided (``decide``).

    ``committed`` is where the group's committed offset stood when the partition was assigned.
    """

    def __init__(self, committed: int, decided: frozenset[int] = frozenset()) -> None:
        self._watermark = committed
        self._decided = {offset for offset in decided if offset >= committed}
        self._pending: set[int] = set()
        self._next = committed

    @classmethod
    def resume(cls, committed: int | None, metadata: str) -> PartitionProgress:
        """Progress from a committed offset (``None``: nothing committed, start at 0) and its metadata."""
        start = 0 if committed is None or committed < 0 else committed
        return cls(start, decode_decided(start, metadata))

    def offer(self, offset: int) -> bool:
        """A record was read: True if it awaits a verdict, False if it was decided before (skip it)."""
        self._next = max(self._next, offset + 1)
        if offset < self._watermark or offset in self._decided:
            self._advance()
            return False
        self._pending.add(offset)
        return True

    def decide(self, offset: int) -> None:
        """The verdict on ``offset`` is acknowledged; ``ValueError`` if it was not pending."""
        try:
            self._pending.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not awaiting a verdict") from None
        self._decided.add(offset)
        self._advance()

    def forget_pending(self) -> None:
        """Records read but not decided are no longer held (e.g. the console stops offering them)."""
        self._pending.clear()

    @property
    def watermark(self) -> int:
        """The offset to commit: the lowest one not yet decided (or the next one to read)."""
        return self._watermark

    @property
    def saturated(self) -> bool:
        """True when the metadata could not list one more decided offset: stop offering new items."""
        return len(self._decided) >= MAX_DECIDED_AHEAD

    def metadata(self) -> str:
        """The commit metadata: the decided offsets above the watermark."""
        return encode_decided(self._watermark, self._decided)

    def _advance(self) -> None:
        # The watermark moves over decided offsets, and over offsets never offered below the next read one
        # (compaction and transaction markers leave gaps), but never past a pending one.
        while self._watermark < self._next and self._watermark not in self._pending:
            self._decided.discard(self._watermark)
            self._watermark += 1


def encode_decided(watermark: int, decided: set[int] | frozenset[int]) -> str:
    """``d:`` and the base-36 deltas of ``decided`` offsets from ``watermark``, ascending."""
    return _PREFIX + ",".join(
        _base36(offset - watermark) for offset in sorted(decided) if offset >= watermark
    )


def decode_decided(watermark: int, metadata: str) -> frozenset[int]:
    """The decided offsets ``encode_decided`` wrote; anything that is not its format reads as none."""
    if not metadata.startswith(_PREFIX):
        return frozenset()
    try:
        return frozenset(watermark + int(part, 36) for part in metadata[len(_PREFIX) :].split(",") if part)
    except ValueError:
        return frozenset()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number == 0:
        return "0"
    text = ""
    while number:
        number, remainder = divmod(number, 36)
        text = digits[remainder] + text
    return text
