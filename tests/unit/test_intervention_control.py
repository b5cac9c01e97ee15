"""The control state: the latest valid command per key is in force; the records the commands publish."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from worker.contracts import Contracts, SchemaName
from worker.errors import ConfigurationError
from worker.intervention import (
    FILE_POLICIES,
    AppliedPolicy,
    ControlState,
    applied_policy,
    hold_command,
    intake_command,
    policy_command,
    previous_policy,
    replica_status,
    status_key,
    status_record,
)
from worker.policy_file import load_default_policy, policy_from_document

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CONTRACTS = Contracts.load()
STRICT = {"mode": "blocklist", "blocklist": {"cat": {"review_at": 0.5, "reject_at": 0.9}}}


def _loaded(value: bytes) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(value)
    return document


def _applied(document: dict[str, Any]) -> AppliedPolicy:
    return AppliedPolicy(document, policy_from_document(document, contracts=CONTRACTS).version)


def _state() -> ControlState:
    return ControlState(file_policy=load_default_policy(contracts=CONTRACTS), contracts=CONTRACTS)


def test_hold_commands_are_valid_control_records() -> None:
    """What ``moderation-worker hold`` publishes validates against schemas/control.v1.json."""
    record = _loaded(hold_command(active=True, reason="incident 42", issued_by="reviewer-7", now=NOW))
    assert CONTRACTS.describe_violation(SchemaName.CONTROL, record) is None
    assert "2026-11-26T00:00:00Z" == record["issued_at"]


def test_control_state_follows_the_latest_hold_command() -> None:
    """Commands apply in order; repeating one changes nothing; a status record changes nothing."""
    state = ControlState()
    on = _loaded(hold_command(active=True, reason="r", issued_by="me", now=NOW))
    off = _loaded(hold_command(active=False, reason=None, issued_by=None, now=NOW))
    assert (True, True, "r") == (state.apply(on), state.hold, state.hold_reason)
    assert (False, True) == (state.apply(on), state.hold)
    assert (True, False, None) == (state.apply(off), state.hold, state.hold_reason)
    assert (False, False) == (state.apply({"command": "status"}), state.hold)


def test_pause_and_resume_toggle_intake_and_leave_hold_alone() -> None:
    """pause stops intake with its reason, resume restarts it; a repeated pause changes nothing."""
    state = _state()
    pause = _loaded(intake_command(paused=True, reason="incident 43", issued_by="oncall", now=NOW))
    resume = _loaded(intake_command(paused=False, reason=None, issued_by="oncall", now=NOW))
    assert ("pause", "resume") == (pause["command"], resume["command"])
    assert (True, True, "incident 43", False) == (
        state.apply(pause),
        state.paused,
        state.pause_reason,
        state.hold,
    )
    assert (False, True) == (state.apply(pause), state.paused)
    assert (True, False, None) == (state.apply(resume), state.paused, state.pause_reason)


def test_every_command_record_validates_against_control_v1() -> None:
    """pause, resume, policy and status records are all valid ``control.v1`` documents."""
    state = _state()
    records = [
        intake_command(paused=True, reason="r", issued_by="me", now=NOW),
        intake_command(paused=False, reason=None, issued_by=None, now=NOW),
        policy_command(_applied(STRICT), previous=FILE_POLICIES, reason="tighter", issued_by="me", now=NOW),
        policy_command(FILE_POLICIES, previous=_applied(STRICT), reason=None, issued_by=None, now=NOW),
        status_record("replica-1", state, now=NOW),
    ]
    assert [None] * 5 == [CONTRACTS.describe_violation(SchemaName.CONTROL, _loaded(r)) for r in records]


def test_control_v1_demands_the_fields_of_each_command() -> None:
    """A hold without ``active``, a policy without ``previous``, a status without ``replica`` are refused."""
    base = {"schema": "control.v1", "issued_at": "2026-11-26T00:00:00Z"}
    refused = [
        base | {"command": "hold"},
        base | {"command": "policy", "policy": None, "policy_version": None},
        base | {"command": "status", "policy_version": "sha256:0123456789abcdef"},
        base | {"command": "unpause"},
    ]
    assert all(CONTRACTS.describe_violation(SchemaName.CONTROL, doc) is not None for doc in refused)


def test_an_applied_policy_is_in_force_until_the_file_policies_return() -> None:
    """A policy record replaces the file policy (and its guard); a null policy brings the file policy back."""
    state = _state()
    file_version = state.policy().version
    strict = _applied(STRICT)
    apply = _loaded(policy_command(strict, previous=FILE_POLICIES, reason=None, issued_by=None, now=NOW))
    back = _loaded(policy_command(FILE_POLICIES, previous=strict, reason=None, issued_by=None, now=NOW))

    assert (True, strict.version, "applied") == (
        state.apply(apply),
        state.policy().version,
        state.policy_source,
    )
    assert state.guard() is state.guard()  # built once per policy
    assert (False, strict.version) == (state.apply(apply), state.policy_version)
    assert (True, file_version, "file") == (state.apply(back), state.policy().version, state.policy_source)


def test_a_policy_record_the_worker_cannot_use_leaves_the_policy_in_force() -> None:
    """A policy that fails ``policy.v1`` raises ConfigurationError and changes nothing."""
    state = _state()
    before = state.policy()
    bad = {"command": "policy", "policy": {"mode": "blocklist", "defaults": {"review_at": 7}}}
    with pytest.raises(ConfigurationError, match="invalid policy"):
        state.apply(bad)
    assert (before, "file") == (state.policy(), state.policy_source)


def test_rollback_returns_to_the_previous_policy_kept_in_the_record() -> None:
    """The record keeps the policy it replaced; with no record there is nothing to roll back."""
    strict = _applied(STRICT)
    record = _loaded(policy_command(strict, previous=FILE_POLICIES, reason=None, issued_by=None, now=NOW))
    assert (strict, FILE_POLICIES) == (applied_policy(record), previous_policy(record))
    assert FILE_POLICIES == applied_policy(None)
    with pytest.raises(ConfigurationError, match="nothing to roll back"):
        previous_policy(None)


def test_a_status_record_reports_what_the_replica_runs() -> None:
    """Status: key per replica id; policy version and source, paused and hold, as the replica has them."""
    state = _state()
    state.apply(_loaded(intake_command(paused=True, reason=None, issued_by=None, now=NOW)))
    status = replica_status(_loaded(status_record("replica-1", state, now=NOW)))
    assert b"status/replica-1" == status_key("replica-1")
    assert status is not None
    assert ("replica-1", state.policy().version, "file", True, False, "2026-11-26T00:00:00Z") == status
    assert replica_status(_loaded(hold_command(active=True, reason=None, issued_by=None, now=NOW))) is None
