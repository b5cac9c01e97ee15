"""Known content as the settings ask for it: the guarded fetcher, the hash banks (files, and the bank topic
followed while the worker runs), the analysis cache (and the cache topic it shares) and the step the
moderator calls.

The runner builds a ``KnownContentSetup`` only in worker-fetch mode (``MODERATION_IMAGE_FETCH=worker``), so
the ``content`` extra (numpy, Pillow, pdqhash) is needed only then. Bank files that cannot be read stop the
start (``ConfigurationError``); with ``MODERATION_HASH_BANKS_FROM_TOPIC`` the worker reads the bank topic to
its end before it consumes a submission, so an image banked before the start is never analyzed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from worker.content.bank_source import BankUpdates, follow_compacted_topic, load_bank_files
from worker.content.banks import HashBanks
from worker.content.blob import BlobOrWebFetcher, BlobReader, account_hosts, default_blob_credential
from worker.content.cache import AnalysisCache
from worker.content.fetch import GuardedFetcher
from worker.content.hashes import content_hashes
from worker.content.known import GuardedDataAnalysis, KnownContentStep
from worker.errors import ConfigurationError
from worker.kafka.security import ConnectionOptions
from worker.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)


def _report_stop(task: asyncio.Task[None]) -> None:
    """A follower ends only when cancelled at shutdown; anything else is logged: its topic's changes stop
    arriving (the banks and cache keep what they have)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("topic_follower_stopped", extra={"task": task.get_name(), "error": repr(task.exception())})


def analyzer_version(settings: Settings) -> str:
    """What a cached analysis is valid for: the analyzer and the features it was asked for."""
    return f"{settings.analyzer}:{'+'.join(settings.visual_features)}"


class KnownContentSetup:
    """Known content for one replica: ``start`` it once Kafka is reachable, ``aclose`` it last."""

    def __init__(
        self,
        settings: Settings,
        analyzer: GuardedDataAnalysis,
        *,
        blob_credential: Callable[[], AsyncTokenCredential] = default_blob_credential,
    ) -> None:
        """``blob_credential`` makes the identity blobs are read with (``MODERATION_BLOB_AUTH=entra``
        only); ``ConfigurationError`` for an account host that is not a bare host name."""
        self._settings = settings
        self.fetcher: GuardedFetcher | BlobOrWebFetcher = GuardedFetcher(
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
        )
        self._credential: AsyncTokenCredential | None = None
        if settings.blob_auth == "entra":
            try:
                hosts = account_hosts(settings.blob_account_hosts)
            except ValueError as exc:
                raise ConfigurationError(f"MODERATION_BLOB_ACCOUNT_HOSTS: {exc}") from None
            self._credential = blob_credential()
            reader = BlobReader(
                self._credential, max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s
            )
            self.fetcher = BlobOrWebFetcher(reader, self.fetcher, hosts)
        self.banks = HashBanks()
        load_bank_files(settings.hash_bank_files, self.banks)
        self.cache: AnalysisCache | None = None
        if settings.analysis_cache_size:
            self.cache = AnalysisCache(
                max_entries=settings.analysis_cache_size,
                ttl_s=settings.analysis_cache_ttl_s,
                version=analyzer_version(settings),
            )
        self.step = KnownContentStep(
            self.fetcher,
            analyzer,
            hash_image=content_hashes,
            banks=self.banks,
            cache=self.cache,
            cache_topic=settings.analysis_cache_topic
            if self.cache and settings.analysis_cache_shared
            else None,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, options: ConnectionOptions) -> None:
        """Follow the cache topic (when shared: in the background) and the bank topic (when configured),
        returning once what the bank topic held at start is applied.

        Raises ``ConfigurationError`` when the bank topic cannot be read to its end within
        ``MODERATION_KAFKA_STARTUP_TIMEOUT_S``.
        """
        settings = self._settings
        if self.cache is not None and settings.analysis_cache_shared:
            follow_cache = follow_compacted_topic(
                settings.bootstrap_servers, settings.analysis_cache_topic, self.cache, options=options
            )
            cache_follower = asyncio.create_task(follow_cache, name="analysis-cache-follower")
            cache_follower.add_done_callback(_report_stop)
            self._tasks.append(cache_follower)
        if not settings.hash_banks_from_topic:
            return
        caught_up = asyncio.Event()
        follower = asyncio.create_task(
            follow_compacted_topic(
                settings.bootstrap_servers,
                settings.hash_banks_topic,
                BankUpdates(self.banks),
                options=options,
                on_caught_up=caught_up.set,
            ),
            name="hash-bank-follower",
        )
        self._tasks.append(follower)
        follower.add_done_callback(_report_stop)
        waiter = asyncio.create_task(caught_up.wait())
        done, _ = await asyncio.wait(
            {waiter, follower},
            timeout=max(settings.kafka_startup_timeout_s, 1.0),
            return_when=asyncio.FIRST_COMPLETED,
        )
        waiter.cancel()
        if follower in done:
            follower.result()  # raises what stopped it
        if waiter not in done:
            raise ConfigurationError(
                f"{settings.hash_banks_topic}: the hash-bank topic could not be read to its end "
                f"within {settings.kafka_startup_timeout_s:g} s"
            )

    async def aclose(self) -> None:
        """Stop following the bank topic, close the fetcher's connections and the blob identity."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.fetcher.aclose()
        if self._credential is not None:
            await self._credential.close()
