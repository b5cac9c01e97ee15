"""The committer: each owned partition's committable offset, committed periodically, on revoke and at exit.

Records finish out of order, so a partition commits only up to its first unacknowledged offset (one
``OffsetTracker`` per partition). Commits run one at a time: a commit on revoke waits for a periodic commit
still in flight, so the group's offset never moves backwards, and a commit marks the trackers it read before
awaiting the broker, so a partition forgotten meanwhile (revoked) needs no lookup afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from worker.kafka.offsets import OffsetTracker

log = logging.getLogger(__name__)


class OffsetCommitting(Protocol):
    """The consumer's commit (``AIOKafkaConsumer.commit``): ``offsets`` are the next offsets to consume."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...


class CommitObserver(Protocol):
    """Told about every successful commit."""

    def committed(self, offsets: dict[TopicPartition, int], duration_s: float) -> None: ...


class Committer:
    """Per-partition trackers of finished offsets, and the commits made from them."""

    def __init__(
        self,
        consumer: OffsetCommitting,
        observer: CommitObserver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: seconds, for the commit durations reported to ``observer``."""
        self._consumer = consumer
        self._observer = observer
        self._clock = clock
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._one_at_a_time = asyncio.Lock()

    def track(self, tp: TopicPartition) -> OffsetTracker:
        """The tracker of ``tp``, new if ``tp`` is not tracked yet."""
        tracker = self._trackers.get(tp)
        if tracker is None:
            tracker = self._trackers[tp] = OffsetTracker()
        return tracker

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop tracking ``partitions`` (revoked); a commit in flight for them still completes."""
        for tp in partitions:
            self._trackers.pop(tp, None)

    async def commit(self, only: Collection[TopicPartition] | None = None) -> None:
        """Commit every tracked partition (or those in ``only``) whose committable offset moved.

        Waits for a commit in flight first. Raises what ``consumer.commit`` raises; the trackers are then
        left as they were, so the next commit carries the same offsets again.
        """
        async with self._one_at_a_time:
            pending = [
                (tp, tracker, offset)
                for tp, tracker in self._trackers.items()
                if (only is None or tp in only)
                and tracker.pending_commit
                and (offset := tracker.committable()) is not None
            ]
            if not pending:
                return
            offsets = {tp: offset for tp, _, offset in pending}
            started = self._clock()
            await self._consumer.commit(offsets)
            for _, tracker, offset in pending:
                tracker.mark_committed(offset)
            self._observer.committed(offsets, self._clock() - started)

    async def try_commit(self, only: Collection[TopicPartition] | None = None) -> bool:
        """``commit``, except that a ``KafkaError`` (the group rebalancing, the coordinator moving) is logged
        as ``commit_failed`` and ``False`` returned: commits are cumulative, so the next one carries the same
        offsets, and a record whose offset is never committed is only read again (at-least-once)."""
        try:
            await self.commit(only)
        except KafkaError as exc:
            log.warning("commit_failed", extra={"error_class": type(exc).__name__, "error": str(exc)})
            return False
        return True

    async def commit_every(self, interval_s: float) -> None:
        """``try_commit`` every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.try_commit()
