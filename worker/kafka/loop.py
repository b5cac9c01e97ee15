"""The Kafka loop: poll, start each record, acknowledge it once its result is durable.

Many records are in flight per partition; each one becomes a ``Routed`` record through the ``RecordHandler``,
is produced through the ``Outbox`` and acknowledged (``acks=all``), and only then counts as done: the
``Committer`` commits per partition up to the first offset not yet done, so a crash anywhere replays but
never skips (at-least-once). ``Partitions`` keeps the per-partition state and follows rebalances.
Shutdown: stop intake, drain in-flight work under a deadline, cancel the rest, commit, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from worker.kafka.committer import CommitObserver, Committer, OffsetCommitting
from worker.kafka.outbox import Outbox, Producer
from worker.kafka.partitions import (
    PartitionConsumer,
    PartitionObserver,
    Partitions,
    PartitionState,
    RecordControl,
)
from worker.records import ConsumedRecord, Routed, Stall

log = logging.getLogger(__name__)

_MIN_START_CHUNK = 64
"""Polls of fewer records than twice this start at once: splitting them would only add produce requests."""

Work = TypeVar("Work")


class RecordHandler(Protocol[Work]):
    """Turns one consumed record into the record to route, in two steps.

    ``prepare`` runs at once, for a whole poll in a row (decoding every record of a poll together keeps that
    code hot: ~2 us a record cheaper than interleaving it with the rest of each record's work). It returns
    the final ``Routed`` when no waiting is needed (a dead letter), else the work for ``complete``, which
    runs in the record's own task. Neither raises for bad input; FatalAnalyzerError from ``complete``
    stops the worker.
    """

    def prepare(self, record: ConsumedRecord) -> Routed | Work: ...

    async def complete(self, record: ConsumedRecord, work: Work, control: Stall) -> Routed: ...


class PipelineObserver(PartitionObserver, CommitObserver, Protocol):
    """Metrics hooks; the pipeline reports, the observer counts."""

    def consumed(self, topic: str, count: int) -> None: ...
    def routed(self, routed: Routed, record: ConsumedRecord, processing_s: float) -> None: ...
    def in_flight(self, count: int) -> None: ...


class Consumer(PartitionConsumer, OffsetCommitting, Protocol):
    """The consumer surface the loop uses; ``AIOKafkaConsumer`` provides it."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        """The broker's end offset (next offset to be written) of each partition."""


class WorkerStopped(Exception):
    """The pipeline stopped because of a fatal error; ``cause`` says which."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Pipeline(Generic[Work]):
    """Consume ``input_topic``, route every record exactly once per successful pass, commit after acks."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        handler: RecordHandler[Work],
        observer: PipelineObserver,
        *,
        input_topic: str,
        max_in_flight: int,
        max_in_flight_per_partition: int,
        drain_timeout_s: float,
        commit_interval_s: float = 0.2,
        poll_keepalive_s: float = 5.0,
        lag_report_interval_s: float = 0.5,
        on_assignment: Callable[[int, int], None] | None = None,
        intake_paused: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``intake_paused()`` true stops intake (``moderation-worker pause``): records in flight finish and
        commit, no new one starts, the replica stays in the group."""
        self._consumer = consumer
        self._handler = handler
        self._observer = observer
        self._max_in_flight = max_in_flight
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_s
        self._poll_keepalive_s = poll_keepalive_s
        self._clock = clock
        self._intake_paused = intake_paused
        self._committer = Committer(consumer, observer, clock=clock)
        self._partitions = Partitions(
            consumer,
            self._committer,
            observer,
            input_topic=input_topic,
            max_in_flight_per_partition=max_in_flight_per_partition,
            drain_timeout_s=drain_timeout_s,
            lag_report_interval_s=lag_report_interval_s,
            on_assignment=on_assignment,
            clock=clock,
        )
        self._outbox = Outbox(producer)
        self._tasks: set[asyncio.Task[None]] = set()  # records in the handler
        self._in_flight = 0  # records started and neither acknowledged nor abandoned
        self._nothing_in_flight = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._polled_at = -math.inf  # loop time of the last poll (getmany)

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to pass to ``consumer.subscribe``."""
        return self._partitions.listener()

    @property
    def assigned(self) -> Collection[TopicPartition]:
        """Partitions this replica owns right now."""
        return self._partitions.assigned

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set or a fatal error happens; then drain, commit and return (or raise
        ``WorkerStopped``). A failed final commit is logged: the next owner reads those records again."""
        committer = asyncio.create_task(self._committer.commit_every(self._commit_interval_s), name="commit")
        stop_watcher = asyncio.create_task(self._wake_on(stop), name="stop-watcher")
        try:
            while not stop.is_set() and self._fatal is None:
                await self._intake_once()
        finally:
            await self._drain()
            for task in (committer, stop_watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._committer.try_commit()
        if self._fatal is not None:
            raise WorkerStopped(self._fatal)

    async def _intake_once(self) -> None:
        free = self._max_in_flight - self._in_flight
        paused = self._intake_paused()
        held = self._partitions.hold(intake_full=free <= 0, intake_paused=paused)
        assigned = self._partitions.assigned
        eligible = [tp for tp in assigned if tp not in held]
        if free <= 0 or paused or (assigned and not eligible):
            await self._wait_for_slot()
            if paused:
                await self._report_paused_lag()
            return
        # Held partitions are left out of the poll rather than paused (see ``worker.kafka.partitions``).
        # Without any assignment yet, poll everything so the assignment can arrive. While some partitions
        # are held, poll briefly: a held partition with records waiting may free up before the others
        # receive any, and a long poll would leave its slots idle until it ends.
        timeout_ms = 200 if len(eligible) == len(assigned) else 10
        batch = await self._consumer.getmany(*eligible, timeout_ms=timeout_ms, max_records=free)
        self._polled_at = asyncio.get_running_loop().time()
        await self._start_all(batch)
        self._observer.in_flight(self._in_flight)
        self._partitions.polled(self._polled_at)

    async def _report_paused_lag(self) -> None:
        """While intake is paused nothing is fetched and the consumer's high watermarks stand still: ask the
        broker for the end offsets, so the lag shows the records waiting. A failed request skips a report."""
        now = asyncio.get_running_loop().time()
        assigned = list(self._partitions.assigned)
        if not assigned or not self._partitions.lag_due(now):
            return
        try:
            ends = await self._consumer.end_offsets(assigned)
        except KafkaError as exc:
            log.warning("lag_refresh_failed", extra={"error_class": type(exc).__name__})
            return
        self._partitions.polled(now, ends)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        """Wake ``_wait_for_slot`` when ``stop`` is set: one task for the run instead of two per wait."""
        await stop.wait()
        self._slot_freed.set()

    async def _wait_for_slot(self) -> None:
        """Wait (at most 0.2 s) for a slot to free or the stop; poll now and then to stay in the group.

        The keep-alive poll runs with every partition paused (max.poll.interval.ms would evict a member
        that stops polling), which drops what was prefetched: hence only after ``poll_keepalive_s``
        without a regular poll (everything in flight waiting on the analyzer).
        """
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await self._slot_freed.wait()
        if asyncio.get_running_loop().time() - self._polled_at >= self._poll_keepalive_s:
            with self._partitions.all_paused():
                try:
                    await self._consumer.getmany(timeout_ms=0)
                finally:
                    self._polled_at = asyncio.get_running_loop().time()

    async def _start_all(self, batch: Mapping[TopicPartition, Sequence[ConsumedRecord]]) -> None:
        """Start every record of a poll, in two halves with a turn of the event loop in between.

        Handlers that finish without waiting (an in-process analyzer, dead letters) would otherwise all run
        before the first result is produced, and the poll's slots would free only after one produce round
        trip at the end; this way that round trip overlaps the second half's work. Heartbeats and scrapes
        get their turn sooner too.
        """
        half = max(_MIN_START_CHUNK, (sum(map(len, batch.values())) + 1) // 2)
        started = 0
        for tp, records in batch.items():
            count = 0
            for record in records:
                if started and started % half == 0:
                    self._observer.consumed(tp.topic, count)
                    count = 0
                    await asyncio.sleep(0)
                state = self._partitions.get(tp)
                if state is None or state.revoking:  # the new owner reads these again
                    break
                self._start(tp, state, record)
                started += 1
                count += 1
            self._observer.consumed(tp.topic, count)

    def _start(self, tp: TopicPartition, state: PartitionState, record: ConsumedRecord) -> None:
        state.start(record.offset, record.timestamp)
        if not self._in_flight:
            self._nothing_in_flight.clear()
        self._in_flight += 1
        started = self._clock()
        try:
            work = self._handler.prepare(record)
        except Exception as exc:  # noqa: BLE001 - a defect in the handler: stop, never skip the record
            self._stop_for(exc, tp, record.offset)
            self._settle()
            return
        if isinstance(work, Routed):
            self._send(tp, state, record, work, started)
            return
        # The loop's own create_task: asyncio.create_task adds two Python calls per record around it.
        process = self._process(tp, state, record, work, started)
        self._tasks.add(asyncio.get_running_loop().create_task(process))
        if len(self._tasks) > 2 * self._max_in_flight:  # forget finished tasks now and then, in one go
            self._tasks = {task for task in self._tasks if not task.done()}

    async def _process(
        self, tp: TopicPartition, state: PartitionState, record: ConsumedRecord, work: Work, started: float
    ) -> None:
        """Complete one record and hand its result to the outbox; every outcome ends here (no done
        callback: one per record costs more than the bookkeeping it does)."""
        control = RecordControl(state)
        handed_over = False
        try:
            routed = await self._handler.complete(record, work, control)
            self._send(tp, state, record, routed, started)
            handed_over = True
        # FatalAnalyzerError, or a defect in the handler: stop, never skip the record.
        except Exception as exc:  # noqa: BLE001
            self._stop_for(exc, tp, record.offset)
        finally:
            control.unstall()
            if not handed_over:
                self._settle()

    def _send(
        self,
        tp: TopicPartition,
        state: PartitionState,
        record: ConsumedRecord,
        routed: Routed,
        started: float,
    ) -> None:
        def acknowledged(error: BaseException | None) -> None:
            """The outbox's report on ``routed``: done and committable, or never produced."""
            self._settle()
            if error is None:
                state.finish(record.offset)
                self._observer.routed(routed, record, self._clock() - started)
            elif not isinstance(error, asyncio.CancelledError):  # cancelled: abandoned at shutdown
                self._stop_for(error, tp, record.offset)

        if routed.side:
            records = [(routed.topic, routed.key, routed.value, routed.headers), *routed.side]
            self._outbox.send_all(records, acknowledged)
        else:
            self._outbox.send(routed.topic, routed.key, routed.value, routed.headers, acknowledged)

    def _settle(self) -> None:
        """One record left flight (acknowledged, failed or abandoned): its slot is free."""
        self._in_flight -= 1
        self._slot_freed.set()
        if not self._in_flight:
            self._nothing_in_flight.set()

    def _stop_for(self, error: BaseException, tp: TopicPartition, offset: int) -> None:
        log.error(
            "fatal_error",
            extra={
                "error_class": type(error).__name__,
                "error": str(error),
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": offset,
            },
        )
        if self._fatal is None:
            self._fatal = error

    async def _drain(self) -> None:
        """Wait (bounded) until every record in flight is acknowledged; abandon the rest, uncommitted."""
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nothing_in_flight.wait(), self._drain_timeout_s)
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending or self._in_flight:
            log.warning("drain_timeout", extra={"cancelled": len(pending), "unacknowledged": self._in_flight})
        if pending:
            await asyncio.wait(pending)
        await self._outbox.aclose()
        self._observer.in_flight(self._in_flight)
