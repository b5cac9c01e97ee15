"""Where hash banks come from: bank files read at start, and the compacted ``moderation.hash-banks`` topic
followed for the whole run, so a bank change reaches every replica without a restart.

A bank file (JSON) is one bank::

    {"bank": "known-bad", "action": "reject", "pdq_threshold": 31,
     "hashes": [{"sha256": "<64 hex>", "pdq": "<64 hex>"}, {"sha256": "<64 hex>"}, {"pdq": "<64 hex>"}]}

The topic carries two kinds of record, both JSON: a bank's definition, keyed ``<bank>``
(``{"bank", "action", "pdq_threshold"}``), and one image of a bank, keyed ``<bank>/<sha256>`` (its PDQ hash
when it has no SHA-256; ``{"bank", "sha256", "pdq"}``). A tombstone (no value) removes what its key named.
Compaction keeps the latest record per key, so reading the topic from the start rebuilds every bank.
Invalid records are skipped and logged, never applied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.content.banks import DEFAULT_PDQ_THRESHOLD, Bank, BankAction, HashBanks
from worker.errors import ConfigurationError
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import open_cluster, start_explained
from worker.settings import Settings

log = logging.getLogger(__name__)

_HEX64: Final = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class BankImage:
    """One image of a bank: its SHA-256, its PDQ hash, or both (at least one)."""

    sha256: str | None
    pdq: str | None = None

    @property
    def identity(self) -> str:
        """What names the image in a topic key: its SHA-256, else its PDQ hash."""
        return self.sha256 or self.pdq or ""


def bank_from_document(document: object) -> tuple[Bank, list[BankImage]]:
    """A bank file's bank and images; ValueError naming the first problem."""
    if not isinstance(document, Mapping):
        raise ValueError("a bank file is a JSON object")  # noqa: TRY004 - bad input, not a caller's mistake
    bank = _bank(document)
    hashes = document.get("hashes", [])
    if not isinstance(hashes, list):
        raise ValueError("hashes must be a list")  # noqa: TRY004 - bad input
    return bank, [_image(entry) for entry in hashes]


def load_bank_files(paths: Iterable[Path], banks: HashBanks) -> None:
    """Define and fill a bank from each file; ``ConfigurationError`` naming the file and the problem."""
    for path in paths:
        try:
            bank, images = bank_from_document(orjson.loads(path.read_bytes()))
        except (OSError, ValueError) as exc:  # unreadable, not JSON, or not a bank
            raise ConfigurationError(f"MODERATION_HASH_BANK_FILES {path}: {exc}") from exc
        banks.define(bank)
        for image in images:
            banks.add(bank.name, sha256=image.sha256, pdq=image.pdq)
        log.info("hash_bank_loaded", extra={"bank": bank.name, "images": len(images), "file": str(path)})


def definition_record(bank: Bank) -> tuple[bytes, bytes]:
    """The topic record (key, value) that defines ``bank``."""
    value = {"bank": bank.name, "action": str(bank.action), "pdq_threshold": bank.pdq_threshold}
    return bank.name.encode(), orjson.dumps(value)


def image_record(bank: str, image: BankImage) -> tuple[bytes, bytes]:
    """The topic record (key, value) that adds ``image`` to ``bank``."""
    value = {"bank": bank, "sha256": image.sha256, "pdq": image.pdq}
    return f"{bank}/{image.identity}".encode(), orjson.dumps(value)


