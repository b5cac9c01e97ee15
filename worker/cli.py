"""The ``moderation-worker`` command line (click): parses arguments, then calls one library function.

Every command imports its module inside its body, so ``--help`` stays fast and ``dev broker`` never loads
the Azure SDK. ``main`` turns the errors an operator can fix into one line on stderr and an exit code:
0 clean stop, 2 configuration or usage error, 3 fatal analyzer/Kafka error, 5 the Kafka cluster cannot be
reached or refuses the connection settings (``KafkaConnectionFailed``, the same for every command that
connects); the dev commands add their own (1 cannot start, and the demo's 4 and 130).
docs/configuration.md ("Exit codes") lists them all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from worker import __version__
from worker.dev.broker_config import DEFAULT_DATA_DIR, DEFAULT_KAFKA_VERSION, DEFAULT_PORT
from worker.errors import ConfigurationError, KafkaConnectionFailed
from worker.settings import Settings, variable

PROG = "moderation-worker"
EXIT_USAGE, EXIT_FATAL, EXIT_KAFKA, EXIT_INTERRUPTED = 2, 3, 5, 130
_PORT = click.IntRange(0, 65535)


class _CommandTree(click.Group):
    """A group whose help lists every command under its full name (``topics create``, ``dev broker``)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One row per runnable command, nested groups flattened, with its one-line description."""
        rows = [(name, command.get_short_help_str(limit=200)) for name, command in _leaves(self, ctx, ())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _leaves(
    group: click.Group, ctx: click.Context, prefix: tuple[str, ...]
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _leaves(command, ctx, (*prefix, name))
        elif command is not None and not command.hidden:
            yield " ".join((*prefix, name)), command


class _SettingsHelp(click.Command):
    """A command whose help ends with every setting: variable, meaning and default, from the model."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Per setting, ``VARIABLE  [default: D]`` on one unwrapped line, then its meaning indented below."""
        with formatter.section("Settings (environment variables, see docs/configuration.md)"):
            for doc in Settings.documented():
                formatter.write(
                    f"{'':>{formatter.current_indent}}{doc.variable}  [default: {doc.default or '-'}]\n"
                )
                with formatter.indentation():
                    formatter.write_text(doc.meaning)
        super().format_epilog(ctx, formatter)


@click.group(
    cls=_CommandTree, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120}
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Streaming image moderation: Kafka in, Azure AI Vision Image Analysis 4.0, policy, three routes out.

    Every setting is a MODERATION_* environment variable: `moderation-worker run --help` lists them.
    """


@cli.command(cls=_SettingsHelp)
def run() -> int:
    """Run the worker until SIGTERM or SIGINT.

    Configured by the MODERATION_* environment variables below. Exit codes: 0 after a clean stop, 2 on bad
    configuration, 3 after a fatal analyzer or Kafka error, 5 when the Kafka cluster cannot be reached
    (within MODERATION_KAFKA_STARTUP_TIMEOUT_S) or refuses the connection settings.
    """
    from worker.runner import serve  # noqa: PLC0415 - loads the Azure SDK: only for this command

    return serve(Settings.from_env(os.environ))


@cli.command()
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


@cli.group()
def topics() -> None:
    """Kafka topics of the worker."""


@topics.command("create")
@click.option("--bootstrap-servers", help=f"overrides {variable('bootstrap_servers')}")
@click.option("--partitions", type=int, help=f"overrides {variable('topic_partitions')}")
@click.option("--replication", type=int, help=f"overrides {variable('topic_replication')}")
def topics_create(bootstrap_servers: str | None, partitions: int | None, replication: int | None) -> int:
    """Create the worker's topics that are missing (idempotent).

    The input, three result, dead-letter and control topics; topics that exist are reported and left as
    they are.
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
        return _fatal(exc)
    for topic, state in outcome.items():
        click.echo(f"{state:8} {topic}")
    return 0


@cli.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--reason", help="why, for the reviewers and the audit trail")
@click.option(
    "--by", "issued_by", default=lambda: os.environ.get("USER"), show_default="$USER", help="who issues it"
)
def hold(state: str, reason: str | None, issued_by: str | None) -> int:
    """Turn the reviewers' hold on or off (while on, approvals go to needs-review).

    Publishes one control.v1 record to MODERATION_CONTROL_TOPIC; every replica follows it at once.
    """
    import asyncio  # noqa: PLC0415 - commands import what they need when they run

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.kafka.control import publish_hold  # noqa: PLC0415

    settings = Settings.from_env(os.environ, need_analyzer=False)
    try:
        asyncio.run(publish_hold(settings, active=state == "on", reason=reason, issued_by=issued_by))
    except KafkaError as exc:
        return _fatal(exc)
    click.echo(f"hold {state} published to {settings.control_topic}")
    return 0


