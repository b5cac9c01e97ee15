"""Shared pieces of the known-content integration tests: an https image store on the loopback, and a
moderator in worker-fetch mode talking to the vision emulator through the real SDK.

The fetcher's ``AddressPolicy`` allows the store's one address (127.0.0.1) by name; the default stays
public-only. ``NAMES`` resolves the store's host to it and a second host to a private address.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from azure.core.credentials import AzureKeyCredential
from PIL import Image

from tests.fixtures.emulator import TEST_KEY
from worker.analysis.azure import AzureAnalyzer
from worker.analysis.breaker import CircuitBreaker
from worker.analysis.guarded import GuardedAnalyzer
from worker.analysis.limiter import QuotaLimiter
from worker.content.addresses import AddressPolicy
from worker.content.banks import HashBanks
from worker.content.blob import BlobOrWebFetcher, BlobReader
from worker.content.cache import AnalysisCache
from worker.content.fetch import GuardedFetcher, static_resolver
from worker.content.hashes import content_hashes
from worker.content.known import KnownContentStep
from worker.contracts import Contracts
from worker.dev.tlsfiles import Certificate, HttpsFileServer, make_self_signed
from worker.domain import Analysis, Verdict
from worker.moderation import Moderator, RouteTopics
from worker.policy_file import load_default_policy
from worker.records import Routed

HOST = "images.content-test.test"
PRIVATE_HOST = "private.content-test.test"
NAMES = {HOST: ["127.0.0.1"], PRIVATE_HOST: ["10.20.30.40"]}
TOPICS = RouteTopics("approved", "review", "rejected", "dead-letter")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record (``worker.records.ConsumedRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class NoStall:
    """The loop's ``Stall``: nothing here ever runs out of its retry budget."""

    def stall(self) -> None:
        """Unused: the emulator answers at once."""

    def unstall(self) -> None:
        """Unused."""


class Calls:
    """The guarded analyzer's observer, counting nothing: the emulator counts the calls."""

    def call(self, outcome: str, seconds: float, waited_s: float) -> None:
        """Not counted here."""

    def retry(self) -> None:
        """Not counted here."""


@dataclass
class Decisions:
    """The moderator's observer: every verdict and analysis, in order."""

    seen: list[tuple[Verdict, Analysis | None]] = field(default_factory=list)

    def decided(self, verdict: Verdict, analysis: Analysis | None) -> None:
        self.seen.append((verdict, analysis))


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    """A flat JPEG of ``colour``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@asynccontextmanager
async def image_store(
    directory: Path, files: dict[str, bytes]
) -> AsyncIterator[tuple[HttpsFileServer, Certificate]]:
    """An https server for ``HOST`` on 127.0.0.1 serving ``files``."""
    certificate = await make_self_signed(HOST, directory / "tls")
    (directory / "files").mkdir()
    for name, data in files.items():
        (directory / "files" / name).write_bytes(data)
    async with HttpsFileServer(directory / "files", certificate) as server:
        yield server, certificate


@asynccontextmanager
async def fetch_mode_moderator(
    endpoint: str,
    certificate: Certificate,
    *,
    banks: HashBanks | None = None,
    cache: AnalysisCache | None = None,
    cache_topic: str | None = None,
    quota_per_s: float = 100.0,
    blob_reader: BlobReader | None = None,
    blob_hosts: frozenset[str] = frozenset(),
) -> AsyncIterator[Moderator]:
    """One replica's moderator in worker-fetch mode against the emulator at ``endpoint``, with its own
    analyzer, limiter and fetcher; with ``blob_reader``, URLs on ``blob_hosts`` are read through it
    (``BlobOrWebFetcher``, as ``MODERATION_BLOB_AUTH=entra`` wires it)."""
    analyzer = AzureAnalyzer(endpoint, AzureKeyCredential(TEST_KEY))
    guarded = GuardedAnalyzer(
        analyzer,
        QuotaLimiter(quota_per_s),
        CircuitBreaker(failure_threshold=5, window_s=10.0, open_for_s=5.0, clock=lambda: 0.0),
        Calls(),
        budget_s=5.0,
    )
    fetcher = GuardedFetcher(
        policy=AddressPolicy(exceptions=frozenset({ipaddress.ip_address("127.0.0.1")})),
        resolve=static_resolver(NAMES),
        ssl_context=certificate.client_context(),
    )
    dispatch = BlobOrWebFetcher(blob_reader, fetcher, blob_hosts) if blob_reader is not None else fetcher
    step = KnownContentStep(
        dispatch, guarded, hash_image=content_hashes, banks=banks, cache=cache, cache_topic=cache_topic
    )
    contracts = Contracts.load()
    policy = load_default_policy(contracts=contracts)
    try:
        yield Moderator(
            contracts,
            guarded,
            Decisions(),
            topics=TOPICS,
            policy=lambda: policy,
            now=lambda: NOW,
            known_content=step,
        )
    finally:
        await dispatch.aclose()
        await analyzer.aclose()


async def moderate(moderator: Moderator, url: str, offset: int = 0) -> tuple[Routed, dict[str, Any]]:
    """Prepare and complete one submission of ``url``: the routed record and its decoded value."""
    value = orjson.dumps({"id": f"img-{offset}", "image": {"url": url}})
    record = Record("images.submitted", 0, offset, 0, b"k", value)
    prepared = moderator.prepare(record)
    if isinstance(prepared, Routed):
        raise AssertionError(f"the submission of {url} was refused: {prepared.value!r}")  # noqa: TRY004
    routed = await moderator.complete(record, prepared, NoStall())
    return routed, orjson.loads(routed.value)
