"""``moderation-worker replay``: re-decide kept analyses under another policy, report what would change.

Reads the analyses topic (``MODERATION_ANALYSES_TOPIC``, ``analysis.v1``) with a group-less consumer: from
the first offset at or after ``since`` (``offsets_for_times``; the beginning without it) up to the end
offsets seen at the start, then stops; records outside [since, until] by their Kafka timestamp are left
out, as are records that are not ``analysis.v1`` (counted as skipped). Each analysis is decided again with
the pure ``worker.policy.decide`` under the same hold: no analyzer is called. Nothing is produced or
committed. Connects as the worker does (``open_cluster``: waits for the cluster, raises
``KafkaConnectionFailed``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.contracts import Contracts
from worker.errors import ConfigurationError
from worker.evaluation.analysis_record import InvalidAnalysis, KeptAnalysis, decode_analysis
from worker.evaluation.decision_diff import DecisionDiff, DiffReport, Redecided
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import open_cluster, start_explained
from worker.policy import Policy, decide
from worker.setting_values import variable
from worker.settings import Settings

DEFAULT_EXAMPLES: Final = 5
_POLL_MS: Final = 500
_AGO: Final = re.compile(r"^(\d+)([smhd])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """The Kafka timestamps replayed: ``since`` and ``until`` inclusive, either open; timezone-aware."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ConfigurationError(
                f"--since {self.since.isoformat()} is after --until {self.until.isoformat()}"
            )

    @property
    def since_ms(self) -> int | None:
        return None if self.since is None else int(self.since.timestamp() * 1000)

    @property
    def until_ms(self) -> int | None:
        return None if self.until is None else int(self.until.timestamp() * 1000)

    def contains(self, timestamp_ms: int) -> bool:
        """Whether a record with this Kafka timestamp (ms since the epoch) is replayed."""
        since, until = self.since_ms, self.until_ms
        return (since is None or timestamp_ms >= since) and (until is None or timestamp_ms <= until)

    def describe(self) -> dict[str, str | None]:
        """``{"since", "until"}`` as RFC 3339 strings (``None`` when open), for the report."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
        }


def parse_moment(text: str, now: datetime) -> datetime:
    """A ``--since``/``--until`` value: RFC 3339 / ISO 8601 (no offset means UTC), or ``90m``, ``24h``, ``7d``
    ago from ``now``. Raises ``ValueError`` naming the accepted forms."""
    ago = _AGO.match(text.strip())
    if ago is not None:
        return now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-26T10:00:00Z) nor an age (90m, 24h, 7d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def redecide(kept: KeptAnalysis, policy: Policy) -> Redecided:
    """``kept`` decided again under ``policy``, with the hold it was decided under."""
    verdict = decide(policy, kept.analysis, hold=kept.hold)
    analyzed_us = round(kept.analyzed_at.timestamp() * 1_000_000)
    order = (analyzed_us, kept.source.partition, kept.source.offset)
    return Redecided(
        kept.id, kept.decision, verdict.decision, verdict.reasons, kept.url, kept.policy_version, order
    )


async def replay(
    settings: Settings,
    policy: Policy,
    *,
    window: ReplayWindow = ReplayWindow(),
    examples: int = DEFAULT_EXAMPLES,
    contracts: Contracts | None = None,
    topic: str | None = None,
) -> DiffReport:
    """Re-decide every kept analysis in ``window`` under ``policy``; the diff against what was published.

    ``topic`` defaults to ``MODERATION_ANALYSES_TOPIC``; neither set, or a topic the cluster does not have,
    raises ``ConfigurationError``.
    """
    name = topic or settings.analyses_topic
    if name is None:
        raise ConfigurationError(f"{variable('analyses_topic')} is not set: replay reads the analyses topic")
    contracts = Contracts.load() if contracts is None else contracts
    diff = DecisionDiff()
    skipped = 0
    async for record in kept_records(settings, name, window):
        try:
            kept = decode_analysis(record.value, contracts)
        except InvalidAnalysis:
            skipped += 1
            continue
        diff.add(redecide(kept, policy))
    return diff.report(policy.version, examples=examples, skipped=skipped, window=window.describe())


async def kept_records(
    settings: Settings, topic: str, window: ReplayWindow
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` in ``window``, from the offset for ``since`` to the end seen at the start."""
    async with open_cluster(settings) as options:
        consumer: AIOKafkaConsumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            client_id="moderation-replay",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options.client_kwargs(),
        )
        try:
            partitions = await _partitions_of(settings, options, topic)
            await start_explained(
                consumer.start, settings.bootstrap_servers, settings.kafka_security(), options
            )
            async for record in _read_to_end(consumer, partitions, window):
                yield record
        finally:
            await consumer.stop()


async def _partitions_of(settings: Settings, options: ConnectionOptions, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` (the admin client's metadata); a missing topic is a ConfigurationError."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="moderation-replay", **options.client_kwargs()
    )
    try:
        await start_explained(admin.start, settings.bootstrap_servers, settings.kafka_security(), options)
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise ConfigurationError(f"the cluster has no topic {topic!r} ({variable('analyses_topic')})")
    return sorted(TopicPartition(topic, entry["partition"]) for entry in described["partitions"])


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], window: ReplayWindow
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    consumer.assign(partitions)
    end = await consumer.end_offsets(partitions)
    start = await _start_offsets(consumer, partitions, window, end)
    for tp in partitions:
        consumer.seek(tp, start[tp])
    remaining = {tp for tp in partitions if start[tp] < end[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=_POLL_MS)
        for tp, records in batch.items():
            for record in records:
                if record.offset < end[tp] and window.contains(record.timestamp):
                    yield record
        # Offsets can have gaps (compaction, transaction markers): the position says when a partition is done.
        remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}


async def _start_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    window: ReplayWindow,
    end: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition the first offset at or after ``since`` (the end if there is none), or the beginning."""
    since_ms = window.since_ms
    if since_ms is None:
        return dict(await consumer.beginning_offsets(partitions))
    found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
    return {tp: end[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
