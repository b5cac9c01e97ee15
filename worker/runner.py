"""``moderation-worker run``: the composition root that builds the real clients and runs the pipeline.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 3 when a fatal analyzer or Kafka error stopped the worker
(nothing was committed past the failing record). Bad configuration (2) and a cluster that cannot be reached
or refuses the connection settings at start-up (5, ``KafkaConnectionFailed``) are the command line's to
report. docs/configuration.md lists every command's exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from worker import __version__
from worker.analysis.analyzer import Analyzer, ImageDataAnalyzer
from worker.analysis.azure import AzureAnalyzer
from worker.analysis.breaker import CircuitBreaker
from worker.analysis.guarded import GuardedAnalyzer
from worker.analysis.limiter import QuotaLimiter
from worker.contracts import Contracts, DeadLetterReason
from worker.errors import ConfigurationError
from worker.kafka.clients import kafka_clients
from worker.kafka.control import ControlState, follow_control
from worker.kafka.loop import Pipeline, WorkerStopped
from worker.kafka.startup import open_cluster
from worker.moderation import Moderator, RouteTopics
from worker.observability.drift import DriftMonitor, DriftReference, load_reference
from worker.observability.logs import configure_logging
from worker.observability.metrics import Metrics
from worker.observability.observers import CallMetrics, DecisionMetrics, PipelineMetrics, publish_periodically
from worker.observability.ops_server import HealthState, OpsServer
from worker.policy import Policy
from worker.policy_file import load_default_policy, load_policy
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.content.setup import KnownContentSetup

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FATAL = 0, 3


def load_configured_policy(settings: Settings, contracts: Contracts) -> Policy:
    """The policy file named in the settings, or the bundled default."""
    if settings.policy_file is None:
        return load_default_policy(contracts=contracts)
    return load_policy(settings.policy_file, contracts=contracts)


def build_analyzer(settings: Settings) -> Analyzer:
    """The production analyzer the settings ask for (Azure by default, the offline model as an option)."""
    if settings.analyzer == "model":
        from worker.analysis.offline import ModelAnalyzer  # noqa: PLC0415 - optional extra, loaded on demand

        return ModelAnalyzer(
            connect_timeout_s=settings.analyzer_connect_timeout_s, read_timeout_s=settings.analyzer_timeout_s
        )
    credential: object
    if settings.azure_auth == "entra":
        try:
            from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise ConfigurationError(
                "MODERATION_AZURE_AUTH=entra needs the `entra` extra (azure-identity)"
            ) from exc
        credential = DefaultAzureCredential()
    else:
        from azure.core.credentials import AzureKeyCredential  # noqa: PLC0415 - keeps imports next to their use

        credential = AzureKeyCredential(settings.azure_key.get_secret_value())
    return AzureAnalyzer(
        settings.azure_endpoint,
        credential,  # type: ignore[arg-type]
        features=settings.visual_features,
        connect_timeout_s=settings.analyzer_connect_timeout_s,
        read_timeout_s=settings.analyzer_timeout_s,
        environ=os.environ,
    )


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event,
    analyzer: Analyzer | None = None,
    registry: CollectorRegistry | None = None,
    health: HealthState | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Run until ``stop`` is set (returns 0) or a fatal error (returns 3). Tests inject analyzer/registry.

    ``on_ready`` is called once with the bound ops port as soon as ``/metrics`` serves (before Kafka is
    joined), so an embedding test can learn the port picked for ``MODERATION_METRICS_PORT=0``. Then the
    cluster is waited for (``open_cluster``, at most ``kafka_startup_timeout_s``; not ready meanwhile, as
    no partition is assigned); ``KafkaConnectionFailed`` is raised when it refuses the settings or stays
    unreachable, before anything is consumed.
    """
    contracts = Contracts.load()
    policy = load_configured_policy(settings, contracts)
    registry = registry if registry is not None else CollectorRegistry()
    health = health if health is not None else HealthState(analyzer_reachable=True)
    metrics = Metrics(
        registry,
        version=__version__,
        input_topics=(settings.input_topic,),
        dead_letter_reasons=[str(reason) for reason in DeadLetterReason],
        watched_tags=policy.watched_tags,
    )
    metrics.set_policy(policy.version, str(policy.mode))
    drift = _drift_monitor(settings, policy)
    control = ControlState()
    metrics.set_hold(active=False)
    limiter = QuotaLimiter(settings.quota_calls_per_s)
    breaker = CircuitBreaker(failure_threshold=5, window_s=10.0, open_for_s=5.0, clock=time.monotonic)
    async with AsyncExitStack() as stack:
        base = analyzer if analyzer is not None else build_analyzer(settings)
        stack.push_async_callback(base.aclose)
        guarded = GuardedAnalyzer(
            base, limiter, breaker, CallMetrics(metrics, health), budget_s=settings.retry_budget_s
        )
        known = _known_content(settings, base, guarded)
        if known is not None:
            stack.push_async_callback(known.aclose)
        moderator = Moderator(
            contracts,
            guarded,
            DecisionMetrics(metrics, drift),
            topics=RouteTopics(
                settings.approved_topic,
                settings.review_topic,
                settings.rejected_topic,
                settings.dead_letter_topic,
            ),
            policy=lambda: policy,
            hold=lambda: control.hold,
            guard=policy.guard(max_value_bytes=settings.max_message_bytes),
            known_content=None if known is None else known.step,
        )
        ops = await stack.enter_async_context(
            OpsServer(registry, health, settings.metrics_host, settings.metrics_port)
        )
        if on_ready is not None:
            on_ready(ops.port)
        options = await stack.enter_async_context(open_cluster(settings))
        if known is not None:
            await known.start(options)
        consumer, producer = await stack.enter_async_context(kafka_clients(settings, options))
        pipeline = Pipeline(
            consumer,
            producer,
            moderator,
            PipelineMetrics(metrics, health),
            input_topic=settings.input_topic,
            max_in_flight=settings.max_in_flight,
            max_in_flight_per_partition=settings.max_in_flight_per_partition,
            drain_timeout_s=settings.drain_timeout_s,
            on_assignment=limiter.set_share,
        )
        consumer.subscribe([settings.input_topic], listener=pipeline.listener())
        controller = asyncio.create_task(
            follow_control(
                settings.bootstrap_servers,
                settings.control_topic,
                control,
                contracts,
                options=options,
                on_change=lambda state: metrics.set_hold(active=state.hold),
            )
        )
        publisher = asyncio.create_task(
            publish_periodically(
                metrics,
                limiter,
                lambda: int(breaker.state),
                drift,
                drift_state_file=settings.drift_state_file,
            )
        )
        log.info(
            "worker_started",
            extra={
                "topic": settings.input_topic,
                "group_id": settings.group_id,
                "policy_version": policy.version,
            },
        )
        try:
            await pipeline.run(stop)
        except WorkerStopped as exc:
            health.fatal_error = str(exc)
            log.critical(
                "worker_fatal",
                extra={"error_class": type(exc.cause).__name__, "error": str(exc)},
            )
            print(f"moderation-worker: fatal: {type(exc.cause).__name__}: {exc}", file=sys.stderr)  # noqa: T201
            return EXIT_FATAL
        finally:
            for task in (publisher, controller):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    log.info("worker_stopped")
    return EXIT_OK


