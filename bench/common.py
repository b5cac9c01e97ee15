"""What every benchmark shares: its result line, the run context, topics, fast producing and rate probes.

All traffic stays on 127.0.0.1: the embedded broker, the in-process emulator and the workers. Rates are
measured from observable counters (output-topic end offsets, emulator stats), never from the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import platform
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.kafka_helpers import create_topics
from tests.pipeline_harness import IMAGE_HOST, ROUTES, Topics, make_submissions
from worker.analysis.azure import build_client
from worker.dev.emulator.server import Emulator
from worker.domain import Analysis, Tag

POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark's verdict: ``ratio`` compared with ``target``, next to the baseline measured in the run.

    ``figures`` holds every other number the benchmark measured (name -> value, units in the name).
    """

    name: str
    ratio: float
    target: str
    met: bool
    baseline: str
    measured: str
    figures: dict[str, float | str] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line summary printed when the benchmark ends."""
        verdict = "MET" if self.met else "MISSED"
        return (
            f"[{self.name}] ratio={self.ratio:.3f} target {self.target} -> {verdict}; "
            f"measured {self.measured}; baseline {self.baseline}"
        )


def best_of_ratio(
    name: str,
    *,
    minimum: float,
    worker_rates: Sequence[float],
    baseline_rates: Sequence[float],
    worker_label: str,
    baseline_label: str,
    unit: str,
    figures: dict[str, float | str],
) -> BenchResult:
    """The verdict of a throughput comparison run several times alternately: best worker rate over best
    baseline rate, at least ``minimum``; every run's rate is kept in ``figures``."""
    worker_best, baseline_best = max(worker_rates), max(baseline_rates)
    ratio = worker_best / baseline_best
    runs: dict[str, float | str] = {
        f"{worker_label}_{unit}_runs": ", ".join(f"{rate:,.0f}" for rate in worker_rates),
        f"{baseline_label}_{unit}_runs": ", ".join(f"{rate:,.0f}" for rate in baseline_rates),
    }
    return BenchResult(
        name=name,
        ratio=ratio,
        target=f">= {minimum}",
        met=ratio >= minimum,
        baseline=f"{baseline_label.replace('_', ' ')} {baseline_best:,.0f} {unit.replace('_per_', '/')}",
        measured=f"{worker_label} {worker_best:,.0f} {unit.replace('_per_', '/')}",
        figures=figures | runs,
    )


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What a benchmark gets from the runner: the broker, a scratch folder and a unique name prefix."""

    bootstrap: str
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))

    def topics(self, bench: str) -> Topics:
        """Fresh input and output topic names for one benchmark run (never reused across runs)."""
        return Topics(f"bench-{self.run_id}-{bench}-{secrets.token_hex(2)}-")

    def group(self, bench: str) -> str:
        """A consumer group id nobody used before."""
        return f"bench-{self.run_id}-{bench}-{secrets.token_hex(2)}"


class InstantAnalyzer:
    """An ``Analyzer`` that answers at once with a fixed, approvable analysis (no I/O)."""

    def __init__(self) -> None:
        self._analysis = Analysis(model_version="bench", tags=(Tag("cat", 0.97), Tag("indoor", 0.9)))
        self.calls_total = 0

    async def analyze(self, image_url: str) -> Analysis:  # noqa: ARG002 - the seam's signature
        """The fixed analysis."""
        self.calls_total += 1
        return self._analysis

    async def aclose(self) -> None:
        """Nothing to release."""


def valid_submissions(count: int, prefix: str = "img") -> list[tuple[bytes, bytes]]:
    """``count`` schema-valid submissions (no malformed ones) to ``images.example.com``."""
    return make_submissions(count, malformed_every=count + 1, prefix=prefix).records


async def produce_fast(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], *, window: int = 20_000
) -> float:
    """Produce ``records`` (acks=all, idempotent) in windows of pending sends; return the seconds it took."""
    started = time.monotonic()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20, max_batch_size=262_144
    )
    await producer.start()
    try:
        for begin in range(0, len(records), window):
            pending = [
                await producer.send(topic, value, key=key) for key, value in records[begin : begin + window]
            ]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def shared_input(ctx: BenchContext, name: str, partitions: int, count: int) -> str:
    """Create benchmark ``name``'s input topic with ``count`` valid submissions; a worker and its baseline
    read it in turn, each in its own consumer group. Returns the topic."""
    topic = ctx.topics(name).input
    await create_topics(ctx.bootstrap, [topic], partitions)
    await produce_fast(ctx.bootstrap, topic, valid_submissions(count))
    return topic


class OffsetProbe:
    """Sum of the end offsets of some topics: how many records they hold, read without consuming them."""

    def __init__(self, bootstrap: str, topics: Iterable[str], partitions: int) -> None:
        self._bootstrap = bootstrap
        self._partitions = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> OffsetProbe:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap)
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def count(self) -> int:
        """Records in the topics right now."""
        assert self._consumer is not None, "use OffsetProbe in `async with`"
        return sum((await self._consumer.end_offsets(self._partitions)).values())

    async def wait_for(self, count: int, *, timeout_s: float) -> float:
        """Poll until the topics hold ``count`` records; return the monotonic time it was first seen."""
        async with asyncio.timeout(timeout_s):
            while await self.count() < count:  # noqa: ASYNC110 - the broker offers no notification
                await asyncio.sleep(POLL_S)
        return time.monotonic()


def route_topics(topics: Topics) -> list[str]:
    """The four output topics of a worker."""
    return [topics.route(name) for name in ROUTES]


async def steady_rate(
    count: Callable[[], Awaitable[int]], *, start_at: int, end_at: int, timeout_s: float
) -> tuple[float, float]:
    """Records per second between ``count()`` first reaching ``start_at`` and first reaching ``end_at``.

    Returns ``(rate_per_s, seconds)``; the warm-up below ``start_at`` (group join, first fetch) is left out.
    """
    async with asyncio.timeout(timeout_s):
        while (seen := await count()) < start_at:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(POLL_S)
        started, first = time.monotonic(), seen
        while (seen := await count()) < end_at:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(POLL_S)
    seconds = time.monotonic() - started
    return (seen - first) / seconds, seconds


async def rate_over(count: Callable[[], Awaitable[int]], seconds: float) -> float:
    """Increase of ``count()`` per second over the next ``seconds``."""
    first, started = await count(), time.monotonic()
    await asyncio.sleep(seconds)
    return (await count() - first) / (time.monotonic() - started)


def machine_description() -> dict[str, str]:
    """nproc, CPU model, memory, load and Python: what the figures were measured on."""
    cpu = "unknown"
    with Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total_kb = 0
    with Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_total_kb = int(line.split()[1])
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_total_kb / 1024 / 1024:.1f} GiB",
        "loadavg_at_start": load,
        "python": platform.python_version(),
    }


def linear_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (units of y per unit of x); 0.0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if math.isclose(var_x, 0.0):
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x


@dataclass(frozen=True, slots=True)
class SdkCalls:
    """What ``bare_sdk_calls`` saw: answered calls by outcome and the steady rate of all calls."""

    ok: int
    throttled: int
    rate_per_s: float
    mean_latency_s: float


async def bare_sdk_calls(
    endpoint: str, key: str, *, concurrency: int, count: int | None = None, duration_s: float | None = None
) -> SdkCalls:
    """``concurrency`` loops of ``ImageAnalysisClient.analyze_from_url`` on the client the worker builds
    (``worker.analysis.azure.build_client``: SDK retries off, the worker's default timeouts, proxy read once).

    Tags only.

    Stops after ``count`` calls or ``duration_s`` seconds. ``rate_per_s`` counts calls after the first 10 %
    (or the first second), so client start-up and connection set-up are left out.
    """
    client = build_client(
        endpoint, AzureKeyCredential(key), connect_timeout_s=3.0, read_timeout_s=10.0, environ=os.environ
    )
    issued = ok = throttled = 0
    latency_total_s = 0.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    mark: tuple[float, int] | None = None
    warm_calls = max(count // 10, 1) if count else None

    def more() -> bool:
        if count is not None:
            return issued < count
        return loop.time() - started < (duration_s or 0.0)

    async def caller() -> None:
        nonlocal issued, ok, throttled, latency_total_s, mark
        while more():
            issued += 1
            url = f"{IMAGE_HOST}/bench-{issued}.jpg"
            call_started = loop.time()
            try:
                await client.analyze_from_url(url, [VisualFeatures.TAGS])
                ok += 1
            except HttpResponseError as exc:
                if exc.status_code != 429:
                    raise
                throttled += 1
            latency_total_s += loop.time() - call_started
            done = ok + throttled
            if mark is None and (done >= warm_calls if warm_calls else loop.time() - started >= 1.0):
                mark = (loop.time(), done)

    async with client:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    ended, done = loop.time(), ok + throttled
    since, before = mark or (started, 0)
    rate = (done - before) / (ended - since) if ended > since else 0.0
    return SdkCalls(ok, throttled, rate, latency_total_s / max(done, 1))


@dataclass(frozen=True, slots=True)
class EmulatorSample:
    """The emulator's counters at one moment (monotonic seconds)."""

    at_s: float
    calls_total: int
    ok_total: int
    throttled_total: int

    @classmethod
    def take(cls, emulator: Emulator) -> EmulatorSample:
        """Read the counters now."""
        stats = emulator.stats
        return cls(time.monotonic(), stats.calls_total, stats.by_status.get(200, 0), stats.rate_limited_total)

    def rates_since(self, earlier: EmulatorSample) -> tuple[float, float, float]:
        """(all calls/s, admitted calls/s, throttled share of calls) between ``earlier`` and this sample."""
        seconds = self.at_s - earlier.at_s
        calls = self.calls_total - earlier.calls_total
        throttled = self.throttled_total - earlier.throttled_total
        return calls / seconds, (self.ok_total - earlier.ok_total) / seconds, throttled / max(calls, 1)


async def emulator_timeline(
    emulator: Emulator, seconds: float, *, step_s: float = 5.0
) -> tuple[list[EmulatorSample], list[float]]:
    """Sample the emulator every ``step_s`` for ``seconds``; return the samples and each step's admitted/s."""
    samples = [EmulatorSample.take(emulator)]
    deadline = samples[0].at_s + seconds
    while (now := time.monotonic()) < deadline:
        await asyncio.sleep(min(step_s, deadline - now))
        samples.append(EmulatorSample.take(emulator))
    steps = [later.rates_since(earlier)[1] for earlier, later in itertools.pairwise(samples)]
    return samples, steps


async def wait_for_calls(emulator: Emulator, *, timeout_s: float) -> float:
    """Wait until the emulator saw a first analyze call; return that monotonic time (approx., 50 ms polls)."""
    async with asyncio.timeout(timeout_s):
        while emulator.stats.calls_total == 0:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(POLL_S)
    return time.monotonic()


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3 of proc(5), utime 14 and stime 15 -> indexes 11 and 12 here.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
