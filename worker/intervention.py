"""Real-time intervention, the pure part: the ``control.v1`` records and the state they put a replica in.

The control topic is compacted and read from the start by every replica, so the latest record per key is in
force (docs/intervention.md): ``hold`` (hold on/off), ``intake`` (pause/resume), ``policy`` (the applied
policy and the one it replaced) and ``status/<replica id>`` (what one replica runs). ``ControlState.apply``
folds one validated record into the state; the builders below write the records the command line and the
replicas publish. Pure: no Kafka, HTTP or Azure imports, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, NamedTuple

import orjson

from worker.contracts import DEFAULT_MAX_VALUE_BYTES, Contracts, Guard, SchemaName
from worker.errors import ConfigurationError
from worker.policy import Policy
from worker.policy_file import policy_from_document


class Command(StrEnum):
    """The ``command`` of a ``control.v1`` record."""

    HOLD = "hold"
    PAUSE = "pause"
    RESUME = "resume"
    POLICY = "policy"
    STATUS = "status"


HOLD_KEY: Final = b"hold"
INTAKE_KEY: Final = b"intake"
"""pause and resume share one key: the latest of them is in force."""
POLICY_KEY: Final = b"policy"
STATUS_KEY_PREFIX: Final = "status/"


def status_key(replica_id: str) -> bytes:
    """The control-topic key of one replica's status record."""
    return (STATUS_KEY_PREFIX + replica_id).encode()


@dataclass(slots=True)
class ControlState:
    """What the control topic says right now: read on every record, written by the control listener.

    ``file_policy`` is the replica's own policy (its ``MODERATION_POLICY_FILE`` or the bundled default), in
    force until a ``policy`` record applies another; ``contracts`` validates applied policies (loaded on
    first use when ``None``); ``max_value_bytes`` is the submission size limit of the guard.
    """

    file_policy: Policy | None = None
    contracts: Contracts | None = None
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    hold: bool = False
    hold_reason: str | None = None
    paused: bool = False
    pause_reason: str | None = None
    applied: Policy | None = None
    """The policy a ``policy`` record applied; ``None``: the file policy is in force."""
    _guard: tuple[Policy, Guard] | None = field(default=None, repr=False)

    @property
    def policy_source(self) -> str:
        """``applied`` while an applied policy is in force, else ``file``."""
        return "file" if self.applied is None else "applied"

    @property
    def policy_version(self) -> str | None:
        """The version of the policy in force, ``None`` without any policy."""
        policy = self.applied if self.applied is not None else self.file_policy
        return None if policy is None else policy.version

    def policy(self) -> Policy:
        """The policy in force: the applied one, else the file policy (``ValueError`` if there is neither)."""
        policy = self.applied if self.applied is not None else self.file_policy
        if policy is None:
            raise ValueError("no policy: the control state was built without a file policy")
        return policy

    def guard(self) -> Guard:
        """The submission guard of the policy in force (hosts, consent, size), built once per policy."""
        policy = self.policy()
        if self._guard is None or self._guard[0] is not policy:
            self._guard = (policy, policy.guard(max_value_bytes=self.max_value_bytes))
        return self._guard[1]

    def apply(self, document: Mapping[str, object]) -> bool:
        """Fold one schema-valid command into the state; True if the state changed.

        ``status`` records and unknown commands change nothing. A ``policy`` record whose policy fails
        ``policy.v1`` or the policy's own checks raises ``ConfigurationError`` and leaves the state as it was.
        """
        command = document.get("command")
        if command == Command.HOLD:
            active = bool(document.get("active"))
            changed = active != self.hold
            self.hold = active
            reason = document.get("reason")
            self.hold_reason = str(reason) if active and reason is not None else None
            return changed
        if command in (Command.PAUSE, Command.RESUME):
            paused = command == Command.PAUSE
            changed = paused != self.paused
            self.paused = paused
            reason = document.get("reason")
            self.pause_reason = str(reason) if paused and reason is not None else None
            return changed
        if command == Command.POLICY:
            return self._apply_policy(document.get("policy"))
        return False

    def _apply_policy(self, raw: object) -> bool:
        if raw is None:
            changed = self.applied is not None
            self.applied = None
            return changed
        if not isinstance(raw, Mapping):
            raise ConfigurationError("invalid policy: the control record's policy is not an object")
        if self.contracts is None:
            self.contracts = Contracts.load()
        policy = policy_from_document(raw, contracts=self.contracts)
        before = self.applied
        self.applied = policy
        return before is None or before.version != policy.version


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _command(command: Command, now: datetime, reason: str | None, issued_by: str | None) -> dict[str, object]:
    document: dict[str, object] = {
        "schema": str(SchemaName.CONTROL),
        "command": str(command),
        "issued_at": _timestamp(now),
    }
    if reason:
        document["reason"] = reason
    if issued_by:
        document["issued_by"] = issued_by
    return document


