"""``ReviewConsole``: the review console assembled from settings and running, as one async context.

It opens the cluster as every command does (``worker.kafka.startup.open_cluster``), starts the group consumer
of the review topics, a group-less consumer that reads original submissions, an idempotent ``acks=all``
producer and an admin client (committed offsets and their metadata), builds the queue, desk and web app, and
serves it on ``MODERATION_REVIEW_HOST``/``PORT``. The image fetcher, the clocks and the lease-id generator can
be injected (the demo gives its local https file server; tests give a fake clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from worker.clock import Clock
from worker.content.fetch import GuardedFetcher
from worker.contracts import Contracts
from worker.errors import ConfigurationError
from worker.kafka.clients import compression_codec
from worker.kafka.startup import open_cluster, start_explained
from worker.review.auth import Authenticator, ProxyTrust, TokenBook, TokenFileError
from worker.review.desk import Banner, ReviewDesk
from worker.review.images import GuardedImageFetcher, ImageFetcher, ItemImages, SubmissionLocator, WebFetcher
from worker.review.items import ItemKind
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ReviewQueue, Role, new_lease_id
from worker.review.settings import ReviewSettings
from worker.review.source import ReviewSource
from worker.review.throttle import TokenGuesses
from worker.review.verdicts import ReasonLabels, ReviewTopics
from worker.review.web import ReviewWeb
from worker.settings import Settings


def load_tokens(review: ReviewSettings) -> TokenBook:
    """The token file's tokens (none without one); ``ConfigurationError`` naming the file and line."""
    if review.tokens_file is None:
        return TokenBook(())
    try:
        return TokenBook.parse(review.tokens_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"MODERATION_REVIEW_TOKENS_FILE: cannot read {review.tokens_file} ({exc.strerror})"
        ) from None
    except TokenFileError as exc:
        raise ConfigurationError(f"MODERATION_REVIEW_TOKENS_FILE {review.tokens_file}: {exc}") from None


def proxy_trust(review: ReviewSettings) -> ProxyTrust | None:
    """The trusted proxy of the settings, or ``None``; ``ConfigurationError`` for a malformed address."""
    if not review.trusted_proxies:
        return None
    try:
        return ProxyTrust.of(review.trusted_proxies, review.proxy_user_header, review.proxy_leads)
    except ValueError as exc:
        raise ConfigurationError(f"MODERATION_REVIEW_TRUSTED_PROXIES: {exc}") from None


