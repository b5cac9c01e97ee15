"""Reject and ban: a reviewer's reject that also puts the image into a hash bank, so no repost of it costs
another review or an analyzer call.

The console hashes the bytes it served the reviewer (``worker.content.hashes``: SHA-256 and PDQ), and the
verdict publishes, with its own records, the ban bank's definition (action ``reject``, the configured PDQ
distance) and the image to the hash-bank topic every replica follows (``worker.content.bank_source``, the
records ``moderation-worker bank add`` writes); the PDQ hash only when its quality is at least the
banks' ``MIN_PDQ_QUALITY``. The definition goes with every ban, so the bank exists
however new the topic is: the console owns its ban bank, which should be one of its own, not a bank an
operator curates by hand. Needs the ``content`` extra (pdqhash, Pillow, numpy); the console imports this
module only when ``MODERATION_REVIEW_BAN_BANK`` is set.
"""

from __future__ import annotations

import asyncio

from worker.content.bank_source import BankImage, bank_from_document, definition_record, image_record
from worker.content.banks import MIN_PDQ_QUALITY, Bank
from worker.content.hashes import content_hashes
from worker.errors import ConfigurationError
from worker.review.images import FetchRefused, ItemImages
from worker.review.items import ReviewItem
from worker.review.verdicts import BanEntry, OutRecord, VerdictRefused


def ban_bank(name: str, pdq_threshold: int) -> Bank:
    """The ban bank's definition (action reject); ``ConfigurationError`` for a name or distance a bank
    cannot have."""
    document = {"bank": name, "action": "reject", "pdq_threshold": pdq_threshold}
    try:
        bank, _ = bank_from_document(document)
    except ValueError as exc:
        raise ConfigurationError(f"MODERATION_REVIEW_BAN_BANK {name!r}: {exc}") from None
    return bank


class ImageBanner:
    """Makes the ``BanEntry`` of an item's image (read through ``images``) for ``bank`` on the hash-bank
    ``topic``."""

    def __init__(self, images: ItemImages, bank: Bank, *, topic: str) -> None:
        self._images = images
        self._bank = bank
        self._topic = topic

    @property
    def bank(self) -> str:
        """The name of the ban bank."""
        return self._bank.name

    async def entry(self, item: ReviewItem) -> BanEntry:
        """The hashes of ``item``'s image (the bytes the reviewer was shown) and the records adding it;
        ``VerdictRefused`` when the image cannot be read now."""
        try:
            image = await self._images.image(item.result.source)
        except FetchRefused as exc:
            raise VerdictRefused(f"the image cannot be banned: {exc}") from None
        hashes = await asyncio.to_thread(content_hashes, image.data)
        # A flat picture's PDQ says little and would ban look-alikes of nothing: the exact bytes only.
        perceptual = hashes.pdq if (hashes.pdq_quality or 0) >= MIN_PDQ_QUALITY else None
        records = (
            definition_record(self._bank),
            image_record(self._bank.name, BankImage(hashes.sha256, perceptual)),
        )
        return BanEntry(
            bank=self._bank.name,
            sha256=hashes.sha256,
            pdq=perceptual,
            pdq_quality=hashes.pdq_quality,
            records=tuple(OutRecord(self._topic, key, value) for key, value in records),
        )
