"""``moderation-worker dev broker``: run one ``EmbeddedKafka`` until SIGTERM or Ctrl-C, say how to reach it.

It prints ``broker ready bootstrap=HOST:PORT`` once the broker answers; a secure broker (``--secure``) then
prints the worker's ``MODERATION_*`` settings for its SASL_SSL and mutual-TLS listeners, and writes them to
``<data>/secure/sasl_ssl.env`` and ``mtls.env`` (for ``MODERATION_ENV_FILE``). The SCRAM password is printed
here and nowhere else: it belongs to a throwaway broker on the loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from worker.dev.broker import BrokerError, EmbeddedKafka, default_cache_root

LISTENER_TITLES = {"sasl_ssl": "SASL_SSL with SCRAM-SHA-512", "mtls": "mutual TLS (SSL, client certificate)"}


def ready_lines(broker: EmbeddedKafka) -> list[str]:
    """What is announced once ``broker`` answers: the ready line, then each secure listener's settings."""
    lines = [f"broker ready bootstrap={broker.bootstrap_servers}"]
    if not broker.secure:
        return lines
    for listener, environment in broker.client_environments().items():
        env_file = broker.secure_files.directory / f"{listener}.env"
        lines.append(f"# {LISTENER_TITLES[listener]} (also in {env_file}):")
        lines += [f"{name}={value}" for name, value in environment.items()]
    return lines


def write_env_files(broker: EmbeddedKafka) -> None:
    """Write each secure listener's settings to ``<secure dir>/<listener>.env`` (owner-only folder)."""
    for listener, environment in broker.client_environments().items():
        text = "".join(f"{name}={value}\n" for name, value in environment.items())
        (broker.secure_files.directory / f"{listener}.env").write_text(text, encoding="utf-8")


async def serve(broker: EmbeddedKafka, announce: Callable[[str], None]) -> None:
    """Run ``broker`` until SIGTERM or SIGINT, calling ``announce`` with each ready line; stop it cleanly.

    A stop request during start-up (jar resolution can take a minute) cancels the start at once.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    starting = asyncio.ensure_future(broker.start())
    stopping = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()  # start() kills whatever it launched when cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await starting  # re-raises a start failure
        if not stop_requested.is_set():
            if broker.secure:
                write_env_files(broker)
            for line in ready_lines(broker):
                announce(line)
        await stopping
    finally:
        stopping.cancel()
        await broker.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run_broker(
    data_dir: Path, *, port: int, version: str, environ: Mapping[str, str], secure: bool = False
) -> int:
    """Run a broker on ``data_dir`` until SIGTERM or Ctrl-C, printing its ready lines on stdout.

    Returns 0 after a clean stop, 1 when it cannot start or stop (the reason in one line on stderr).
    ``environ`` supplies ``MODERATION_CACHE_DIR``, where the Kafka jars are kept.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("worker").setLevel(logging.INFO)
    broker = EmbeddedKafka(
        data_dir=data_dir, port=port, version=version, cache_dir=default_cache_root(environ), secure=secure
    )

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(serve(broker, announce))
    except BrokerError as exc:
        sys.stderr.write(f"moderation-worker dev broker: {exc}\n")
        return 1
    sys.stderr.write(f"broker stopped; data kept in {broker.data_dir}, log in {broker.log_file}\n")
    return 0
