"""The Kafka side of the worker: intake with backpressure, routing with acks, contiguous commits, rebalances.

Many records are in flight per partition; each one becomes a ``Routed`` record through the ``RecordHandler``,
is produced through the ``Outbox`` and acknowledged (``acks=all``), and only then counts as done. Commits move
per partition to the first offset not yet done, so a crash anywhere replays but never skips (at-least-once).
Shutdown: stop intake, drain in-flight work under a deadline, cancel the rest, commit, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from worker.kafka.offsets import OffsetTracker
from worker.kafka.outbox import Outbox
from worker.records import Routed, Stall

log = logging.getLogger(__name__)

_MIN_START_CHUNK = 64
"""Polls of fewer records than twice this start at once: splitting them would only add produce requests."""


class RecordHandler(Protocol):
    """Turns one consumed record into the record to route, in two steps.

    ``prepare`` runs at once, for a whole poll in a row (decoding every record of a poll together keeps that
    code hot: ~2 us a record cheaper than interleaving it with the rest of each record's work). It returns
    the final ``Routed`` when no waiting is needed (a dead letter), else the work for ``complete``, which
    runs in the record's own task. Neither raises for bad input; FatalAnalyzerError from ``complete``
    stops the worker.
    """

    def prepare(self, record: Any) -> Routed | object: ...

    async def complete(self, record: Any, work: Any, control: Stall) -> Routed: ...


class PipelineObserver(Protocol):
    """Metrics hooks; the pipeline reports, the observer counts."""

    def consumed(self, topic: str, count: int) -> None: ...
    def routed(self, routed: Routed, record: Any, processing_s: float) -> None: ...
    def in_flight(self, count: int) -> None: ...
    def partitions(self, assigned: int, paused: int) -> None: ...
    def committed(self, offsets: dict[TopicPartition, int], duration_s: float) -> None: ...
    def lag(self, tp: TopicPartition, records: int, seconds: float) -> None: ...
    def assigned(self, committed: Mapping[TopicPartition, int | None]) -> None: ...


class WorkerStopped(Exception):
    """The pipeline stopped because of a fatal error; ``cause`` says which."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(slots=True)
class _PartitionState:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    started_any: bool = False
    stalled: int = 0
    revoking: bool = False  # set by on_revoked: start nothing more
    oldest_timestamp_ms: dict[int, int] = field(default_factory=dict)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class _Control:
    __slots__ = ("_stalled", "_state")

    def __init__(self, state: _PartitionState) -> None:
        self._state = state
        self._stalled = False

    def stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            self._state.stalled += 1

    def unstall(self) -> None:
        if self._stalled:
            self._stalled = False
            self._state.stalled -= 1


class Pipeline:
    """Consume ``input_topic``, route every record exactly once per successful pass, commit after acks."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        handler: RecordHandler,
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self._observer = observer
        self._input_topic = input_topic
        self._max_in_flight = max_in_flight
        self._max_per_partition = max_in_flight_per_partition
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_s
        self._poll_keepalive_s = poll_keepalive_s
        # Lag is scraped every few seconds; computing it after every poll (hundreds a second) was wasted.
        self._lag_report_interval_s = lag_report_interval_s
        self._lag_reported_at = -math.inf
        self._on_assignment = on_assignment
        self._clock = clock
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._outbox = Outbox(producer)
        self._tasks: set[asyncio.Task[None]] = set()  # records in the handler
        self._in_flight = 0  # records started and neither acknowledged nor abandoned
        self._nothing_in_flight = asyncio.Event()
        self._paused: set[TopicPartition] = set()
        self._slot_freed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._polled_at = -math.inf  # loop time of the last poll (getmany)

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to pass to ``consumer.subscribe``."""
        return _Rebalance(self)

    @property
    def assigned(self) -> Collection[TopicPartition]:
        """Partitions this replica owns right now."""
        return self._partitions.keys()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set or a fatal error happens; then drain, commit and return (or raise)."""
        committer = asyncio.create_task(self._commit_loop(), name="commit-loop")
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
            await self._commit()
        if self._fatal is not None:
            raise WorkerStopped(self._fatal)

    async def _intake_once(self) -> None:
        free = self._max_in_flight - self._in_flight
        held = self._apply_pauses()
        eligible = [tp for tp in self._partitions if tp not in held]
        if free <= 0 or (self._partitions and not eligible):
            await self._wait_for_slot()
            return
        # Intake is held by not asking for a partition, not by pausing it: aiokafka discards the records it
        # prefetched for a partition that is paused when polled, and would fetch them again on resume.
        # Without any assignment yet, poll everything so the assignment can arrive. While some partitions
        # are held, poll briefly: a held partition with records waiting may free up before the others
        # receive any, and a long poll would leave its slots idle until it ends.
        timeout_ms = 200 if len(eligible) == len(self._partitions) else 10
        batch = await self._consumer.getmany(*eligible, timeout_ms=timeout_ms, max_records=free)
        self._polled_at = asyncio.get_running_loop().time()
        await self._start_all(batch)
        self._observer.in_flight(self._in_flight)
        if self._polled_at - self._lag_reported_at >= self._lag_report_interval_s:
            self._lag_reported_at = self._polled_at
            self._report_lag()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        """Wake ``_wait_for_slot`` when ``stop`` is set: one task for the run instead of two per wait."""
        await stop.wait()
        self._slot_freed.set()

    async def _wait_for_slot(self) -> None:
        """Wait (at most 0.2 s) for a slot to free or the stop; poll now and then to stay in the group."""
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await self._slot_freed.wait()
        if asyncio.get_running_loop().time() - self._polled_at >= self._poll_keepalive_s:
            await self._keepalive_poll()

    async def _keepalive_poll(self) -> None:
        """Poll with every partition paused so the group does not evict us (max.poll.interval.ms).

        Pausing drops the records prefetched for the paused partitions, so this runs only after
        ``poll_keepalive_s`` without a regular poll (everything in flight waiting on the analyzer).
        """
        active = [tp for tp in self._partitions if tp not in self._paused]
        if active:
            self._consumer.pause(*active)
        try:
            await self._consumer.getmany(timeout_ms=0)
        finally:
            if still_assigned := [tp for tp in active if tp in self._consumer.assignment()]:
                self._consumer.resume(*still_assigned)
            self._polled_at = asyncio.get_running_loop().time()

    async def _start_all(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
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

    def _start(self, tp: TopicPartition, state: _PartitionState, record: Any) -> None:
        if not state.started_any:
            # Where consumption resumed is already durable (committed, or the reset policy's choice):
            # committing it again would only create an offset the group never had.
            state.started_any = True
            state.tracker.mark_committed(record.offset)
        state.tracker.start(record.offset)
        state.oldest_timestamp_ms[record.offset] = record.timestamp
        state.idle.clear()
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
        self, tp: TopicPartition, state: _PartitionState, record: Any, work: object, started: float
    ) -> None:
        """Complete one record and hand its result to the outbox; every outcome ends here (no done
        callback: one per record cost more than the bookkeeping it did)."""
        control = _Control(state)
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
        self, tp: TopicPartition, state: _PartitionState, record: Any, routed: Routed, started: float
    ) -> None:
        self._outbox.send(
            routed.topic,
            routed.key,
            routed.value,
            routed.headers,
            lambda error: self._acknowledged(tp, state, record, routed=routed, started=started, error=error),
        )

    def _acknowledged(
        self,
        tp: TopicPartition,
        state: _PartitionState,
        record: Any,
        *,
        routed: Routed,
        started: float,
        error: BaseException | None,
    ) -> None:
        """The outbox's report on ``routed``: done and committable, or never produced."""
        self._settle()
        if error is not None:
            if not isinstance(error, asyncio.CancelledError):  # cancelled: abandoned at shutdown
                self._stop_for(error, tp, record.offset)
            return
        state.tracker.finish(record.offset)
        state.oldest_timestamp_ms.pop(record.offset, None)
        if state.tracker.in_flight == 0:
            state.idle.set()
        self._observer.routed(routed, record, self._clock() - started)

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

    def _apply_pauses(self) -> set[TopicPartition]:
        """Pause stalled partitions at the consumer; return every partition whose intake is held now.

        Held: stalled, at ``max_in_flight_per_partition``, or all of them while ``max_in_flight`` is reached.
        Only stalled ones are paused at the consumer (see ``_intake_once``); the gauge reports all held ones.
        """
        full = self._in_flight >= self._max_in_flight
        stalled = {tp for tp, state in self._partitions.items() if state.stalled}
        held = {
            tp
            for tp, state in self._partitions.items()
            if full or tp in stalled or state.tracker.in_flight >= self._max_per_partition
        }
        if to_pause := stalled - self._paused:
            self._consumer.pause(*to_pause)
        if to_resume := (self._paused - stalled) & self._partitions.keys():
            self._consumer.resume(*to_resume)
        self._paused = stalled
        self._observer.partitions(len(self._partitions), len(held))
        return held

    def _report_lag(self) -> None:
        now_ms = self._clock() * 1000
        for tp, state in self._partitions.items():
            highwater = self._consumer.highwater(tp)
            committable = state.tracker.committable()
            if highwater is None or committable is None:
                continue
            records = max(highwater - committable, 0)
            oldest = min(state.oldest_timestamp_ms.values(), default=None)
            seconds = max(now_ms - oldest, 0.0) / 1000 if oldest is not None and records else 0.0
            self._observer.lag(tp, records, seconds)

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

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self._commit()

    async def _commit(self, only: Collection[TopicPartition] | None = None) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, state in self._partitions.items():
            if only is not None and tp not in only:
                continue
            if state.tracker.pending_commit and (offset := state.tracker.committable()) is not None:
                offsets[tp] = offset
        if not offsets:
            return
        started = self._clock()
        await self._consumer.commit(offsets)
        for tp, offset in offsets.items():
            self._partitions[tp].tracker.mark_committed(offset)
        self._observer.committed(offsets, self._clock() - started)

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Finish what is in flight for the revoked partitions (bounded), commit it, forget them."""
        mine = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        for state in mine:
            state.revoking = True
        if mine:
            waits = [asyncio.ensure_future(state.idle.wait()) for state in mine if state.tracker.in_flight]
            if waits:
                _, pending = await asyncio.wait(waits, timeout=self._drain_timeout_s)
                for waiter in pending:
                    waiter.cancel()
            with contextlib.suppress(KafkaError):
                await self._commit(only=revoked)
        for tp in revoked:
            self._partitions.pop(tp, None)
            self._paused.discard(tp)

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Start tracking newly assigned partitions at their committed position; re-share the quota."""
        for tp in assigned:
            self._partitions.setdefault(tp, _PartitionState())
        self._observer.assigned({tp: await self._consumer.committed(tp) for tp in self._partitions})
        total = len(self._consumer.partitions_for_topic(self._input_topic) or ())
        if self._on_assignment is not None:
            self._on_assignment(len(self._partitions), max(total, len(self._partitions)))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._pipeline.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._pipeline.on_assigned(assigned)
