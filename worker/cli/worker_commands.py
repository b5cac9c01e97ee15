"""The worker's own commands: ``run``, ``config`` and ``topics create`` (``hold`` is in
``worker.cli.intervention_commands``)."""

from __future__ import annotations

import json
import os

import click

from worker.cli.base import SettingsHelp, fatal
from worker.setting_values import variable
from worker.settings import Settings


@click.command(cls=SettingsHelp)
def run() -> int:
    """Run the worker until SIGTERM or SIGINT.

    Configured by the MODERATION_* environment variables below. Exit codes: 0 after a clean stop, 2 on bad
    configuration, 3 after a fatal analyzer or Kafka error, 5 when the Kafka cluster cannot be reached
    (within MODERATION_KAFKA_STARTUP_TIMEOUT_S) or refuses the connection settings.
    """
    from worker.runner import serve  # noqa: PLC0415 - loads the Azure SDK: only for this command

    return serve(Settings.from_env(os.environ))


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["env", "json"]),
    default="env",
    show_default=True,
    help="KEY=value lines, or one JSON object",
)
def config(output_format: str) -> int:
    """Print the effective configuration, secrets masked.

    The environment over the defaults, as KEY=value lines (an env file) or JSON; a set secret shows as ***.
    The configuration is checked as `run` checks it: a bad one exits 2 naming every problem.
    """
    settings = Settings.from_env(os.environ)
    if output_format == "json":
        click.echo(json.dumps(settings.as_json(), indent=2))
    else:
        click.echo("\n".join(f"{name}={value}" for name, value in settings.as_environment().items()))
    return 0


@click.group()
def topics() -> None:
    """Kafka topics of the worker."""


@topics.command("create")
@click.option("--bootstrap-servers", help=f"overrides {variable('bootstrap_servers')}")
@click.option("--partitions", type=int, help=f"overrides {variable('topic_partitions')}")
@click.option("--replication", type=int, help=f"overrides {variable('topic_replication')}")
def topics_create(bootstrap_servers: str | None, partitions: int | None, replication: int | None) -> int:
    """Create the worker's topics that are missing (idempotent).

    The input, three result, dead-letter and control topics, and the audit topic when audit sampling is
    on; topics that exist are reported and left as they are.
    """
    import asyncio  # noqa: PLC0415 - commands import what they need when they run

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.kafka.topics import create_topics  # noqa: PLC0415

    overrides = {
        "bootstrap_servers": bootstrap_servers,
        "topic_partitions": partitions,
        "topic_replication": replication,
    }
    environ = dict(os.environ) | {
        variable(name): str(value) for name, value in overrides.items() if value is not None
    }
    settings = Settings.from_env(environ, need_analyzer=False)
    try:
        outcome = asyncio.run(create_topics(settings))
    except KafkaError as exc:
        return fatal(exc)
    for topic, state in outcome.items():
        click.echo(f"{state:8} {topic}")
    return 0
