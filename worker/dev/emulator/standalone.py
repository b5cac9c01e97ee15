"""The emulator as its own process (``moderation-worker dev emulator``): options in, serve until a signal.

Tests and the demo embed ``Emulator`` directly; this module adds what only a standalone process needs: the
fixtures file, the optional model mode, the ready line on stdout, signal handling and the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from worker.dev.emulator.fixtures import FixtureError, load_fixtures
from worker.dev.emulator.image_fetch import HttpImageFetcher
from worker.dev.emulator.server import Emulator
from worker.dev.emulator.state import EmulatorConfig, SlidingWindowLimiter, TagSource
from worker.errors import ConfigurationError


def serve_emulator(
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
    """Serve the Image Analysis 4.0 API on ``host:port`` until SIGTERM or Ctrl-C; returns the exit code.

    ``model`` answers unscripted images from their pixels: each URL is fetched (``HttpImageFetcher``, system
    CAs, ``fetch_timeout_s`` per image) and tagged by the offline model; fixtures still win. Exit code 0 on a
    clean stop, 1 if the port cannot be bound, 2 on a bad fixtures file or rate limit, or ``model`` without
    the model extra; the reason goes to stderr in one line. Nothing is bound before the options are checked.
    """
    fetcher: HttpImageFetcher | None = None
    try:
        config = EmulatorConfig(
            key=key,
            fixtures=load_fixtures(fixtures) if fixtures else {},
            latency_ms=latency_ms,
            rate_limit_per_s=rate_limit,
            rate_window_s=rate_window_s,
            route_prefix=route_prefix,
        )
        if rate_limit is not None:
            SlidingWindowLimiter(rate_limit, rate_window_s, time.monotonic)  # validate early
        if model:
            tag_source, fetcher, model_version = _model_mode(fetch_timeout_s)
            config = replace(config, tag_source=tag_source, fetcher=fetcher, model_version=model_version)
    except (OSError, FixtureError, ValueError, ConfigurationError) as exc:
        sys.stderr.write(f"emulator: {exc}\n")
        return 2
    try:
        asyncio.run(_serve(config, host, port, fetcher=fetcher))
    except OSError as exc:  # typically the port is taken
        sys.stderr.write(f"emulator: cannot serve on {host}:{port}: {exc}\n")
        return 1
    return 0


async def _serve(
    config: EmulatorConfig, host: str, port: int, *, fetcher: HttpImageFetcher | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if fetcher is not None:  # its session lives in this loop and must close in it
            await stack.enter_async_context(fetcher)
        emulator = await stack.enter_async_context(Emulator(config, host=host, port=port))
        sys.stdout.write(f"emulator ready endpoint={emulator.endpoint}\n")
        sys.stdout.flush()
        await stop.wait()


def _model_mode(fetch_timeout_s: float) -> tuple[TagSource, HttpImageFetcher, str]:
    """The offline model as tag source, a fetcher trusting the system's CAs, and the model's version.

    Raises ``ConfigurationError`` when the ``model`` extra is missing; loading takes about 0.3 s.
    """
    from worker.dev.emulator.model_tags import ModelTagSource  # noqa: PLC0415 - optional extra, loaded on demand

    tag_source = ModelTagSource()
    return tag_source, HttpImageFetcher(timeout_s=fetch_timeout_s), tag_source.model_version
