"""The development commands: ``demo`` and the ``dev`` group (``dev broker``, ``dev emulator``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from worker.cli.base import PORT
from worker.dev.broker_config import DEFAULT_DATA_DIR, DEFAULT_KAFKA_VERSION, DEFAULT_PORT


@click.command()
@click.option(
    "--kafka-port", type=PORT, default=0, show_default=True, help="broker client port (0: any free)"
)
@click.option(
    "--emulator-port", type=PORT, default=0, show_default=True, help="vision emulator port (0: any free)"
)
@click.option(
    "--samples-port", type=PORT, default=0, show_default=True, help="https image server port (0: any free)"
)
@click.option(
    "--metrics-port", type=PORT, default=0, show_default=True, help="worker /metrics port (0: any free)"
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
@click.option(
    "--review", is_flag=True, help="then leave the review console running over the needs-review items"
)
@click.option(
    "--review-port", type=PORT, default=0, show_default=True, help="review console port (0: any free)"
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
    review: bool,
    review_port: int,
) -> int:
    """Run the whole pipeline on this machine with sample images, then stop.

    Starts a broker, the emulator (offline model) and the worker, routes the bundled samples end to end and
    prints a summary. With --review the review console then serves the needs-review items until Ctrl-C.

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
        review=review,
        review_port=review_port,
    )
    return run_demo(options)


@click.group()
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
    type=PORT,
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
@click.option("--port", type=PORT, default=8500, show_default=True, help="port to listen on (0: any free)")
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
