"""Known content's commands: ``bank add`` puts an image into a hash bank on the bank topic."""

from __future__ import annotations

import os

import click

from worker.cli.base import fatal
from worker.settings import Settings


@click.group()
def bank() -> None:
    """Hash banks of known images (docs/known-content.md)."""


@bank.command("add")
@click.option("--bank", "bank_name", required=True, help="the bank's name (created if new)")
@click.option(
    "--action",
    required=True,
    type=click.Choice(["reject", "needs_review", "approve"]),
    help="what a match in this bank decides",
)
@click.option(
    "--pdq-threshold", type=click.IntRange(0, 256), default=31, show_default=True, help="PDQ match distance"
)
@click.argument("image")
def bank_add(bank_name: str, action: str, pdq_threshold: int, image: str) -> int:
    """Add IMAGE (a file, or an https URL fetched behind the SSRF guard) to a bank.

    Publishes the bank's definition and the image's SHA-256 and PDQ hashes to MODERATION_HASH_BANKS_TOPIC;
    every replica that follows the topic matches the image from then on, without a restart.
    """
    import asyncio  # noqa: PLC0415 - commands import what they need when they run
    from pathlib import Path  # noqa: PLC0415

    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from worker.content.bank_source import (  # noqa: PLC0415 - needs the content extra
        BankImage,
        bank_from_document,
        definition_record,
        image_record,
        publish_bank_records,
    )
    from worker.content.fetch import FetchRefused, GuardedFetcher  # noqa: PLC0415
    from worker.content.hashes import content_hashes  # noqa: PLC0415
    from worker.errors import ConfigurationError  # noqa: PLC0415

    settings = Settings.from_env(os.environ, need_analyzer=False)
    try:
        definition, _ = bank_from_document(
            {"bank": bank_name, "action": action, "pdq_threshold": pdq_threshold}
        )
    except ValueError as exc:
        raise ConfigurationError(f"--bank {bank_name}: {exc}") from exc

    async def fetched(url: str) -> bytes:
        fetcher = GuardedFetcher(max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s)
        try:
            return (await fetcher.fetch(url)).data
        finally:
            await fetcher.aclose()

    try:
        data = asyncio.run(fetched(image)) if "://" in image else Path(image).read_bytes()
    except (OSError, FetchRefused) as exc:
        raise click.ClickException(f"cannot read {image}: {exc}") from None
    hashes = content_hashes(data)
    entry = BankImage(hashes.sha256, hashes.pdq)
    try:
        records = [definition_record(definition), image_record(definition.name, entry)]
        asyncio.run(publish_bank_records(settings, records))
    except KafkaError as exc:
        return fatal(exc)
    quality = (
        "no PDQ (not a decodable picture)" if hashes.pdq is None else f"PDQ quality {hashes.pdq_quality}"
    )
    click.echo(f"added sha256:{hashes.sha256[:16]}... ({quality}) to bank {bank_name} ({action})")
    click.echo(f"published to {settings.hash_banks_topic}")
    return 0
