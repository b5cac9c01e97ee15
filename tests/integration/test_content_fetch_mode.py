"""Worker-side fetch end to end: a local https image store, the vision emulator through the real SDK with
the image's bytes in the body, and the moderator deciding on what came back.

The emulator's counters prove where the quota went: one call per analyzed image, none for a refused fetch
or a bank match.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.content_harness import (
    HOST,
    PRIVATE_HOST,
    TOPICS,
    fetch_mode_moderator,
    image_store,
    jpeg,
)
from tests.integration.content_harness import moderate as _moderate
from worker.content.banks import DEFAULT_PDQ_THRESHOLD, Bank, BankAction, HashBanks
from worker.content.hashes import content_hashes
from worker.dev.demo.samples import skimage_data_dir
from worker.dev.emulator.server import Emulator
from worker.dev.tlsfiles import Certificate, HttpsFileServer
from worker.moderation import Moderator

pytestmark = pytest.mark.integration

RED = jpeg((220, 20, 20))


def _reencoded(image: bytes) -> bytes:
    """The picture at half size as a JPEG: other bytes, the same picture."""
    with Image.open(io.BytesIO(image)) as picture:
        buffer = io.BytesIO()
        picture.resize((picture.width // 2, picture.height // 2)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


BANNED = (skimage_data_dir() / "astronaut.png").read_bytes()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[HttpsFileServer, Certificate]]:
    """An https image store on the loopback holding ``red.jpg``, ``page.html`` and ``banned-copy.jpg``."""
    files = {"red.jpg": RED, "page.html": b"<html></html>", "banned-copy.jpg": _reencoded(BANNED)}
    async with image_store(tmp_path, files) as served:
        yield served


@pytest.fixture
async def moderator(
    emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> AsyncIterator[Moderator]:
    """A moderator in worker-fetch mode with one bank holding the astronaut photo's PDQ hash."""
    banks = HashBanks()
    banks.define(Bank("known-bad", BankAction.REJECT))
    banks.add("known-bad", pdq=content_hashes(BANNED).pdq)
    async with fetch_mode_moderator(emulator.endpoint, store[1], banks=banks) as built:
        yield built


async def test_a_fetched_image_is_analyzed_from_its_bytes(
    moderator: Moderator, emulator: Emulator, store: tuple[HttpsFileServer, Certificate]
) -> None:
    """The worker fetches the image and posts its bytes: Azure never sees the URL, the result says the
    analysis came from the analyzer, and the emulator counts one call."""
    server, _ = store
    routed, document = await _moderate(moderator, server.url_for("red.jpg"))
    expected_sha256 = hashlib.sha256(RED).hexdigest()
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