def _known_content(settings: Settings, base: Analyzer, guarded: GuardedAnalyzer) -> KnownContentSetup | None:
    """Known content when the worker fetches images itself (``MODERATION_IMAGE_FETCH=worker``)."""
    if settings.image_fetch != "worker":
        return None
    if not isinstance(base, ImageDataAnalyzer):
        raise ConfigurationError(f"MODERATION_IMAGE_FETCH=worker: {type(base).__name__} cannot analyze bytes")
    try:  # the content extra (numpy, Pillow, pdqhash), loaded on demand
        from worker.content.setup import KnownContentSetup  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError("MODERATION_IMAGE_FETCH=worker needs the `content` extra") from exc
    return KnownContentSetup(settings, guarded)


def _drift_monitor(settings: Settings, policy: Policy) -> DriftMonitor:
    captured = load_reference(settings.drift_state_file) if settings.drift_state_file else None
    pinned = _pinned_reference(settings.drift_reference_file)
    try:
        return DriftMonitor(
            watched_tags=policy.watched_tags,
            window_s=settings.drift_window_s,
            min_samples=settings.drift_min_samples,
            pinned=pinned,
            captured=captured or DriftReference(),
        )
    except ValueError as exc:  # a pinned or saved reference whose buckets do not fit the monitor
        raise ConfigurationError(f"drift reference does not fit the drift monitor: {exc}") from exc


def _pinned_reference(path: Path | None) -> DriftReference | None:
    """The reference pinned by ``MODERATION_DRIFT_REFERENCE_FILE``; missing or bad: ConfigurationError."""
    if path is None:
        return None
    try:
        pinned = load_reference(path)
    except (OSError, ValueError) as exc:  # unreadable, not JSON, or not the reference form
        raise ConfigurationError(f"MODERATION_DRIFT_REFERENCE_FILE {path}: {exc}") from exc
    if pinned is None:
        raise ConfigurationError(f"MODERATION_DRIFT_REFERENCE_FILE {path}: no such file")
    return pinned


def serve(settings: Settings) -> int:
    """Run the worker in this process until SIGTERM or SIGINT; returns the exit code.

    0 after a clean stop, 3 when a fatal analyzer or Kafka error stopped it (one line on stderr). A policy
    file or drift reference that cannot be used raises ``ConfigurationError`` before Kafka is joined; a
    cluster that refuses the settings or stays unreachable at start-up raises ``KafkaConnectionFailed``.
    """
    configure_logging(settings.log_level)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await run_worker(settings, stop=stop)
    except KafkaError as exc:  # the cluster cannot be reached or refuses the clients at start-up
        log.critical("worker_fatal", extra={"error_class": type(exc).__name__, "error": str(exc)})
        print(f"moderation-worker: fatal: {exc}", file=sys.stderr)  # noqa: T201 - aiokafka names the class
        return EXIT_FATAL
