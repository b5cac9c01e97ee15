"""The review console's command: ``moderation-worker review``."""

from __future__ import annotations

import os

import click

from worker.cli.base import fatal


@click.command()
@click.option("--create-topics", is_flag=True, help="first create the console's topics that are missing")
def review(create_topics: bool) -> int:
    """Serve the review console over the needs-review, audit and escalation topics until SIGTERM or SIGINT.

    Configured by the worker's Kafka settings (MODERATION_BOOTSTRAP_SERVERS, MODERATION_KAFKA_*, the topic
    names) and MODERATION_REVIEW_* (docs/review.md): a token file or a trusted proxy is required. Exit codes:
    0 after a clean stop, 2 on bad configuration, 3 after a fatal Kafka error, 5 when the Kafka cluster cannot
    be reached or refuses the connection settings.
    """
    import asyncio  # noqa: PLC0415 - commands import what they need when they run

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.review.console import load_tokens, proxy_trust, serve_console  # noqa: PLC0415
    from worker.review.settings import ReviewSettings  # noqa: PLC0415
    from worker.review.topics import create_review_topics  # noqa: PLC0415
    from worker.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(os.environ, need_analyzer=False)
    review_settings = ReviewSettings.from_env(os.environ)
    load_tokens(review_settings)  # a bad token file or proxy list is a configuration error before connecting
    proxy_trust(review_settings)
    try:
        if create_topics:
            for topic, state in asyncio.run(create_review_topics(settings, review_settings)).items():
                click.echo(f"{state:8} {topic}")
        asyncio.run(
            serve_console(
                settings,
                review_settings,
                announce=lambda url: click.echo(f"review console listening on {url}"),
            )
        )
    except KafkaError as exc:
        return fatal(exc)
    return 0
