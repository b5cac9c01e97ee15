"""Where the control state meets the loop and the metrics (``worker.runner.ControlHooks``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

import orjson
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry

from worker.assembly import ControlHooks
from worker.contracts import Contracts
from worker.intervention import (
    FILE_POLICIES,
    AppliedPolicy,
    ControlState,
    hold_command,
    intake_command,
    policy_command,
)
from worker.observability.metrics import Metrics
from worker.policy_file import load_default_policy, policy_from_document
from worker.runner import _stop_if_failed

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CONTRACTS = Contracts.load()
STRICT = {"mode": "blocklist", "blocklist": {"cat": {"reject_at": 0.9}}}


def _setup() -> tuple[ControlState, ControlHooks, CollectorRegistry]:
    registry = CollectorRegistry()
    state = ControlState(file_policy=load_default_policy(contracts=CONTRACTS), contracts=CONTRACTS)
    return state, ControlHooks(state, Metrics(registry, version="t")), registry


def test_the_intake_gauge_and_the_status_follow_what_the_loop_was_told_not_the_command() -> None:
    """A pause applied to the state shows only once the loop asked (between two polls); so does resume."""
    state, hooks, registry = _setup()
    state.apply(orjson.loads(intake_command(paused=True, reason=None, issued_by=None, now=NOW)))

    def gauge() -> float | None:
        return registry.get_sample_value("moderation_intake_paused")

    before_asked = (gauge(), hooks.stopped, hooks.changed.is_set())
    assert (True, 1.0, True, True) == (hooks.intake_paused(), gauge(), hooks.stopped, hooks.changed.is_set())
    state.apply(orjson.loads(intake_command(paused=False, reason=None, issued_by=None, now=NOW)))
    assert (False, 0.0, False) == (hooks.intake_paused(), gauge(), hooks.stopped)
    assert (0.0, False, False) == before_asked


def test_a_control_change_publishes_the_policy_in_force_and_the_hold() -> None:
    """After a policy record the policy info names the applied version only; after a hold the gauge is 1."""
    state, hooks, registry = _setup()
    strict = AppliedPolicy(STRICT, policy_from_document(STRICT, contracts=CONTRACTS).version)
    state.apply(
        orjson.loads(policy_command(strict, previous=FILE_POLICIES, reason=None, issued_by=None, now=NOW))
    )
    state.apply(orjson.loads(hold_command(active=True, reason=None, issued_by=None, now=NOW)))
    hooks.control_changed(state)

    versions = [
        labels["policy_version"]
        for family in registry.collect()
        if family.name == "moderation_policy"
        for labels in (sample.labels for sample in family.samples)
    ]
    assert ([strict.version], 1.0) == (versions, registry.get_sample_value("moderation_hold_active"))
    assert hooks.changed.is_set()


async def test_a_failed_control_follower_stops_the_worker_and_a_cancelled_one_does_not() -> None:
    """A follower that died (here of an error the cluster raised) sets the stop event, so the replica stops
    instead of deciding without hold, pause or policy changes; a follower cancelled at shutdown does not."""

    async def failing() -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")

    failed_stop, cancelled_stop = asyncio.Event(), asyncio.Event()
    failed = asyncio.create_task(failing())
    failed.add_done_callback(partial(_stop_if_failed, failed_stop))
    cancelled = asyncio.create_task(asyncio.Event().wait())
    cancelled.add_done_callback(partial(_stop_if_failed, cancelled_stop))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait([failed, cancelled])
    await asyncio.sleep(0)  # done callbacks run on the next turn

    assert (True, False) == (failed_stop.is_set(), cancelled_stop.is_set())
