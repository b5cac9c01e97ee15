"""The worker's parts, built from the settings: policy, analyzer, side-record sources, known content, drift
monitor, audit sampler, and the hooks where the control state meets the loop and the metrics.

``runner.py`` composes them into one running worker; each builder raises ``ConfigurationError`` for a setting
it cannot use, before anything connects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from worker import __version__
from worker.analysis.analyzer import Analyzer, ImageDataAnalyzer
from worker.analysis.azure import AzureAnalyzer
from worker.analysis.guarded import GuardedAnalyzer
from worker.contracts import Contracts, DeadLetterReason
from worker.domain import Decision
from worker.errors import ConfigurationError
from worker.evaluation.analysis_record import AnalysisRecords
from worker.evaluation.shadow import ShadowPolicy
from worker.intervention import ControlState
from worker.moderation import Moderator, RouteTopics, SideRecordSource
from worker.observability.drift import DriftMonitor, DriftReference, load_reference
from worker.observability.metrics import Metrics
from worker.observability.observers import DecisionMetrics
from worker.policy import Policy
from worker.policy_file import load_default_policy, load_policy
from worker.sampling import AuditSampler
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.content.setup import KnownContentSetup

log = logging.getLogger(__name__)


def load_configured_policy(settings: Settings, contracts: Contracts) -> Policy:
    """The policy file named in the settings, or the bundled default."""
    if settings.policy_file is None:
        return load_default_policy(contracts=contracts)
    return load_policy(settings.policy_file, contracts=contracts)


def side_record_sources(
    settings: Settings, contracts: Contracts, metrics: Metrics
) -> tuple[SideRecordSource, ...]:
    """The shadow policy and the analyses topic, as the settings ask; a bad shadow policy file raises
    ``ConfigurationError`` at start, as a bad live policy does."""
    sources: list[SideRecordSource] = []
    if settings.shadow_policy_file is not None:
        shadow = load_policy(settings.shadow_policy_file, contracts=contracts)
        metrics.set_shadow_policy(shadow.version, str(shadow.mode))
        sources.append(ShadowPolicy(shadow, metrics, topic=settings.shadow_topic))
    elif settings.shadow_topic is not None:  # harmless but surely not what was meant: say so once
        log.warning("shadow_topic_without_shadow_policy", extra={"topic": settings.shadow_topic})
    if settings.analyses_topic is not None:
        sources.append(AnalysisRecords(settings.analyses_topic))
    return tuple(sources)


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


class ControlHooks:
    """Where the control state meets the loop, the metrics and the status reporter.

    ``intake_paused`` is what the loop asks before each poll (``Pipeline(intake_paused=...)``); ``stopped``
    is its answer as last given, so it turns true only once no poll is under way: that is what the status
    record and ``moderation_intake_paused`` report. ``control_changed`` is the control listener's callback.
    ``changed`` is set whenever a report is due.
    """

    def __init__(self, control: ControlState, metrics: Metrics) -> None:
        self._control = control
        self._metrics = metrics
        self.changed = asyncio.Event()
        self.stopped = False
        metrics.set_hold(active=False)
        metrics.set_intake_paused(paused=False)

    def intake_paused(self) -> bool:
        paused = self._control.paused
        if paused != self.stopped:
            self.stopped = paused
            self._metrics.set_intake_paused(paused=paused)
            self.changed.set()
        return paused

    def control_changed(self, state: ControlState) -> None:
        self._metrics.set_hold(active=state.hold)
        policy = state.policy()
        self._metrics.set_policy(policy.version, str(policy.mode))
        self.changed.set()


def audit_sampler(settings: Settings) -> AuditSampler:
    """The audit sampler of ``MODERATION_AUDIT_*``: rates per automatic decision, the hash key."""
    return AuditSampler(
        {Decision.APPROVED: settings.audit_approved_rate, Decision.REJECTED: settings.audit_rejected_rate},
        key=settings.audit_key.get_secret_value().encode(),
    )


def replica_id(settings: Settings) -> str:
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


def known_content(settings: Settings, base: Analyzer, guarded: GuardedAnalyzer) -> KnownContentSetup | None:
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


def drift_monitor(settings: Settings, policy: Policy) -> DriftMonitor:
    captured = load_reference(settings.drift_state_file) if settings.drift_state_file else None
    pinned = pinned_reference(settings.drift_reference_file)
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


def pinned_reference(path: Path | None) -> DriftReference | None:
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


def build_moderator(
    settings: Settings,
    contracts: Contracts,
    guarded: GuardedAnalyzer,
    observer: DecisionMetrics,
    control: ControlState,
    *,
    extras: tuple[SideRecordSource, ...],
    known: KnownContentSetup | None,
) -> Moderator:
    """The record handler: routes from the settings, the live policy, hold and guard read from ``control``
    on every record, audit sampling, side-record sources and known content as the settings ask."""
    return Moderator(
        contracts,
        guarded,
        observer,
        topics=RouteTopics(
            settings.approved_topic,
            settings.review_topic,
            settings.rejected_topic,
            settings.dead_letter_topic,
            audit=settings.audit_topic,
        ),
        policy=control.policy,
        hold=lambda: control.hold,
        guard=control.guard,
        audit=audit_sampler(settings),
        extras=extras,
        known_content=None if known is None else known.step,
    )


def build_metrics(settings: Settings, registry: CollectorRegistry, policy: Policy) -> Metrics:
    """The worker's metrics on ``registry``, every label set pre-initialised, the file policy published and
    Kafka counted reachable (start-up only runs the worker once the cluster answered)."""
    metrics = Metrics(
        registry,
        version=__version__,
        input_topics=(settings.input_topic,),
        dead_letter_reasons=[str(reason) for reason in DeadLetterReason],
        watched_tags=policy.watched_tags,
    )
    metrics.set_policy(policy.version, str(policy.mode))
    metrics.set_kafka_reachable(reachable=True)
    return metrics
