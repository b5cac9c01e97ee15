"""Hash banks on a real broker: ``moderation-worker bank add`` publishes, and every replica following the
bank topic matches the image from then on, without a restart; a tombstone takes it out again everywhere.

Each "replica" here is what a worker runs for its banks: its own ``HashBanks`` filled by
``follow_compacted_topic`` (no consumer group: every replica reads the whole topic).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fixtures.kafka import NewTopics
from worker.cli import main
from worker.content.bank_source import BankUpdates, follow_compacted_topic, publish_bank_records
from worker.content.banks import Bank, BankAction, HashBanks, HashKind
from worker.content.hashes import content_hashes
from worker.content.setup import KnownContentSetup
from worker.dev.demo.samples import skimage_data_dir
from worker.domain import Analysis
from worker.kafka.security import ConnectionOptions
from worker.kafka_settings import SecurityProtocol
from worker.records import ContentHashes, Stall
from worker.settings import Settings

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
PLAINTEXT = ConnectionOptions(SecurityProtocol.PLAINTEXT)


class ObservedUpdates(BankUpdates):
    """``BankUpdates`` that wakes waiters after every record it applies."""

    def __init__(self, banks: HashBanks) -> None:
        super().__init__(banks)
        self.changed = asyncio.Condition()

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        applied = super().apply(key, value)
        asyncio.get_running_loop().create_task(self._notify())
        return applied

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``DEADLINE_S``."""
        async with asyncio.timeout(DEADLINE_S), self.changed:
            await self.changed.wait_for(predicate)


class Replica:
    """One replica's banks, following the topic."""

    def __init__(self) -> None:
        self.banks = HashBanks()
        self.updates = ObservedUpdates(self.banks)

    def matches(self, hashes: ContentHashes) -> tuple[str, HashKind] | None:
        match = self.banks.match(hashes)
        return None if match is None else (match.bank.name, match.kind)


def _holds(replica: Replica, hashes: int) -> Callable[[], bool]:
    return lambda: replica.banks.size() == hashes


@pytest.fixture
async def bank_topic(new_topics: NewTopics) -> str:
    """A fresh bank topic for this test."""
    [topic] = await new_topics("hash-banks")
    return topic


@pytest.fixture
async def replicas(kafka_bootstrap: str, bank_topic: str) -> AsyncIterator[list[Replica]]:
    """Three replicas following ``bank_topic`` from its start."""
    replicas = [Replica() for _ in range(3)]
    tasks = [
        asyncio.create_task(
            follow_compacted_topic(kafka_bootstrap, bank_topic, replica.updates, options=PLAINTEXT)
        )
        for replica in replicas
    ]
    yield replicas
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_bank_add_reaches_every_replica_while_it_runs(
    kafka_bootstrap: str,
    bank_topic: str,
    replicas: list[Replica],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command publishes the bank and the image; all three replicas then reject the image and a
    re-encoded copy of it (PDQ), and a tombstone removes it from all three."""
    photo = (skimage_data_dir() / "coffee.png").read_bytes()
    path = tmp_path / "coffee.png"
    path.write_bytes(photo)
    monkeypatch.setenv("MODERATION_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("MODERATION_HASH_BANKS_TOPIC", bank_topic)
    hashes = content_hashes(photo)
    before = [replica.matches(hashes) for replica in replicas]

    exit_code = await asyncio.to_thread(
        main, ["bank", "add", "--bank", "known-bad", "--action", "reject", str(path)]
    )
    for replica in replicas:
        await replica.updates.until(_holds(replica, 2))
    near_copy = ContentHashes("0" * 64, hashes.pdq, hashes.pdq_quality)
    assert (0, [None] * 3) == (exit_code, before)
    assert [("known-bad", HashKind.SHA256)] * 3 == [replica.matches(hashes) for replica in replicas]
    assert [("known-bad", HashKind.PDQ)] * 3 == [replica.matches(near_copy) for replica in replicas]
    assert [(Bank("known-bad", BankAction.REJECT),)] * 3 == [replica.banks.banks for replica in replicas]

    settings = Settings.defaults(bootstrap_servers=kafka_bootstrap, hash_banks_topic=bank_topic)
    await publish_bank_records(settings, [(f"known-bad/{hashes.sha256}".encode(), None)])
    for replica in replicas:
        await replica.updates.until(_holds(replica, 0))
    assert [None] * 3 == [replica.matches(hashes) for replica in replicas]


async def test_a_replica_started_later_reads_the_banks_from_the_start(
    kafka_bootstrap: str, bank_topic: str
) -> None:
    """A bank published before a replica starts is there once it has caught up (``on_caught_up``)."""
    settings = Settings.defaults(bootstrap_servers=kafka_bootstrap, hash_banks_topic=bank_topic)
    sha256 = "ab" * 32
    await publish_bank_records(
        settings,
        [
            (b"catalogue", b'{"bank": "catalogue", "action": "approve", "pdq_threshold": 10}'),
            (f"catalogue/{sha256}".encode(), f'{{"bank": "catalogue", "sha256": "{sha256}"}}'.encode()),
        ],
    )
    replica = Replica()
    caught_up = asyncio.Event()
    task = asyncio.create_task(
        follow_compacted_topic(
            kafka_bootstrap,
            bank_topic,
            replica.updates,
            options=PLAINTEXT,
            on_caught_up=caught_up.set,
        )
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            await caught_up.wait()
        assert ("catalogue", HashKind.SHA256) == replica.matches(ContentHashes(sha256))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_worker_setup_reads_the_bank_topic_before_it_starts_consuming(
    kafka_bootstrap: str, bank_topic: str, tmp_path: Path
) -> None:
    """``KnownContentSetup.start`` (what the runner awaits before its consumer exists) returns only once the
    topic's banks are applied, on top of the bank files."""
    topic_sha256, file_sha256 = "cd" * 32, "ef" * 32
    bank_file = tmp_path / "catalogue.json"
    bank_file.write_text(
        f'{{"bank": "catalogue", "action": "approve", "hashes": [{{"sha256": "{file_sha256}"}}]}}'
    )
    settings = Settings.defaults(
        bootstrap_servers=kafka_bootstrap,
        hash_banks_topic=bank_topic,
        hash_banks_from_topic=True,
        hash_bank_files=str(bank_file),
        image_fetch="worker",
    )
    await publish_bank_records(
        settings,
        [
            (b"known-bad", b'{"bank": "known-bad", "action": "reject"}'),
            (
                f"known-bad/{topic_sha256}".encode(),
                f'{{"bank": "known-bad", "sha256": "{topic_sha256}"}}'.encode(),
            ),
        ],
    )
    setup = KnownContentSetup(settings, NoAnalyzer())
    try:
        await setup.start(PLAINTEXT)
        matches = [setup.banks.match(ContentHashes(sha256)) for sha256 in (topic_sha256, file_sha256)]
    finally:
        await setup.aclose()
    assert [("known-bad", HashKind.SHA256), ("catalogue", HashKind.SHA256)] == [
        (match.bank.name, match.kind) if match else None for match in matches
    ]


class NoAnalyzer:
    """The guarded analyzer the step would call; never reached here."""

    async def analyze_guarded_data(self, image_data: bytes, stall: Stall) -> Analysis:  # noqa: ARG002
        raise AssertionError("no image is analyzed in this test")
