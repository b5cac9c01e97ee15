"""The ``moderation-worker`` command line (click): parses arguments, then calls one library function.

Each capability's commands live in a module of their own here and are added to the one group below.
Every command imports its library module inside its body, so ``--help`` stays fast and ``dev broker``
never loads the Azure SDK. ``main`` turns the errors an operator can fix into one line on stderr and a
documented exit code (``worker.cli.base``; docs/configuration.md, "Exit codes").
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from worker import __version__
from worker.cli.bank_commands import bank
from worker.cli.base import EXIT_INTERRUPTED, EXIT_KAFKA, EXIT_USAGE, PROG, CommandTree
from worker.cli.dev_commands import demo, dev
from worker.cli.evaluate_commands import calibrate, evaluate
from worker.cli.intervention_commands import hold, pause, policy, resume
from worker.cli.replay_commands import replay
from worker.cli.review_commands import review
from worker.cli.worker_commands import config, run, topics
from worker.errors import ConfigurationError, KafkaConnectionFailed


@click.group(
    cls=CommandTree, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120}
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Streaming image moderation: Kafka in, Azure AI Vision Image Analysis 4.0, policy, three routes out.

    Every setting is a MODERATION_* environment variable: `moderation-worker run --help` lists them.
    """


_COMMANDS = (
    *(run, config, topics, hold, pause, resume, policy, review, evaluate, calibrate, replay, bank),
    *(demo, dev),
)
for _command in _COMMANDS:
    cli.add_command(_command)


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