@cli.command()
@click.option(
    "--kafka-port", type=_PORT, default=0, show_default=True, help="broker client port (0: any free)"
)
@click.option(
    "--emulator-port", type=_PORT, default=0, show_default=True, help="vision emulator port (0: any free)"
)
@click.option(
    "--samples-port", type=_PORT, default=0, show_default=True, help="https image server port (0: any free)"
)
@click.option(
    "--metrics-port", type=_PORT, default=0, show_default=True, help="worker /metrics port (0: any free)"
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="broker data, images, certificate and log [default: $MODERATION_CACHE_DIR/demo, else .cache/demo]",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="how long the worker may take to route all",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="submit each image N times (ids get -r2, -r3...); shows pacing",
)
def demo(
    *,
    kafka_port: int,
    emulator_port: int,
    samples_port: int,
    metrics_port: int,
    work_dir: Path | None,
    timeout_s: float,
    repeat: int,
) -> int:
    """Run the whole pipeline on this machine with sample images, then stop.

    Starts a broker, the emulator (offline model) and the worker, routes the bundled samples end to end and
    prints a summary.

    Exit codes: 0 every sample routed, 1 a prerequisite is missing or a component failed, 2 bad options,
    3 the worker stopped on a fatal error, 4 not every sample was routed in time, 130 interrupted.
    """
    from worker.dev.broker import default_cache_root  # noqa: PLC0415 - commands import what they need
    from worker.dev.demo.run import DemoOptions, run_demo  # noqa: PLC0415

    options = DemoOptions(
        work_dir=(work_dir if work_dir is not None else default_cache_root(os.environ) / "demo").resolve(),
        kafka_port=kafka_port,
        emulator_port=emulator_port,
        samples_port=samples_port,
        metrics_port=metrics_port,
        timeout_s=timeout_s,
        repeat=repeat,
    )
    return run_demo(options)


@cli.group()
def dev() -> None:
    """Development tools: an embedded Kafka broker and the vision emulator."""


@dev.command("broker")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="kept across restarts",
)
@click.option(
    "--port",
    type=_PORT,
    default=DEFAULT_PORT,
    show_default=True,
    help="client port on 127.0.0.1 (0: any free)",
)
@click.option(
    "--version",
    "kafka_version",
    default=DEFAULT_KAFKA_VERSION,
    show_default=True,
    help="Apache Kafka version from Maven Central",
)
@click.option(
    "--secure",
    is_flag=True,
    help="also listen with SASL_SSL (SCRAM-SHA-512) and mutual TLS, on free ports, with a throwaway CA",
)
def dev_broker(data_dir: Path, port: int, kafka_version: str, *, secure: bool) -> int:
    """Run a single-node Apache Kafka (KRaft) until SIGTERM or Ctrl-C.

    Prints `broker ready bootstrap=HOST:PORT` once it answers; with --secure, then the MODERATION_* settings
    of its SASL_SSL and mutual-TLS listeners (the throwaway password included). Exit codes: 0 after a clean
    stop, 1 when it cannot start (no Java, no jars, no openssl, port taken) or stop.
    """
    from worker.dev.broker_command import run_broker  # noqa: PLC0415 - commands import what they need

    return run_broker(data_dir, port=port, version=kafka_version, environ=os.environ, secure=secure)


@dev.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=_PORT, default=8500, show_default=True, help="port to listen on (0: any free)")
@click.option(
    "--key", default="emulator-key", show_default=True, help="the accepted Ocp-Apim-Subscription-Key"
)
@click.option(
    "--fixtures",
    type=click.Path(dir_okay=False, path_type=Path),
    help="fixtures JSON file (docs/emulator.md)",
)
@click.option(
    "--latency-ms", type=int, default=0, show_default=True, help="extra latency of every analyze call"
)
@click.option("--rate-limit", type=int, help="analyze calls admitted per window; 429 above")
@click.option("--rate-window-s", type=float, default=1.0, show_default=True, help="the rate limit's window")
@click.option("--route-prefix", help="serve only PREFIX/computervision/... [default: any prefix]")
@click.option(
    "--model",
    is_flag=True,
    help="model mode: fetch each URL and tag its pixels with the offline model (model extra)",
)
@click.option(
    "--fetch-timeout-s", type=float, default=10.0, show_default=True, help="model mode: deadline of one fetch"
)
def dev_emulator(
    *,
    host: str,
    port: int,
    key: str,
    fixtures: Path | None,
    latency_ms: int,
    rate_limit: int | None,
    rate_window_s: float,
    route_prefix: str | None,
    model: bool,
    fetch_timeout_s: float,
) -> int:
    """Serve the Image Analysis 4.0 API from fixtures until SIGTERM or Ctrl-C.

    Prints `emulator ready endpoint=URL` once it listens. Exit codes: 0 after a clean stop, 1 when the port
    cannot be bound, 2 on bad options or fixtures, or --model without the model extra.
    """
    from worker.dev.emulator.standalone import serve_emulator  # noqa: PLC0415 - commands import what they need

    return serve_emulator(
        host=host,
        port=port,
        key=key,
        fixtures=fixtures,
        latency_ms=latency_ms,
        rate_limit=rate_limit,
        rate_window_s=rate_window_s,
        route_prefix=route_prefix,
        model=model,
        fetch_timeout_s=fetch_timeout_s,
    )


def _fatal(error: Exception) -> int:
    """One line naming a Kafka error that stopped a command; exit code 3."""
    text, name = str(error), type(error).__name__
    click.echo(f"{PROG}: fatal: {text if text.startswith(name) else f'{name}: {text}'}", err=True)
    return EXIT_FATAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: the process's arguments); returns the exit code."""
    try:
        result = cli.main(args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=False)
    except click.ClickException as exc:  # unknown command, bad option or value: usage on stderr
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C before a command installed its own handler
        click.echo(f"{PROG}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except ConfigurationError as exc:
        click.echo(f"{PROG}: configuration error: {exc}", err=True)
        return EXIT_USAGE
    except KafkaConnectionFailed as exc:  # the message names broker, cause and settings, never a password
        click.echo(f"{PROG}: cannot use Kafka: {exc}", err=True)
        return EXIT_KAFKA
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