def hold_command(*, active: bool, reason: str | None, issued_by: str | None, now: datetime) -> bytes:
    """A ``control.v1`` hold record (key ``HOLD_KEY``)."""
    document = _command(Command.HOLD, now, reason, issued_by)
    document["active"] = active
    return orjson.dumps(document)


def intake_command(*, paused: bool, reason: str | None, issued_by: str | None, now: datetime) -> bytes:
    """A ``control.v1`` pause (``paused``) or resume record (key ``INTAKE_KEY``)."""
    return orjson.dumps(_command(Command.PAUSE if paused else Command.RESUME, now, reason, issued_by))


class AppliedPolicy(NamedTuple):
    """A policy as the ``policy`` key carries it: the ``policy.v1`` document and its version; both ``None``
    for "each replica's own policy file"."""

    document: Mapping[str, object] | None
    version: str | None


FILE_POLICIES: Final = AppliedPolicy(None, None)


def policy_command(
    policy: AppliedPolicy,
    *,
    previous: AppliedPolicy,
    reason: str | None,
    issued_by: str | None,
    now: datetime,
) -> bytes:
    """A ``control.v1`` policy record (key ``POLICY_KEY``): ``policy`` in force, ``previous`` for rollback."""
    document = _command(Command.POLICY, now, reason, issued_by)
    document["policy"] = policy.document
    document["policy_version"] = policy.version
    document["previous"] = {"policy": previous.document, "policy_version": previous.version}
    return orjson.dumps(document)


def applied_policy(record: Mapping[str, object] | None) -> AppliedPolicy:
    """The policy a ``policy`` record puts in force (``FILE_POLICIES`` when there is no record)."""
    if record is None:
        return FILE_POLICIES
    return _applied(record.get("policy"), record.get("policy_version"))


def previous_policy(record: Mapping[str, object] | None) -> AppliedPolicy:
    """What rolling back the ``policy`` record returns to; ``ConfigurationError`` if there is no record."""
    if record is None:
        raise ConfigurationError("no policy was applied on the control topic: nothing to roll back")
    previous = record.get("previous")
    if not isinstance(previous, Mapping):
        return FILE_POLICIES
    return _applied(previous.get("policy"), previous.get("policy_version"))


def _applied(document: object, version: object) -> AppliedPolicy:
    return AppliedPolicy(
        document if isinstance(document, Mapping) else None, version if isinstance(version, str) else None
    )


class ReplicaStatus(NamedTuple):
    """One replica's report: what it decides under, whether its intake is paused or a hold is on, and when
    it said so."""

    replica_id: str
    policy_version: str
    policy_source: str
    paused: bool
    hold: bool
    reported_at: str


def status_record(
    replica_id: str, state: ControlState, *, now: datetime, paused: bool | None = None
) -> bytes:
    """A ``control.v1`` status record of ``state`` (key ``status_key(replica_id)``).

    ``paused``: whether the replica's intake has actually stopped (its loop saw the pause between two
    polls), which trails ``state.paused`` by up to one poll; ``None`` reports ``state.paused``."""
    document = _command(Command.STATUS, now, None, replica_id)
    document["policy_version"] = state.policy().version
    document["replica"] = {
        "id": replica_id,
        "policy_source": state.policy_source,
        "paused": state.paused if paused is None else paused,
        "hold": state.hold,
    }
    return orjson.dumps(document)


def replica_status(document: Mapping[str, object]) -> ReplicaStatus | None:
    """The report in a schema-valid status record, ``None`` for any other command."""
    replica = document.get("replica")
    if document.get("command") != Command.STATUS or not isinstance(replica, Mapping):
        return None
    return ReplicaStatus(
        replica_id=str(replica.get("id")),
        policy_version=str(document.get("policy_version")),
        policy_source=str(replica.get("policy_source")),
        paused=bool(replica.get("paused")),
        hold=bool(replica.get("hold")),
        reported_at=str(document.get("issued_at")),
    )
