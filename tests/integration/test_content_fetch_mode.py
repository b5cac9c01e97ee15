"""Worker-side fetch end to end: a local https image store, the vision emulator through the real SDK with
the image's bytes in the body, and the moderator deciding on what came back.

The emulator's counters prove where the quota went: one call per analyzed image, none for a refused fetch.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.core.credentials import AzureKeyCredential
from PIL import Image

from tests.fixtures.emulator import TEST_KEY
from worker.analysis.azure import AzureAnalyzer
from worker.analysis.breaker import CircuitBreaker
from worker.analysis.guarded import GuardedAnalyzer
from worker.analysis.limiter import QuotaLimiter
from worker.content.addresses import AddressPolicy
from worker.content.banks import DEFAULT_PDQ_THRESHOLD, Bank, BankAction, HashBanks
from worker.content.fetch import GuardedFetcher, static_resolver
from worker.content.hashes import content_hashes
from worker.content.known import KnownContentStep
from worker.contracts import Contracts
from worker.dev.demo.samples import skimage_data_dir
from worker.dev.emulator.server import Emulator
from worker.dev.tlsfiles import Certificate, HttpsFileServer, make_self_signed
from worker.domain import Analysis, Verdict
from worker.moderation import Moderator, RouteTopics
from worker.policy_file import load_default_policy
from worker.records import Routed

pytestmark = pytest.mark.integration

HOST = "images.content-test.test"
PRIVATE_HOST = "private.content-test.test"
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
    """The guarded analyzer's observer, counting nothing."""

    def call(self, outcome: str, seconds: float, waited_s: float) -> None:
        """Not counted here: the emulator counts the calls."""

    def retry(self) -> None:
        """Not counted here."""


class Decisions:
    """The moderator's observer: every verdict, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Verdict, Analysis | None]] = []

    def decided(self, verdict: Verdict, analysis: Analysis | None) -> None:
        self.seen.append((verdict, analysis))


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _banned() -> bytes:
    """The demo's astronaut photo, as scikit-image ships it."""
    return (skimage_data_dir() / "astronaut.png").read_bytes()


def _reencoded(image: bytes) -> bytes:
    """The picture at half size as a JPEG: other bytes, the same picture."""
    with Image.open(io.BytesIO(image)) as picture:
        buffer = io.BytesIO()
        picture.resize((picture.width // 2, picture.height // 2)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


BANNED = _banned()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[HttpsFileServer, Certificate]]:
    """An https image store on the loopback holding ``red.jpg``, ``page.html`` and ``banned-copy.jpg``."""
    certificate = await make_self_signed(HOST, tmp_path / "tls")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "red.jpg").write_bytes(_jpeg((220, 20, 20)))
    (tmp_path / "files" / "page.html").write_text("<html></html>")
    (tmp_path / "files" / "banned-copy.jpg").write_bytes(_reencoded(BANNED))
    async with HttpsFileServer(tmp_path / "files", certificate) as server:
        yield server, certificate


@pytest.fixture
async def moderator(
    emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> AsyncIterator[Moderator]:
    """A moderator in worker-fetch mode: the guarded fetcher allows the store's one address only."""
    _server, certificate = store
    analyzer = AzureAnalyzer(emulator.endpoint, AzureKeyCredential(TEST_KEY))
    guarded = GuardedAnalyzer(
        analyzer,
        QuotaLimiter(100.0),
        CircuitBreaker(failure_threshold=5, window_s=10.0, open_for_s=5.0, clock=lambda: 0.0),
        Calls(),
        budget_s=5.0,
    )
    banks = HashBanks()
    banks.define(Bank("known-bad", BankAction.REJECT))
    banks.add("known-bad", pdq=content_hashes(BANNED).pdq)
    fetcher = GuardedFetcher(
        policy=AddressPolicy(exceptions=frozenset({ipaddress.ip_address("127.0.0.1")})),
        resolve=static_resolver({HOST: ["127.0.0.1"], PRIVATE_HOST: ["10.20.30.40"]}),
        ssl_context=certificate.client_context(),
    )
    contracts = Contracts.load()
    policy = load_default_policy(contracts=contracts)
    yield Moderator(
        contracts,
        guarded,
        Decisions(),
        topics=TOPICS,
        policy=lambda: policy,
        now=lambda: NOW,
        known_content=KnownContentStep(fetcher, guarded, hash_image=content_hashes, banks=banks),
    )
    await fetcher.aclose()
    await analyzer.aclose()


async def _moderate(moderator: Moderator, url: str, offset: int = 0) -> tuple[Routed, dict[str, Any]]:
    value = orjson.dumps({"id": f"img-{offset}", "image": {"url": url}})
    record = Record("images.submitted", 0, offset, 0, b"k", value)
    prepared = moderator.prepare(record)
    assert not isinstance(prepared, Routed), "the submission itself is valid"
    routed = await moderator.complete(record, prepared, NoStall())
    return routed, orjson.loads(routed.value)


async def test_a_fetched_image_is_analyzed_from_its_bytes(
    moderator: Moderator, emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """The worker fetches the image and posts its bytes: Azure never sees the URL, the result says the
    analysis came from the analyzer, and the emulator counts one call."""
    server, _ = store
    routed, document = await _moderate(moderator, server.url_for("red.jpg"))
    expected_sha256 = hashlib.sha256(_jpeg((220, 20, 20))).hexdigest()
    assert ("analyzer", 1) == (document["analysis_source"], emulator.stats.calls_total)
    assert (expected_sha256, 64) == (document["content"]["sha256"], len(document["content"]["pdq"]))
    assert routed.topic in (TOPICS.approved, TOPICS.needs_review, TOPICS.rejected)
    assert document["model_version"] is not None


async def test_a_name_resolving_to_a_private_address_is_dead_lettered_without_a_call(
    moderator: Moderator, emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """The URL passed the submission guard (a DNS name), but the fetch guard sees its private address."""
    server, _ = store
    url = server.url_for("red.jpg").replace(HOST, PRIVATE_HOST)
    routed, document = await _moderate(moderator, url)
    assert (TOPICS.dead_letter, "unsafe_url", 0) == (
        routed.topic,
        document["error"]["class"],
        emulator.stats.calls_total,
    )
    assert "address_not_allowed" in document["error"]["message"]


async def test_a_body_that_is_no_image_is_an_image_error_without_a_call(
    moderator: Moderator, emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """A refused body is decided by the policy's ``on_image_error``, its reason named in the detail."""
    server, _ = store
    routed, document = await _moderate(moderator, server.url_for("page.html"))
    assert (TOPICS.needs_review, [{"rule": "image_error", "detail": "fetch:wrong_content_type"}], 0) == (
        routed.topic,
        document["reasons"],
        emulator.stats.calls_total,
    )


async def test_a_banned_picture_is_rejected_by_its_bank_without_a_call(
    moderator: Moderator, emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """A re-encoded, resized copy of a banked picture matches its PDQ hash before the quota: rejected, the
    reason names bank, hash kind and distance, no model version, no analyzer call."""
    server, _ = store
    routed, document = await _moderate(moderator, server.url_for("banned-copy.jpg"))
    [reason] = document["reasons"]
    bank, kind, distance = reason["detail"].split()
    assert (TOPICS.rejected, "hash_bank", "bank=known-bad", "hash=pdq", "bank", None, 0) == (
        routed.topic,
        reason["rule"],
        bank,
        kind,
        document["analysis_source"],
        document["model_version"],
        emulator.stats.calls_total,
    )
    assert int(distance.removeprefix("distance=")) <= DEFAULT_PDQ_THRESHOLD
