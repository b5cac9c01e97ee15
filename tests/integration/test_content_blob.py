"""Blob references read with an identity, against Azurite over https with ``--oauth basic``: the worker's
``BlobReader`` holds only a token credential (no account key, no SAS), the moderator decides the image
through the vision emulator and the real SDK, and every refusal carries its typed reason.

``StorageIdentity`` stands in for ``DefaultAzureCredential`` and records the scopes it was asked for, so a
test can show that a URL outside the allowlist never made a token exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.azurite import RESOLVE, STORAGE_HOST, Azurite, NoIdentity, StorageIdentity
from tests.integration.content_harness import TOPICS, fetch_mode_moderator, image_store, jpeg
from tests.integration.content_harness import moderate as _moderate
from worker.content.blob import BlobReader, account_hosts
from worker.content.fetch import FetchedImage, FetchRefusal, FetchRefused
from worker.dev.emulator.server import Emulator
from worker.dev.tlsfiles import Certificate, HttpsFileServer
from worker.moderation import Moderator

pytestmark = pytest.mark.integration

CONTAINER = "submissions"
GREEN = jpeg((20, 200, 40))
LARGE = jpeg((200, 200, 200), size=(64, 64)) + bytes(8192)
HOSTS = account_hosts([STORAGE_HOST])
STORAGE_SCOPE = ("https://storage.azure.com/.default",)


@pytest.fixture(scope="module")
async def blobs(azurite: Azurite) -> Azurite:
    """The private container holding a JPEG, an oversize JPEG and an HTML page."""
    await azurite.upload(
        CONTAINER,
        {
            "green.jpg": (GREEN, "image/jpeg"),
            "large.jpg": (LARGE, "image/jpeg"),
            "page.html": (b"<html></html>", "text/html"),
        },
    )
    return azurite


def _reader(azurite: Azurite, identity: StorageIdentity, *, max_bytes: int = 20 * 1024 * 1024) -> BlobReader:
    return BlobReader(
        identity, max_bytes=max_bytes, timeout_s=10.0, ca_file=azurite.certificate.cert_file, resolve=RESOLVE
    )


async def _read(
    azurite: Azurite, identity: StorageIdentity, url: str, *, max_bytes: int = 1 << 24
) -> FetchedImage:
    reader = _reader(azurite, identity, max_bytes=max_bytes)
    try:
        return await reader.fetch(url)
    finally:
        await reader.aclose()


async def _refusal(
    azurite: Azurite, identity: StorageIdentity, url: str, *, max_bytes: int = 1 << 24
) -> FetchRefused:
    with pytest.raises(FetchRefused) as refused:
        await _read(azurite, identity, url, max_bytes=max_bytes)
    return refused.value


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[HttpsFileServer, Certificate]]:
    """A plain https image store (not a storage account) holding ``red.jpg``."""
    async with image_store(tmp_path, {"red.jpg": jpeg((220, 20, 20))}) as served:
        yield served


@pytest.fixture
def identity() -> StorageIdentity:
    """The worker's identity for one test."""
    return StorageIdentity()


@pytest.fixture
async def moderator(
    emulator: Emulator,
    blobs: Azurite,
    identity: StorageIdentity,
    store: tuple[HttpsFileServer, Certificate],
) -> AsyncIterator[Moderator]:
    """A moderator in worker-fetch mode reading ``STORAGE_HOST`` (Azurite) with ``identity``."""
    async with fetch_mode_moderator(
        emulator.endpoint, store[1], blob_reader=_reader(blobs, identity), blob_hosts=HOSTS
    ) as built:
        yield built


async def test_an_uploaded_image_is_read_with_the_identity_and_decided(
    moderator: Moderator, emulator: Emulator, blobs: Azurite, identity: StorageIdentity
) -> None:
    """Azurite serves the private blob to the bearer token alone; the emulator analyzes its bytes once and
    the result carries their hashes: no key and no SAS took part."""
    routed, document = await _moderate(moderator, blobs.blob_url(CONTAINER, "green.jpg"))
    assert ("analyzer", hashlib.sha256(GREEN).hexdigest(), 1) == (
        document["analysis_source"],
        document["content"]["sha256"],
        emulator.stats.calls_total,
    )
    assert routed.topic in (TOPICS.approved, TOPICS.needs_review, TOPICS.rejected)
    assert STORAGE_SCOPE == identity.scopes[0]