class BankUpdates:
    """Applies topic records to ``HashBanks``; remembers what each key added, so a tombstone can undo it."""

    def __init__(self, banks: HashBanks) -> None:
        self._banks = banks
        self._images: dict[str, tuple[str, BankImage]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record; False (and a log line) when it is invalid and was skipped."""
        try:
            self._apply(key.decode() if key else "", value)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            log.warning("hash_bank_record_invalid", extra={"problem": str(exc)[:200]})
            return False
        return True

    def _apply(self, key: str, value: bytes | None) -> None:
        bank_name, slash, identity = key.partition("/")
        if value is None:  # a tombstone
            if not slash:
                self._banks.drop(bank_name)
            elif (known := self._images.pop(key, None)) is not None:
                self._banks.remove(known[0], sha256=known[1].sha256, pdq=known[1].pdq)
            return
        document = orjson.loads(value)
        if not isinstance(document, Mapping) or document.get("bank") != bank_name:
            raise ValueError(f"record {key!r} names another bank than its key")
        if not slash:
            self._banks.define(_bank(document))
            return
        image = _image(document)
        if image.identity != identity:
            raise ValueError(f"record {key!r} carries another hash than its key")
        previous = self._images.get(key)
        self._banks.add(bank_name, sha256=image.sha256, pdq=image.pdq)  # KeyError: bank not defined yet
        if previous is not None and previous[1].pdq != image.pdq:
            self._banks.remove(bank_name, pdq=previous[1].pdq)
        self._images[key] = (bank_name, image)


async def publish_bank_records(settings: Settings, records: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Publish ``(key, value)`` records to the bank topic and wait for every acknowledgement.

    Connects as the worker does (``open_cluster``: waits for the cluster, raises ``KafkaConnectionFailed``).
    """
    async with open_cluster(settings) as options:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            **options.client_kwargs(),
        )
        try:  # stop() also after a failed start(): it closes what start() opened
            await start_explained(
                producer.start, settings.bootstrap_servers, settings.kafka_security(), options
            )
            for key, value in records:
                await producer.send_and_wait(settings.hash_banks_topic, value, key=key)
        finally:
            await producer.stop()


class RecordSink(Protocol):
    """What a followed topic's records are applied to (``BankUpdates``, ``AnalysisCache``)."""

    def apply(self, key: bytes | None, value: bytes | None) -> bool: ...


async def follow_compacted_topic(
    bootstrap_servers: str,
    topic: str,
    updates: RecordSink,
    *,
    options: ConnectionOptions,
    on_caught_up: Callable[[], None] = lambda: None,
) -> None:
    """Read ``topic`` from the start forever (no consumer group: every replica reads all of it), applying
    each record; ``on_caught_up`` is called once the records present at start have been applied."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options.client_kwargs(),
    )
    await consumer.start()
    caught_up = False
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    updates.apply(record.key, record.value)
            if not caught_up and await _at_end(consumer):
                caught_up = True
                on_caught_up()
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer) -> bool:
    partitions = consumer.assignment()
    if not partitions:
        return False
    ends = await consumer.end_offsets(list(partitions))
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def _bank(document: Mapping[str, object]) -> Bank:
    name, action = document.get("bank"), document.get("action")
    threshold = document.get("pdq_threshold", DEFAULT_PDQ_THRESHOLD)
    if not isinstance(name, str) or not isinstance(action, str):
        raise ValueError("a bank needs a name (bank) and an action")  # noqa: TRY004 - bad input
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise ValueError("pdq_threshold must be an integer")  # noqa: TRY004 - bad input
    try:
        bank_action = BankAction(action)
    except ValueError:
        raise ValueError(f"action must be one of {', '.join(BankAction)}") from None
    if "/" in name:
        raise ValueError("a bank's name cannot contain '/'")
    return Bank(name, bank_action, threshold)


def _image(entry: object) -> BankImage:
    if not isinstance(entry, Mapping):
        raise ValueError("each image is an object with sha256 and pdq")  # noqa: TRY004 - bad input
    sha256, pdq = _hex_or_none(entry, "sha256"), _hex_or_none(entry, "pdq")
    if sha256 is None and pdq is None:
        raise ValueError("an image needs a sha256, a pdq hash or both")
    return BankImage(sha256, pdq)


def _hex_or_none(entry: Mapping[str, object], name: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ValueError(f"{name} must be 64 lower-case hex digits or null")
    return value
