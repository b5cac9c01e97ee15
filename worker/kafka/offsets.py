"""Per-partition bookkeeping of in-flight offsets: which offset it is safe to commit.

Records finish out of order, so a partition may only commit up to its first unfinished offset. Pure: no Kafka
imports, no clock; the pipeline owns one tracker per assigned partition.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Tracks the offsets of one partition from ``start`` to ``finish`` and says what to commit.

    Offsets must be started in increasing order (the order the consumer delivers them) but may have gaps:
    compacted topics and transaction markers skip offsets. The committable offset is therefore

    * the lowest offset still in flight, if any is (everything below it finished or does not exist), else
    * the highest finished offset + 1,

    and ``None`` before any offset has finished. A record that never finishes (cancelled at shutdown, fatal
    error) keeps the committable offset at or below it forever, which is the at-least-once guarantee.
    """

    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        # Started offsets in increasing order; finished ones are dropped lazily from the left.
        self._started: deque[int] = deque()
        self._highest_started: int | None = None
        self._highest_finished: int | None = None
        self._committed: int | None = None

    def start(self, offset: int) -> None:
        """Record that ``offset`` is now being processed; it must exceed every offset started before."""
        if self._highest_started is not None and offset <= self._highest_started:
            raise ValueError(f"offset {offset} started after {self._highest_started}; offsets must increase")
        self._highest_started = offset
        self._in_flight.add(offset)
        self._started.append(offset)

    def finish(self, offset: int) -> None:
        """Record that ``offset`` is done (its result acknowledged); it must be in flight."""
        try:
            self._in_flight.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not in flight") from None
        if self._highest_finished is None or offset > self._highest_finished:
            self._highest_finished = offset

    def committable(self) -> int | None:
        """The offset to commit now (the first unfinished one), or ``None`` if nothing has finished yet."""
        if self._highest_finished is None:
            return None
        while self._started and self._started[0] not in self._in_flight:
            self._started.popleft()
        if self._started:
            return self._started[0]
        return self._highest_finished + 1

    def mark_committed(self, offset: int) -> None:
        """Record that ``offset`` was committed to the group (call after the commit succeeded)."""
        self._committed = offset

    @property
    def committed(self) -> int | None:
        """The offset last passed to ``mark_committed``, or ``None``."""
        return self._committed

    @property
    def in_flight(self) -> int:
        """How many offsets are started and not finished."""
        return len(self._in_flight)

    @property
    def pending_commit(self) -> bool:
        """True if ``committable()`` has moved since the last ``mark_committed``."""
        committable = self.committable()
        return committable is not None and committable != self._committed
