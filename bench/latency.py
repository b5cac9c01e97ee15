"""Latency: submit -> result through the real worker at 50 % and 90 % of its quota, vs the analyzer's own.

The emulator answers every call after ``ANALYZER_DELAY_MS`` (no rate limit) in the bench process. The worker
is ``moderation-worker run`` at quota R = ``QUOTA_PER_S``; submissions are produced evenly spaced at 50 % of
R, then at 90 %, and each one's latency is the time from handing it to the bench's producer to the bench's
consumer receiving its result from an output topic (both on the bench process's monotonic clock, fetches
return as soon as a record is there). The baseline, measured in the same run, is the analyzer's own latency:
``python -m bench.latency client``, a process of its own making bare SDK calls at the same rates on the
client the worker builds (``worker.analysis.azure.build_client``) against the same emulator. The first
``WARMUP_S`` of every phase are left out. Target at 50 %: p99 <= the analyzer's p99 + ``TARGET_MARGIN_MS``.

Arrivals are evenly spaced: with bursty arrivals the limiter's queueing would add to the worker's figures
(its burst is one token, docs/throughput.md).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential

from bench.common import BenchContext, BenchResult, route_topics, valid_submissions
from tests.pipeline_harness import IMAGE_HOST, worker_environment, worker_process
from worker.analysis.azure import build_client
from worker.dev.emulator.server import Emulator, EmulatorConfig

NAME = "latency"
KEY = "bench-key"
ANALYZER_DELAY_MS = 300
QUOTA_PER_S = 100
LOADS = (0.5, 0.9)
"""Shares of the quota submitted; the target applies to the first."""
PARTITIONS = 6
PHASE_S = 24.0
WARMUP_S = 4.0
TARGET_MARGIN_MS = 50.0
RESULT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Median and 99th percentile of a set of latencies, in milliseconds, and how many there were."""

    p50_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> Percentiles:
        """The percentiles of ``latencies_ms`` (at least two values)."""
        cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
        return cls(cuts[49], cuts[98], len(latencies_ms))

    def __str__(self) -> str:
        return f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms ({self.count:,} samples)"


def _schedule(rate_per_s: float, count: int) -> list[float]:
    """``count`` evenly spaced event-loop times at ``rate_per_s``, the first now."""
    start = asyncio.get_running_loop().time()
    return [start + index / rate_per_s for index in range(count)]


async def _wait_until(moment: float) -> None:
    delay = moment - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def analyzer_latencies(endpoint: str, key: str, rate_per_s: float, seconds: float) -> list[float]:
    """Milliseconds of each bare SDK call made at ``rate_per_s`` for ``seconds``, after ``WARMUP_S``."""
    client = build_client(
        endpoint, AzureKeyCredential(key), connect_timeout_s=3.0, read_timeout_s=10.0, environ=os.environ
    )
    loop = asyncio.get_running_loop()
    latencies: list[tuple[float, float]] = []

    async def call(index: int, started: float) -> None:
        await client.analyze_from_url(f"{IMAGE_HOST}/latency-{index}.jpg", [VisualFeatures.TAGS])
        latencies.append((started, (loop.time() - started) * 1000))

    async with client, asyncio.TaskGroup() as calls:
        moments = _schedule(rate_per_s, int(rate_per_s * seconds))
        for index, moment in enumerate(moments):
            await _wait_until(moment)
            calls.create_task(call(index, loop.time()))
    return [latency for started, latency in latencies if started - moments[0] >= WARMUP_S]


async def _measure_analyzer(emulator: Emulator, rate_per_s: float) -> Percentiles:
    """``analyzer_latencies`` in a process of its own (``python -m bench.latency client``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.latency",
        "client",
        emulator.endpoint,
        KEY,
        str(rate_per_s),
        str(PHASE_S),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ) | {"NO_PROXY": "127.0.0.1,localhost"},  # as ``worker_process`` gives the worker
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=PHASE_S + RESULT_TIMEOUT_S)
    if process.returncode != 0:
        raise RuntimeError(f"the bare SDK client exited with {process.returncode}")
    return Percentiles.of(orjson.loads(stdout))


class ResultProbe:
    """Receives every result of some output topics and notes when each key's result arrived."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self._partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        self.arrived: dict[bytes, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResultProbe:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._receive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _receive(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            received = time.monotonic()
            for records in batch.values():
                for record in records:
                    self.arrived.setdefault(record.key or b"", received)

    async def wait_for(self, keys: Sequence[bytes]) -> None:
        """Return once every key in ``keys`` has its result (``TimeoutError`` after ``RESULT_TIMEOUT_S``)."""
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            while any(key not in self.arrived for key in keys):  # noqa: ASYNC110 - polling what arrived
                await asyncio.sleep(0.05)