class ReviewConsole:
    """The running console; ``url`` is where it listens once entered. ``source.assigned`` is set when the
    group gave it partitions."""

    def __init__(
        self,
        settings: Settings,
        review: ReviewSettings,
        *,
        fetcher: ImageFetcher | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        lease_ids: Callable[[], str] = new_lease_id,
    ) -> None:
        self._settings = settings
        self._review = review
        self._fetcher = fetcher
        self._clock = clock
        self._wall_clock = wall_clock
        self._lease_ids = lease_ids
        self._stack = AsyncExitStack()
        self.url = ""
        self.queue = ReviewQueue(clock, lease_s=review.lease_s, lease_ids=lease_ids)
        self.registry = CollectorRegistry()
        self.source: ReviewSource | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def wait(self) -> None:
        """Until the consumer stops (it only stops on a fatal error, which is raised here)."""
        if self._task is not None:
            await self._task

    def _web_fetcher(self) -> WebFetcher:
        """The worker's guarded fetch under the console's limits, following no redirect; with
        ``MODERATION_BLOB_AUTH=entra`` blobs on the account hosts are read with the worker's identity, as the
        worker read them (their URLs carry no SAS, so an anonymous GET would be refused)."""
        settings, review = self._settings, self._review
        web_fetcher = GuardedFetcher(
            max_bytes=review.image_max_bytes, timeout_s=review.image_timeout_s, max_redirects=0
        )
        if settings.blob_auth != "entra":
            return web_fetcher
        # The content extra (azure-storage-blob) is needed only with blob identities, as for the worker.
        from worker.content import blob  # noqa: PLC0415

        try:
            hosts = blob.account_hosts(settings.blob_account_hosts)
        except ValueError as exc:
            raise ConfigurationError(f"MODERATION_BLOB_ACCOUNT_HOSTS: {exc}") from None
        credential = blob.default_blob_credential()
        self._stack.push_async_callback(credential.close)
        reader = blob.BlobReader(
            credential, max_bytes=review.image_max_bytes, timeout_s=review.image_timeout_s
        )
        return blob.BlobOrWebFetcher(reader, web_fetcher, hosts)

    async def _start(self) -> None:
        settings, review = self._settings, self._review
        tokens, proxy = load_tokens(review), proxy_trust(review)
        key = review.session_key.get_secret_value().encode() or secrets.token_bytes(32)
        auth = Authenticator(tokens, key=key, clock=self._wall_clock, session_s=review.session_s, proxy=proxy)
        contracts = Contracts.load()
        ban = _BanSetup(review, settings.hash_banks_topic) if review.ban_bank else None
        options = await self._stack.enter_async_context(open_cluster(settings))
        security = settings.kafka_security()
        client_id = f"moderation-review-{os.getpid()}"
        kwargs = options.client_kwargs()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=review.group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kwargs,
        )
        reader = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            client_id=f"{client_id}-reader",
            enable_auto_commit=False,
            **kwargs,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type=compression_codec(settings),
            client_id=client_id,
            **kwargs,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id=f"{client_id}-admin", **kwargs
        )
        for client, stop in (
            (producer, producer.stop),
            (reader, reader.stop),
            (admin, admin.close),
            (consumer, consumer.stop),
        ):
            self._stack.push_async_callback(stop)
            await start_explained(client.start, settings.bootstrap_servers, security, options)
        kinds = {
            settings.review_topic: ItemKind.NEEDS_REVIEW,
            review.audit_topic: ItemKind.AUDIT,
            review.escalated_topic: ItemKind.ESCALATED,
        }
        self.source = ReviewSource(consumer, admin, self.queue, group_id=review.group_id, kinds=kinds)
        metrics = ReviewMetrics(self.registry, self.queue, self._wall_clock)
        topics = ReviewTopics(
            settings.approved_topic, settings.rejected_topic, review.decisions_topic, review.escalated_topic
        )
        fetcher = self._fetcher
        if fetcher is None:
            guarded = GuardedImageFetcher(self._web_fetcher())
            self._stack.push_async_callback(guarded.aclose)
            fetcher = guarded
        images = ItemImages(SubmissionLocator(reader, contracts, timeout_s=review.image_timeout_s), fetcher)
        desk = ReviewDesk(
            self.queue,
            producer,
            self.source,
            metrics,
            labels=ReasonLabels(review.approve_reasons, review.reject_reasons),
            topics=topics,
            clock=self._clock,
            wall_clock=self._wall_clock,
            banner=None if ban is None else ban.banner(images),
            ban_role=Role(review.ban_role),
        )
        self._task = asyncio.create_task(self.source.run(), name="review-source")
        self._stack.push_async_callback(_cancel, self._task)
        routes = ReviewWeb(
            desk,
            images,
            auth,
            metrics,
            self.registry,
            origins=review.public_origins,
            secure_cookies=review.secure_cookies,
            session_s=review.session_s,
            healthy=self.source.assigned.is_set,
            guesses=TokenGuesses(self._clock),
        )
        runner = web.AppRunner(routes.app(), access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, review.host, review.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}"


class _BanSetup:
    """The ban bank, checked before anything connects; ``banner`` builds the desk's ``ImageBanner``."""

    def __init__(self, review: ReviewSettings, topic: str) -> None:
        try:  # the content extra (pdqhash, Pillow, numpy) is needed only to ban
            from worker.review import ban  # noqa: PLC0415
        except ImportError as exc:
            raise ConfigurationError("MODERATION_REVIEW_BAN_BANK needs the `content` extra") from exc
        self._module = ban
        self._bank = ban.ban_bank(review.ban_bank, review.ban_pdq_threshold)
        self._topic = topic

    def banner(self, images: ItemImages) -> Banner:
        return self._module.ImageBanner(images, self._bank, topic=self._topic)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def serve_console(
    settings: Settings, review: ReviewSettings, *, announce: Callable[[str], None]
) -> None:
    """Run the console until SIGTERM or SIGINT; ``announce`` gets its URL once it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with ReviewConsole(settings, review) as console:
        announce(console.url)
        waiting = asyncio.create_task(_until(stop))
        running = asyncio.create_task(console.wait())
        done, _ = await asyncio.wait({waiting, running}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, running):
            if task not in done:
                await _cancel(task)
        if running in done:
            running.result()  # a fatal consumer error stops the console: raise it


async def _until(event: asyncio.Event) -> None:
    await event.wait()
