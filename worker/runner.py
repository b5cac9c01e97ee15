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
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from worker.analysis.analyzer import Analyzer
from worker.analysis.breaker import CircuitBreaker
from worker.analysis.guarded import GuardedAnalyzer
from worker.analysis.limiter import QuotaLimiter
from worker.assembly import (
    ControlHooks,
    build_analyzer,
    build_metrics,
    build_moderator,
    drift_monitor,
    known_content,
    load_configured_policy,
    replica_id,
    side_record_sources,
)
from worker.contracts import Contracts
from worker.intervention import ControlState
from worker.kafka.clients import kafka_clients
from worker.kafka.control import follow_control
from worker.kafka.loop import Pipeline, WorkerStopped
from worker.kafka.reachability import watch_reachability
from worker.kafka.replica_status import report_status
from worker.kafka.startup import open_cluster
from worker.observability.logs import configure_logging
from worker.observability.metrics import Metrics
from worker.observability.observers import CallMetrics, DecisionMetrics, PipelineMetrics, publish_periodically
from worker.observability.ops_server import HealthState, OpsServer
from worker.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FATAL = 0, 3


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
    metrics = build_metrics(settings, registry, policy)
    extras = side_record_sources(settings, contracts, metrics)
    drift = drift_monitor(settings, policy)
    # The file policy until the control topic says otherwise: ``control`` is read on every record.
    control = ControlState(
        file_policy=policy, contracts=contracts, max_value_bytes=settings.max_message_bytes
    )
    hooks = ControlHooks(control, metrics)
    limiter = QuotaLimiter(settings.quota_calls_per_s)
    breaker = CircuitBreaker(failure_threshold=5, window_s=10.0, open_for_s=5.0, clock=time.monotonic)
    async with AsyncExitStack() as stack:
        base = analyzer if analyzer is not None else build_analyzer(settings)
        stack.push_async_callback(base.aclose)
        guarded = GuardedAnalyzer(
            base, limiter, breaker, CallMetrics(metrics, health), budget_s=settings.retry_budget_s
        )
        known = known_content(settings, base, guarded)
        if known is not None:
            stack.push_async_callback(known.aclose)
        moderator = build_moderator(
            settings, contracts, guarded, DecisionMetrics(metrics, drift), control, extras=extras, known=known
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
            PipelineMetrics(metrics, health, audit_topic=settings.audit_topic),
            input_topic=settings.input_topic,
            max_in_flight=settings.max_in_flight,
            max_in_flight_per_partition=settings.max_in_flight_per_partition,
            drain_timeout_s=settings.drain_timeout_s,
            on_assignment=limiter.set_share,
            intake_paused=hooks.intake_paused,
        )
        caught_up = asyncio.Event()
        controller = asyncio.create_task(
            follow_control(
                settings.bootstrap_servers,
                settings.control_topic,
                control,
                contracts,
                options=options,
                on_change=hooks.control_changed,
                caught_up=caught_up,
            )
        )
        stack.push_async_callback(_cancelled, controller)
        controller.add_done_callback(partial(_stop_if_failed, stop))
        # The first record is decided under the applied policy (and a pause or hold) already in force.
        await _caught_up(caught_up, controller, stop)
        consumer.subscribe([settings.input_topic], listener=pipeline.listener())
        reporter = asyncio.create_task(
            report_status(
                producer,
                settings.control_topic,
                replica_id(settings),
                control,
                hooks.changed,
                intake_stopped=lambda: hooks.stopped,
            )
        )
        prober = asyncio.create_task(
            watch_reachability(
                consumer,
                lambda reachable: _kafka_reachable(health, metrics, reachable=reachable),
                interval_s=settings.kafka_probe_interval_s,
                timeout_s=settings.kafka_probe_interval_s,
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
                "policy_version": control.policy_version,
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
            for task in (publisher, prober, reporter):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    log.info("worker_stopped")
    return EXIT_OK


def _kafka_reachable(health: HealthState, metrics: Metrics, *, reachable: bool) -> None:
    health.kafka_reachable = reachable
    metrics.set_kafka_reachable(reachable=reachable)


async def _caught_up(caught_up: asyncio.Event, controller: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait until the control topic is caught up with (or ``stop``); raise what stopped the controller."""
    waiters = {asyncio.ensure_future(caught_up.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait({*waiters, controller}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if controller.done() and not caught_up.is_set():
        await controller  # raises what stopped it


def _stop_if_failed(stop: asyncio.Event, follower: asyncio.Task[None]) -> None:
    """A control follower that failed stops the worker: a replica that no longer hears hold, pause or a
    policy change must not go on deciding. The error is raised again at the exit (``_cancelled``): exit 3."""
    if follower.cancelled() or (error := follower.exception()) is None:
        return
    log.critical("control_follower_failed", extra={"error_class": type(error).__name__, "error": str(error)})
    stop.set()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