async def test_a_missing_blob_is_an_image_error_named_not_found(
    moderator: Moderator, emulator: Emulator, blobs: Azurite
) -> None:
    """No analyzer call; the policy's ``on_image_error`` decides, the reason names ``fetch:not_found``."""
    routed, document = await _moderate(moderator, blobs.blob_url(CONTAINER, "absent.jpg"))
    assert (TOPICS.needs_review, [{"rule": "image_error", "detail": "fetch:not_found"}], 0) == (
        routed.topic,
        document["reasons"],
        emulator.stats.calls_total,
    )


async def test_a_url_outside_the_allowlist_goes_through_the_guarded_fetch_without_a_token(
    moderator: Moderator, store: tuple[HttpsFileServer, Certificate], identity: StorageIdentity
) -> None:
    """The plain https store is read by ``GuardedFetcher``: the identity was never asked for a token, so
    none could reach that host."""
    _routed, document = await _moderate(moderator, store[0].url_for("red.jpg"))
    assert ("analyzer", []) == (document["analysis_source"], identity.scopes)


async def test_a_sas_in_the_url_is_dropped_and_the_identity_reads_the_blob(blobs: Azurite) -> None:
    """An expired, unsigned SAS would be refused if it were sent; the read succeeds on the token alone."""
    url = blobs.blob_url(CONTAINER, "green.jpg") + "?sv=2021-08-06&se=2000-01-01T00%3A00%3A00Z&sp=r&sig=Zm9v"
    assert FetchedImage(GREEN, "image/jpeg") == await _read(blobs, StorageIdentity(), url)


async def test_an_oversize_blob_is_refused_from_its_properties_before_the_download(blobs: Azurite) -> None:
    """The size storage declares is over the cap: refused naming that size, no body requested."""
    refused = await _refusal(blobs, StorageIdentity(), blobs.blob_url(CONTAINER, "large.jpg"), max_bytes=4096)
    assert (FetchRefusal.TOO_LARGE, f"is {len(LARGE)} bytes") == (
        refused.reason,
        refused.message[-len(f"is {len(LARGE)} bytes") :],
    )


async def test_a_missing_container_is_not_found(blobs: Azurite) -> None:
    """Storage answers 404 for the container as for the blob."""
    refused = await _refusal(blobs, StorageIdentity(), blobs.blob_url("no-such-container", "a.jpg"))
    assert FetchRefusal.NOT_FOUND == refused.reason


async def test_a_token_for_another_audience_is_forbidden(blobs: Azurite) -> None:
    """Azurite refuses a token that is not for storage: ``forbidden``, and the message names no token."""
    identity = StorageIdentity(audience="https://vault.azure.net")
    refused = await _refusal(blobs, identity, blobs.blob_url(CONTAINER, "green.jpg"))
    token = (await identity.get_token(*STORAGE_SCOPE)).token
    assert (FetchRefusal.FORBIDDEN, False) == (refused.reason, token in str(refused))


async def test_a_host_without_an_identity_is_forbidden(blobs: Azurite) -> None:
    """No token could be had (no managed identity): ``forbidden`` before storage is asked."""
    refused = await _refusal(blobs, NoIdentity(), blobs.blob_url(CONTAINER, "green.jpg"))
    assert FetchRefusal.FORBIDDEN == refused.reason


async def test_a_blob_that_is_not_an_image_is_refused_by_its_content_type(blobs: Azurite) -> None:
    """The declared type is checked exactly as the web fetch checks it."""
    refused = await _refusal(blobs, StorageIdentity(), blobs.blob_url(CONTAINER, "page.html"))
    assert FetchRefusal.WRONG_CONTENT_TYPE == refused.reason
