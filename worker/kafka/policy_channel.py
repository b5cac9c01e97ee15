"""Live policy on the control topic: ``policy apply``, ``policy rollback`` and ``policy status``.

The ``policy`` key holds the policy in force on every replica and the one it replaced; rollback publishes
that previous one (and keeps the rolled-back one as its own previous, so a second rollback re-applies it:
the history is one step deep, the audit trail is the topic's record of who issued what). A policy is
validated exactly as the worker validates its file at start (``worker.policy_file``) before anything is
published: a bad one raises ``ConfigurationError`` and the topic is untouched. Status is every replica's
own report (``worker.kafka.replica_status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import orjson

from worker.contracts import Contracts
from worker.intervention import (
    FILE_POLICIES,
    POLICY_KEY,
    STATUS_KEY_PREFIX,
    AppliedPolicy,
    ReplicaStatus,
    applied_policy,
    policy_command,
    previous_policy,
    replica_status,
)
from worker.kafka.control import publish_control, read_control
from worker.policy_file import load_policy, policy_from_document
from worker.settings import Settings


def read_policy_document(path: Path, contracts: Contracts) -> AppliedPolicy:
    """The policy file as ``apply`` publishes it, checked as the worker checks it at start.

    Raises ``ConfigurationError`` (unreadable, not JSON, not ``policy.v1``, inconsistent thresholds).
    """
    policy = load_policy(path, contracts=contracts)  # every check the worker makes at start
    document = orjson.loads(path.read_bytes())
    return AppliedPolicy(document, policy.version)


async def apply_policy(
    settings: Settings, path: Path, *, reason: str | None, issued_by: str | None
) -> AppliedPolicy:
    """Validate ``path``, then publish it as the policy of every replica; returns what was published."""
    new = read_policy_document(path, Contracts.load())
    current = applied_policy(await _policy_record(settings))
    value = policy_command(new, previous=current, reason=reason, issued_by=issued_by, now=datetime.now(UTC))
    await publish_control(settings, [(POLICY_KEY, value)])
    return new


async def rollback_policy(settings: Settings, *, reason: str | None, issued_by: str | None) -> AppliedPolicy:
    """Publish the policy the current one replaced (``FILE_POLICIES`` when it replaced the file policies).

    Raises ``ConfigurationError`` when no policy was ever applied, or when the previous one no longer
    passes the worker's checks.
    """
    record = await _policy_record(settings)
    previous = previous_policy(record)
    if previous.document is not None:
        policy_from_document(previous.document, contracts=Contracts.load())
    value = policy_command(
        previous, previous=applied_policy(record), reason=reason, issued_by=issued_by, now=datetime.now(UTC)
    )
    await publish_control(settings, [(POLICY_KEY, value)])
    return previous


class PolicyStatus(NamedTuple):
    """The policy on the control topic and every replica's latest report, by replica id."""

    applied: AppliedPolicy
    replicas: tuple[ReplicaStatus, ...]


async def policy_status(settings: Settings) -> PolicyStatus:
    """What the control topic says: the applied policy and each reporting replica."""
    latest = await read_control(settings)
    replicas = [
        status
        for key, document in latest.items()
        if key.startswith(STATUS_KEY_PREFIX.encode())
        and document is not None
        and (status := replica_status(document)) is not None
    ]
    record = latest.get(POLICY_KEY)
    return PolicyStatus(
        applied_policy(record) if record is not None else FILE_POLICIES,
        tuple(sorted(replicas, key=lambda status: status.replica_id)),
    )


async def _policy_record(settings: Settings) -> Mapping[str, object] | None:
    return (await read_control(settings)).get(POLICY_KEY)
