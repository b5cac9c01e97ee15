"""Overhead: the worker with an instant in-process analyzer vs a bare aiokafka relay on the same messages.

Both read the same input topic (same partitions, N valid submissions) in their own consumer group, with the
same bound on records in flight, a task per record that produces with ``acks=all`` and waits for the ack,
and a commit of the contiguous done offsets every 0.2 s. The rate is measured from the output topics' end
offsets between 10 % and 90 % of N, so group joins, the first fetch and the drain of the last partitions
are left out. Best of the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from bench.common import (
    BenchContext,
    BenchResult,
    InstantAnalyzer,
    OffsetProbe,
    best_of_ratio,
    route_topics,
    shared_input,
    steady_rate,
)
from tests.kafka_helpers import create_topics
from tests.pipeline_harness import worker_environment
from worker.runner import run_worker
from worker.settings import Settings

NAME = "overhead"
TARGET = 0.4
"""A regression guard: the worker at >= 0.4 of a relay that only moves records. The worker spends about twice
the relay's CPU per record (decoding, guard, policy, encoding, metrics), and a deployment is capped by its
analyzer quota far below either rate."""
MESSAGES = 60_000
PARTITIONS = 6
MAX_IN_FLIGHT = 512
"""Enough that both sides are bound by CPU: at 64 the relay's small records wait out the 5 ms linger, and
64 records per ~7 ms capped it near 9,000 msg/s whatever its CPU cost."""
REPEATS = 3
TIMEOUT_S = 120.0


class Relay:
    """The baseline: consume -> produce (a task per record, ``send_and_wait``) -> commit contiguous offsets.

    Built like the worker's Kafka side (manual commits every 0.2 s, ``acks=all`` idempotent producer with
    ``linger_ms=5`` and 512 KiB batches, at most ``max_in_flight`` records in flight) with nothing in between.
    """

    def __init__(
        self, bootstrap: str, input_topic: str, output_topic: str, group_id: str, max_in_flight: int
    ):
        self._consumer = AIOKafkaConsumer(
            input_topic,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_in_flight,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
        )
        self._output_topic = output_topic
        self._max_in_flight = max_in_flight
        self._started: dict[TopicPartition, deque[tuple[int, asyncio.Task[Any]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; then finish what is in flight, commit and close."""
        await self._producer.start()
        await self._consumer.start()
        committer = asyncio.create_task(self._commit_loop())
        try:
            while not stop.is_set():
                await self._intake_once()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            if self._tasks:
                await asyncio.wait(self._tasks)
            await self._commit()
            await self._consumer.stop()
            await self._producer.stop()

    async def _intake_once(self) -> None:
        free = self._max_in_flight - len(self._tasks)
        if free <= 0:
            # An event set by the tasks' done callback, as the worker waits (asyncio.wait over every task in
            # flight registers and removes a callback on each of them per wait).
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), timeout=0.2)
            return
        batch = await self._consumer.getmany(timeout_ms=200, max_records=free)
        for tp, records in batch.items():
            queue = self._started.setdefault(tp, deque())
            for record in records:
                task = asyncio.create_task(
                    self._producer.send_and_wait(self._output_topic, record.value, key=record.key)
                )
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
                queue.append((record.offset, task))

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self._commit()

    async def _commit(self) -> None:
        offsets = {}
        for tp, queue in self._started.items():
            last = None
            while queue and queue[0][1].done():
                last = queue.popleft()[0]
            if last is not None:
                offsets[tp] = last + 1
        if offsets:
            await self._consumer.commit(offsets)


async def _measure_relay(ctx: BenchContext, input_topic: str) -> float:
    output = ctx.topics(NAME + "-relay").route("approved")
    await create_topics(ctx.bootstrap, [output], PARTITIONS)
    stop = asyncio.Event()
    task = asyncio.create_task(
        Relay(ctx.bootstrap, input_topic, output, ctx.group(NAME), MAX_IN_FLIGHT).run(stop)
    )
    try:
        async with OffsetProbe(ctx.bootstrap, [output], PARTITIONS) as probe:
            rate, _ = await steady_rate(
                probe.count, start_at=MESSAGES // 10, end_at=MESSAGES * 9 // 10, timeout_s=TIMEOUT_S
            )
    finally:
        stop.set()
        await task
    return rate


async def _measure_worker(ctx: BenchContext, input_topic: str) -> float:
    topics = ctx.topics(NAME + "-worker")
    await create_topics(ctx.bootstrap, route_topics(topics), PARTITIONS)
    env = worker_environment(
        ctx.bootstrap,
        topics,
        ctx.group(NAME),
        "http://127.0.0.1:9",  # never called: the analyzer is injected
        "unused",
        input_topic=input_topic,
        quota_calls_per_s="1000000",
        max_in_flight=str(MAX_IN_FLIGHT),
        max_in_flight_per_partition=str(MAX_IN_FLIGHT),  # the relay has no per-partition bound either
        log_level="WARNING",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(
            Settings.from_env(env), stop=stop, analyzer=InstantAnalyzer(), registry=CollectorRegistry()
        )
    )
    try:
        async with OffsetProbe(ctx.bootstrap, route_topics(topics), PARTITIONS) as probe:
            rate, _ = await steady_rate(
                probe.count, start_at=MESSAGES // 10, end_at=MESSAGES * 9 // 10, timeout_s=TIMEOUT_S
            )
    finally:
        stop.set()
        exit_code = await task
    if exit_code != 0:
        raise RuntimeError(f"the worker exited with {exit_code}")
    return rate


async def run(ctx: BenchContext) -> BenchResult:
    """Relay and worker alternately, ``REPEATS`` times each; the ratio of their best rates."""
    input_topic = await shared_input(ctx, NAME, PARTITIONS, MESSAGES)
    relay_rates: list[float] = []
    worker_rates: list[float] = []
    for _ in range(REPEATS):
        relay_rates.append(await _measure_relay(ctx, input_topic))
        worker_rates.append(await _measure_worker(ctx, input_topic))
    return best_of_ratio(
        NAME,
        minimum=TARGET,
        worker_rates=worker_rates,
        baseline_rates=relay_rates,
        worker_label="worker",
        baseline_label="bare_aiokafka_relay",
        unit="msg_per_s",
        figures={"messages": MESSAGES, "partitions": PARTITIONS, "max_in_flight": MAX_IN_FLIGHT},
    )
