"""The control state: the latest valid hold command is in force."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from worker.contracts import Contracts, SchemaName
from worker.kafka.control import ControlState, hold_command

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_hold_commands_are_valid_control_records() -> None:
    """What ``moderation-worker hold`` publishes validates against schemas/control.v1.json."""
    record = orjson.loads(hold_command(active=True, reason="incident 42", issued_by="reviewer-7", now=NOW))
    assert Contracts.load().describe_violation(SchemaName.CONTROL, record) is None
    assert "2026-11-26T00:00:00Z" == record["issued_at"]


def test_control_state_follows_the_latest_hold_command() -> None:
    """Commands apply in order; repeating one changes nothing; unknown commands are ignored."""
    state = ControlState()
    on = orjson.loads(hold_command(active=True, reason="r", issued_by="me", now=NOW))
    off = orjson.loads(hold_command(active=False, reason=None, issued_by=None, now=NOW))
    assert (True, True, "r") == (state.apply(on), state.hold, state.hold_reason)
    assert (False, True) == (state.apply(on), state.hold)
    assert (True, False, None) == (state.apply(off), state.hold, state.hold_reason)
    assert (False, False) == (state.apply({"command": "pause", "active": True}), state.hold)
