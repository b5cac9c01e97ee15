"""Command line: the composition root that reads the environment, builds real clients and starts servers.

``moderation-worker run | topics create | hold on|off | demo | dev broker | dev emulator``; each
subcommand module owns its own argument parsing and returns a process exit code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Subcommand words -> "module:function"; imported lazily so `dev broker` does not load the Azure SDK.
COMMANDS: dict[tuple[str, ...], str] = {
    ("run",): "worker.runner:main",
    ("topics", "create"): "worker.kafka.topics:main",
    ("hold",): "worker.kafka.control:main",
    ("demo",): "worker.dev.demo.run:main",
    ("dev", "broker"): "worker.dev.broker:main",
    ("dev", "emulator"): "worker.dev.emulator.server:main",
}

USAGE = "usage: moderation-worker {run | topics create | hold on|off | demo | dev broker | dev emulator}"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the subcommand named by the leading words of ``argv``."""
    args = list(sys.argv[1:] if argv is None else argv)
    for words, target in sorted(COMMANDS.items(), key=lambda item: -len(item[0])):
        if tuple(args[: len(words)]) == words:
            module_name, function_name = target.split(":")
            command = getattr(importlib.import_module(module_name), function_name)
            return int(command(args[len(words) :]))
    print(USAGE, file=sys.stderr)  # noqa: T201 - the CLI's own usage line
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
