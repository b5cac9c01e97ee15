"""Shared pieces of the end-to-end tests: submissions with known expected routes, the emulator script that
produces them, worker settings on per-test topics, and the ledger that checks where every id ended up.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka_helpers import create_topics, read_all
from worker.settings import Settings

IMAGE_HOST = "https://images.example.com"
#: emulator fixtures: one script per image kind; URLs carry a SAS-like query that the emulator ignores
SCRIPTS: dict[str, object] = {
    f"{IMAGE_HOST}/approved.jpg": {"tags": [["cat", 0.97], ["indoor", 0.9]]},
    f"{IMAGE_HOST}/rejected.jpg": {"tags": [["weapon", 0.95], ["person", 0.8]]},
    f"{IMAGE_HOST}/review.jpg": {"tags": [["knife", 0.8], ["kitchen", 0.7]]},
    f"{IMAGE_HOST}/broken.jpg": {"error": "InvalidImageFormat"},
}
#: expected output route of each image kind under the bundled default policy
EXPECTED_ROUTE = {
    "approved": "approved",
    "rejected": "rejected",
    "review": "needs-review",
    "broken": "needs-review",
}
ROUTES = ("approved", "needs-review", "rejected", "dead-letter")


@dataclass(frozen=True)
class Submissions:
    """Input records and, for each id (= record key), the route it must end in."""

    records: list[tuple[bytes, bytes]]
    expected: dict[str, str]

    def expected_counts(self) -> Counter[str]:
        """How many ids each route must receive."""
        return Counter(self.expected.values())


def _malformed(index: int, image_id: str) -> bytes:
    kinds: list[bytes] = [
        b"{not json",
        orjson.dumps({"id": image_id}),  # no image
        orjson.dumps({"id": image_id, "image": {"url": "http://images.example.com/a.jpg"}}),  # not https
        orjson.dumps({"id": image_id, "image": {"url": "https://10.0.0.7/a.jpg"}}),  # private address
        b"\xff\xfe\x00garbage",
        orjson.dumps(
            {"id": image_id, "image": {"url": f"{IMAGE_HOST}/a.jpg"}, "pad": "x" * 70_000}
        ),  # oversized
    ]
    return kinds[index % len(kinds)]


def make_submissions(
    count: int, *, malformed_every: int = 16, seed: int = 7, prefix: str = "img"
) -> Submissions:
    """``count`` submissions, every ``malformed_every``-th one malformed (16 -> 6.25 %), the rest a seeded mix
    of the four image kinds."""
    rng = random.Random(seed)
    records: list[tuple[bytes, bytes]] = []
    expected: dict[str, str] = {}
    for index in range(count):
        image_id = f"{prefix}-{index:06d}"
        if index % malformed_every == malformed_every - 1:
            value = _malformed(index // malformed_every, image_id)
            expected[image_id] = "dead-letter"
        else:
            kind = rng.choice(("approved", "approved", "rejected", "review", "broken"))
            url = f"{IMAGE_HOST}/{kind}.jpg?sv=2024&sig=SECRET{index}"
            value = orjson.dumps(
                {"id": image_id, "image": {"url": url}, "submitted_at": "2026-11-26T10:00:00Z"}
            )
            expected[image_id] = EXPECTED_ROUTE[kind]
        records.append((image_id.encode(), value))
    return Submissions(records, expected)


@dataclass(frozen=True)
class Topics:
    """The per-test topic names."""

    prefix: str

    @property
    def input(self) -> str:
        return self.prefix + "submitted"

    def route(self, name: str) -> str:
        """Topic of route ``name`` (one of ``ROUTES``)."""
        return self.prefix + name

    def all(self) -> list[str]:
        return [self.input, *(self.route(name) for name in ROUTES)]

    async def create(self, bootstrap: str, partitions: int) -> None:
        await create_topics(bootstrap, self.all(), partitions)


def worker_environment(
    bootstrap: str, topics: Topics, group_id: str, endpoint: str, key: str, **extra: str
) -> dict[str, str]:
    """``MODERATION_*`` variables for a worker on the test's topics and the emulator."""
    env = {
        "MODERATION_BOOTSTRAP_SERVERS": bootstrap,
        "MODERATION_GROUP_ID": group_id,
        "MODERATION_INPUT_TOPIC": topics.input,
        "MODERATION_APPROVED_TOPIC": topics.route("approved"),
        "MODERATION_REVIEW_TOPIC": topics.route("needs-review"),
        "MODERATION_REJECTED_TOPIC": topics.route("rejected"),
        "MODERATION_DEAD_LETTER_TOPIC": topics.route("dead-letter"),
        "MODERATION_AZURE_ENDPOINT": endpoint,
        "MODERATION_AZURE_KEY": key,
        "MODERATION_QUOTA_CALLS_PER_S": "100000",
        "MODERATION_METRICS_PORT": "0",
        "MODERATION_METRICS_HOST": "127.0.0.1",
        "MODERATION_DRAIN_TIMEOUT_S": "15",
    }
    return env | {f"MODERATION_{name.upper()}": value for name, value in extra.items()}


def worker_settings(env: Mapping[str, str]) -> Settings:
    """The settings a worker process would read from ``env``."""
    return Settings.from_env(env)


async def ledger(
    bootstrap: str, topics: Topics, *, expected_total: int, idle_s: float = 5.0
) -> dict[str, list[str]]:
    """For each record key seen in any output topic, the routes it appeared in (one entry per record)."""
    seen: dict[str, list[str]] = {}
    remaining = expected_total
    for name in ROUTES:
        records = await read_all(
            bootstrap, topics.route(name), expected=None, idle_s=idle_s if remaining else 0.5
        )
        for record in records:
            seen.setdefault((record.key or b"").decode(), []).append(name)
        remaining = max(remaining - len(records), 0)
    return seen


async def wait_for_routed(bootstrap: str, topics: Topics, count: int, *, timeout_s: float) -> None:
    """Return once the output topics hold at least ``count`` records in total (raises TimeoutError)."""
    names = [topics.route(name) for name in ROUTES]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            # Polling: the broker offers no notification of new records.
            while sum((await consumer.end_offsets(partitions)).values()) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


@asynccontextmanager
async def worker_process(env: Mapping[str, str], log_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``moderation-worker run`` as a child process with ``env``, its stderr appended to ``log_path`` (a file,
    not a pipe: an unread pipe would block the worker once full); killed at exit if still running."""
    full_env = dict(os.environ) | dict(env) | {"NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker.cli",
            "run",
            env=full_env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


async def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1) -> None:
    """Return once ``predicate()`` holds, polling observable state (raises TimeoutError at the deadline)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the state polled (metrics, files) offers no notification
            await asyncio.sleep(interval_s)


def duplicates(seen: Mapping[str, Sequence[str]]) -> int:
    """How many extra output records the ledger holds beyond one per id."""
    return sum(len(routes) - 1 for routes in seen.values())
