"""Real-time intervention commands: ``hold``, ``pause``, ``resume`` and ``policy apply|rollback|status``.

Each publishes one ``control.v1`` record to MODERATION_CONTROL_TOPIC (or reads that topic) and returns; every
replica follows the topic within about a second (docs/intervention.md). Exit codes: 0 done, 2 a bad policy
file or configuration (nothing was published), 3 a Kafka error while publishing, 5 Kafka unreachable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import click

from worker.cli.base import fatal
from worker.settings import Settings

_Result = TypeVar("_Result")

_REASON = click.option("--reason", help="why, for the reviewers and the audit trail")
_BY = click.option(
    "--by", "issued_by", default=lambda: os.environ.get("USER"), show_default="$USER", help="who issues it"
)


def _run(step: Awaitable[_Result]) -> _Result | int:
    """Run one library coroutine; a Kafka error becomes its one line and exit code 3."""
    import asyncio  # noqa: PLC0415 - commands import what they need when they run

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    async def _awaited() -> _Result:
        return await step

    try:
        return asyncio.run(_awaited())
    except KafkaError as exc:
        return fatal(exc)


def _settings() -> Settings:
    return Settings.from_env(os.environ, need_analyzer=False)


@click.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@_REASON
@_BY
def hold(state: str, reason: str | None, issued_by: str | None) -> int:
    """Turn the reviewers' hold on or off (while on, approvals go to needs-review).

    Publishes one control.v1 record to MODERATION_CONTROL_TOPIC; every replica follows it at once.
    """
    from worker.kafka.control import publish_hold  # noqa: PLC0415

    settings = _settings()
    failed = _run(publish_hold(settings, active=state == "on", reason=reason, issued_by=issued_by))
    if isinstance(failed, int):
        return failed
    click.echo(f"hold {state} published to {settings.control_topic}")
    return 0


def _publish_intake(*, paused: bool, reason: str | None, issued_by: str | None) -> int:
    from worker.intervention import INTAKE_KEY, intake_command  # noqa: PLC0415
    from worker.kafka.control import publish_control  # noqa: PLC0415

    settings = _settings()
    value = intake_command(paused=paused, reason=reason, issued_by=issued_by, now=datetime.now(UTC))
    failed = _run(publish_control(settings, [(INTAKE_KEY, value)]))
    if isinstance(failed, int):
        return failed
    click.echo(f"{'pause' if paused else 'resume'} published to {settings.control_topic}")
    return 0


@click.command()
@_REASON
@_BY
def pause(reason: str | None, issued_by: str | None) -> int:
    """Stop intake on every replica (incidents): in-flight records finish, nothing new is consumed.

    Replicas stay in the consumer group and ready; lag grows until `resume`. Nothing is lost.
    """
    return _publish_intake(paused=True, reason=reason, issued_by=issued_by)


@click.command()
@_REASON
@_BY
def resume(reason: str | None, issued_by: str | None) -> int:
    """Restart intake on every replica after `pause`."""
    return _publish_intake(paused=False, reason=reason, issued_by=issued_by)


@click.group()
def policy() -> None:
    """The live policy of every replica, on the control topic."""


@policy.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_REASON
@_BY
def policy_apply(file: Path, reason: str | None, issued_by: str | None) -> int:
    """Validate a policy file as the worker does at start, then switch every replica to it (within 2 s).

    A bad policy exits 2 with one message and publishes nothing. The policy replaced is kept for rollback.
    """
    from worker.kafka.policy_channel import apply_policy  # noqa: PLC0415

    settings = _settings()
    applied = _run(apply_policy(settings, file, reason=reason, issued_by=issued_by))
    if isinstance(applied, int):
        return applied
    click.echo(f"policy {applied.version} published to {settings.control_topic}")
    return 0


@policy.command("rollback")
@_REASON
@_BY
def policy_rollback(reason: str | None, issued_by: str | None) -> int:
    """Return every replica to the policy the current one replaced (their own files if it replaced those).

    Exits 2 when no policy was ever applied.
    """
    from worker.kafka.policy_channel import rollback_policy  # noqa: PLC0415

    settings = _settings()
    back = _run(rollback_policy(settings, reason=reason, issued_by=issued_by))
    if isinstance(back, int):
        return back
    click.echo(f"policy {back.version or 'of each replica file'} published to {settings.control_topic}")
    return 0


@policy.command("status")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="a table, or one JSON object",
)
def policy_status(output_format: str) -> int:
    """Show the applied policy and what each replica runs (its own report on the control topic).

    A replica silent for more than three heartbeats is marked stale (killed, or cut off from Kafka).
    """
    from worker.kafka.policy_channel import policy_status as read_status  # noqa: PLC0415
    from worker.kafka.replica_status import HEARTBEAT_S  # noqa: PLC0415

    status = _run(read_status(_settings()))
    if isinstance(status, int):
        return status
    now = datetime.now(UTC)
    rows = [
        status_row._asdict()
        | {"stale": now - datetime.fromisoformat(status_row.reported_at) > timedelta(seconds=3 * HEARTBEAT_S)}
        for status_row in status.replicas
    ]
    if output_format == "json":
        click.echo(json.dumps({"applied_policy_version": status.applied.version, "replicas": rows}, indent=2))
        return 0
    click.echo(f"applied policy: {status.applied.version or 'none (each replica runs its policy file)'}")
    for row in rows:
        flags = [name for name in ("paused", "hold", "stale") if row[name]]
        click.echo(
            f"{row['replica_id']}  {row['policy_version']}  {row['policy_source']}  "
            f"reported {row['reported_at']}  {' '.join(flags)}".rstrip()
        )
    return 0
