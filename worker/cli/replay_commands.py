"""The evaluation commands: ``replay``, which re-decides the kept analyses under another policy."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from worker.cli.base import fatal
from worker.setting_values import variable
from worker.settings import Settings


class Moment(click.ParamType[datetime]):
    """A point in time: ISO 8601 (no offset means UTC) or an age such as ``90m``, ``24h``, ``7d``."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        """The aware datetime ``value`` names; a usage error (exit 2) when it is neither form."""
        if isinstance(value, datetime):
            return value
        from worker.evaluation.replay import parse_moment  # noqa: PLC0415 - commands import what they need

        try:
            return parse_moment(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the candidate policy file (policy.v1)",
)
@click.option("--since", type=Moment(), help="first Kafka timestamp replayed: ISO 8601 or an age (24h, 7d)")
@click.option("--until", type=Moment(), help="last Kafka timestamp replayed (default: the end at start)")
@click.option(
    "--examples", type=click.IntRange(0, 1000), default=5, show_default=True, help="example ids per change"
)
@click.option("--topic", help=f"overrides {variable('analyses_topic')}")
@click.option("--json", "as_json", is_flag=True, help="one JSON document instead of text")
def replay(
    *,
    policy_file: Path,
    since: datetime | None,
    until: datetime | None,
    examples: int,
    topic: str | None,
    as_json: bool,
) -> int:
    """Re-decide the kept analyses under a new policy and report what would change.

    Reads MODERATION_ANALYSES_TOPIC (analysis.v1) from --since to the end seen at start, decides each analysis
    again under --policy without calling the analyzer, and prints the counts by (old, new) decision with
    examples of each change (ids, redacted URLs). Produces and commits nothing. Exit codes: 0 done, 2 bad
    configuration or policy file, 3 a Kafka error while reading, 5 the cluster cannot be reached.
    """
    import asyncio  # noqa: PLC0415 - commands import what they need when they run

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.contracts import Contracts  # noqa: PLC0415
    from worker.evaluation.replay import ReplayWindow  # noqa: PLC0415
    from worker.evaluation.replay import replay as replay_analyses  # noqa: PLC0415
    from worker.policy_file import load_policy  # noqa: PLC0415

    settings = Settings.from_env(os.environ, need_analyzer=False)
    contracts = Contracts.load()
    policy = load_policy(policy_file, contracts=contracts)
    window = ReplayWindow(since, until)
    try:
        report = asyncio.run(
            replay_analyses(
                settings, policy, window=window, examples=examples, contracts=contracts, topic=topic
            )
        )
    except KafkaError as exc:
        return fatal(exc)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.to_text(), nl=not as_json)
    return 0