async def _submit(
    producer: AIOKafkaProducer,
    topic: str,
    probe: ResultProbe,
    rate_per_s: float,
    *,
    seconds: float,
    prefix: str,
) -> list[float]:
    """Produce submissions evenly spaced at ``rate_per_s`` for ``seconds``; return their latencies in ms
    (to their results' arrival at ``probe``), leaving out the first ``WARMUP_S``."""
    records = valid_submissions(int(rate_per_s * seconds), prefix=prefix)
    sent: list[tuple[bytes, float]] = []
    for (key, value), moment in zip(records, _schedule(rate_per_s, len(records)), strict=True):
        await _wait_until(moment)
        sent.append((key, time.monotonic()))
        await producer.send(topic, value, key=key)
    await probe.wait_for([key for key, _ in sent])
    first = sent[0][1]
    return [(probe.arrived[key] - at) * 1000 for key, at in sent if at - first >= WARMUP_S]


async def run(ctx: BenchContext) -> list[BenchResult]:
    """Per load: the analyzer's latency (bare SDK), then the worker's submit -> result latency."""
    topics = ctx.topics(NAME)
    await topics.create(ctx.bootstrap, PARTITIONS)
    analyzer: dict[float, Percentiles] = {}
    worker: dict[float, Percentiles] = {}
    config = EmulatorConfig(key=KEY, latency_ms=ANALYZER_DELAY_MS)
    async with Emulator(config, host="127.0.0.1", port=0) as emulator:
        env = worker_environment(
            ctx.bootstrap,
            topics,
            ctx.group(NAME),
            emulator.endpoint,
            KEY,
            quota_calls_per_s=str(QUOTA_PER_S),
            log_level="WARNING",
        )
        producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            async with (
                worker_process(env, ctx.workdir / f"{NAME}.log") as process,
                ResultProbe(ctx.bootstrap, route_topics(topics)) as probe,
            ):
                # Once these have results the worker has joined its group and reads the input.
                await _submit(producer, topics.input, probe, 10.0, seconds=2.0, prefix="warm")
                for load in LOADS:
                    rate_per_s = load * QUOTA_PER_S
                    analyzer[load] = await _measure_analyzer(emulator, rate_per_s)
                    latencies = await _submit(
                        producer, topics.input, probe, rate_per_s, seconds=PHASE_S, prefix=f"load{load}"
                    )
                    worker[load] = Percentiles.of(latencies)
                if process.returncode is not None:
                    raise RuntimeError(f"the worker exited early with {process.returncode}")
        finally:
            await producer.stop()
    return [_result(load, worker[load], analyzer[load], targeted=load == LOADS[0]) for load in LOADS]


def _result(load: float, worker: Percentiles, analyzer: Percentiles, *, targeted: bool) -> BenchResult:
    limit_ms = analyzer.p99_ms + TARGET_MARGIN_MS
    return BenchResult(
        name=f"{NAME}@{load:.0%}",
        ratio=worker.p99_ms / analyzer.p99_ms,
        target=f"p99 <= analyzer p99 + {TARGET_MARGIN_MS:.0f} ms" if targeted else "none (reported)",
        met=worker.p99_ms <= limit_ms if targeted else True,
        baseline=f"analyzer (bare SDK, same rate) {analyzer}",
        measured=f"submit -> result {worker} at {load * QUOTA_PER_S:.0f}/s (R = {QUOTA_PER_S}/s)",
        figures={
            "analyzer_delay_ms": ANALYZER_DELAY_MS,
            "worker_p50_ms": round(worker.p50_ms, 1),
            "worker_p99_ms": round(worker.p99_ms, 1),
            "analyzer_p50_ms": round(analyzer.p50_ms, 1),
            "analyzer_p99_ms": round(analyzer.p99_ms, 1),
            "p99_added_ms": round(worker.p99_ms - analyzer.p99_ms, 1),
        },
    )


if __name__ == "__main__":
    # python -m bench.latency client ENDPOINT KEY RATE SECONDS: the baseline, in its own process.
    _, command, endpoint, key, rate, seconds = sys.argv
    if command != "client":
        raise SystemExit(f"usage: python -m bench.latency client ENDPOINT KEY RATE SECONDS, not {command}")
    sys.stdout.write(
        orjson.dumps(asyncio.run(analyzer_latencies(endpoint, key, float(rate), float(seconds)))).decode()
    )
