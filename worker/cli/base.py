"""What every command of the command line shares: the program name, the exit codes, the help layout.

The exit codes are the contract docs/configuration.md ("Exit codes") lists: 0 clean stop, 2 configuration
or usage error, 3 fatal analyzer/Kafka error, 5 the Kafka cluster cannot be reached or refuses the
connection settings, 6 ``evaluate`` found a policy missing a target given on its command line; the dev
commands add their own (1 cannot start, and the demo's 4 and 130).
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from worker.settings import Settings

PROG = "moderation-worker"
EXIT_USAGE, EXIT_FATAL, EXIT_KAFKA, EXIT_INTERRUPTED = 2, 3, 5, 130
#: ``evaluate``: the policy misses a target given with --target-*, so a CI job can gate a rollout on it.
EXIT_TARGETS_MISSED = 6
PORT = click.IntRange(0, 65535)


class CommandTree(click.Group):
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


class SettingsHelp(click.Command):
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


def fatal(error: Exception) -> int:
    """One line naming a Kafka error that stopped a command; exit code 3."""
    text, name = str(error), type(error).__name__
    click.echo(f"{PROG}: fatal: {text if text.startswith(name) else f'{name}: {text}'}", err=True)
    return EXIT_FATAL
