"""Hash banks: exact and perceptual matching, which match decides, live changes, and where banks come
from (files and topic records)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from worker.content.bank_source import (
    BankImage,
    BankUpdates,
    definition_record,
    image_record,
    load_bank_files,
)
from worker.content.banks import Bank, BankAction, BankMatch, HashBanks, HashKind
from worker.domain import Decision, Reason, Verdict
from worker.errors import ConfigurationError
from worker.records import ContentHashes

RNG = random.Random(14)


def _hex() -> str:
    return f"{RNG.getrandbits(256):064x}"


def _flip(pdq: str, bits: int) -> str:
    """``pdq`` with its lowest ``bits`` bits inverted: exactly that Hamming distance away."""
    return f"{int(pdq, 16) ^ ((1 << bits) - 1):064x}"


def _image(sha256: str | None = None, pdq: str | None = None, quality: int = 100) -> ContentHashes:
    return ContentHashes(sha256 or _hex(), pdq, quality if pdq else None)


def _banks(*banks: Bank) -> HashBanks:
    book = HashBanks()
    for bank in banks:
        book.define(bank)
    return book


REJECT = Bank("known-bad", BankAction.REJECT, pdq_threshold=31)
REVIEW = Bank("suspect", BankAction.NEEDS_REVIEW, pdq_threshold=40)
APPROVE = Bank("catalogue", BankAction.APPROVE, pdq_threshold=10)


def test_an_exact_sha256_match_names_the_bank_and_distance_zero() -> None:
    """The reason says which bank, which hash and how far: ``bank=known-bad hash=sha256 distance=0``."""
    banks, sha256 = _banks(REJECT), _hex()
    banks.add(REJECT.name, sha256=sha256)
    match = banks.match(_image(sha256))
    expected = Verdict(
        Decision.REJECTED, (Reason("hash_bank", detail="bank=known-bad hash=sha256 distance=0"),)
    )
    assert (BankMatch(REJECT, HashKind.SHA256, 0), expected) == (match, match.verdict() if match else None)


@pytest.mark.parametrize(
    ("distance", "matched"), [(0, True), (30, True), (31, True), (32, False), (128, False)]
)
def test_pdq_matches_up_to_the_banks_threshold(distance: int, matched: bool) -> None:
    """The threshold is inclusive: 31 matches in a bank of threshold 31, 32 does not."""
    banks, pdq = _banks(REJECT), _hex()
    banks.add(REJECT.name, pdq=pdq)
    expected = BankMatch(REJECT, HashKind.PDQ, distance) if matched else None
    assert expected == banks.match(_image(pdq=_flip(pdq, distance)))


def test_a_low_quality_hash_is_not_matched_perceptually() -> None:
    """Below PDQ quality 50 a picture is too flat for its hash to identify it; SHA-256 still matches."""
    banks, pdq, sha256 = _banks(REJECT), _hex(), _hex()
    banks.add(REJECT.name, pdq=pdq, sha256=sha256)
    assert (None, HashKind.SHA256) == (
        banks.match(_image(pdq=pdq, quality=49)),
        getattr(banks.match(_image(sha256, pdq=pdq, quality=49)), "kind", None),
    )


def test_the_most_severe_bank_wins_then_exact_then_nearest() -> None:
    """An image in an approve bank and, perceptually, in a reject bank is rejected."""
    banks, pdq, sha256 = _banks(REJECT, REVIEW, APPROVE), _hex(), _hex()
    banks.add(APPROVE.name, sha256=sha256, pdq=pdq)
    banks.add(REVIEW.name, pdq=_flip(pdq, 3))
    banks.add(REJECT.name, pdq=_flip(pdq, 20))
    banks.add(REJECT.name, pdq=_flip(pdq, 12))
    assert BankMatch(REJECT, HashKind.PDQ, 12) == banks.match(_image(sha256, pdq=pdq))


def test_changes_apply_to_the_next_match() -> None:
    """Adding, removing and dropping take effect at once, and redefining a bank changes its rule."""
    banks, pdq = _banks(REVIEW), _hex()
    near = _image(pdq=_flip(pdq, 35))
    before = banks.match(near)
    banks.add(REVIEW.name, pdq=pdq)
    added = banks.match(near)
    banks.define(Bank(REVIEW.name, BankAction.NEEDS_REVIEW, pdq_threshold=20))
    tightened = banks.match(near)
    banks.define(REVIEW)
    banks.remove(REVIEW.name, pdq=pdq)
    removed = banks.match(near)
    assert (None, BankMatch(REVIEW, HashKind.PDQ, 35), None, None) == (before, added, tightened, removed)


def test_a_hundred_thousand_hashes_find_the_one_near_hash() -> None:
    """At bank scale the vectorised search still returns the single near hash among 100,000."""
    banks = _banks(REJECT)
    hashes = [_hex() for _ in range(100_000)]
    for pdq in hashes:
        banks.add(REJECT.name, pdq=pdq)
    assert (100_000, BankMatch(REJECT, HashKind.PDQ, 7)) == (
        banks.size(),
        banks.match(_image(pdq=_flip(hashes[51_234], 7))),
    )


def test_a_bank_file_defines_and_fills_a_bank(tmp_path: Path) -> None:
    """A file is one bank: its action, threshold and images."""
    sha256, pdq = _hex(), _hex()
    path = tmp_path / "bad.json"
    document = {
        "bank": "known-bad",
        "action": "reject",
        "pdq_threshold": 31,
        "hashes": [{"sha256": sha256}, {"pdq": pdq}],
    }
    path.write_bytes(orjson.dumps(document))
    banks = HashBanks()
    load_bank_files([path], banks)
    assert ((REJECT,), 2, HashKind.PDQ) == (
        banks.banks,
        banks.size(),
        getattr(banks.match(_image(pdq=pdq)), "kind", None),
    )


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"bank": "b", "action": "ban"}, "action must be one of"),
        ({"bank": "b", "action": "reject", "hashes": [{"sha256": "ABC"}]}, "sha256 must be 64"),
        ({"bank": "b", "action": "reject", "hashes": [{}]}, "needs a sha256, a pdq hash or both"),
        ({"bank": "b", "action": "reject", "pdq_threshold": 300}, "pdq_threshold must be in"),
        ({"bank": "a/b", "action": "reject"}, "cannot contain '/'"),
        ([], "a bank file is a JSON object"),
    ],
)
def test_a_bad_bank_file_stops_the_start_naming_file_and_problem(
    tmp_path: Path, document: object, problem: str
) -> None:
    """A bank that cannot be read is a configuration error, not a silently empty bank."""
    path = tmp_path / "bank.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(ConfigurationError) as raised:
        load_bank_files([path], HashBanks())
    assert (str(path) in str(raised.value), problem in str(raised.value)) == (True, True)


def test_topic_records_define_fill_and_tombstones_empty_a_bank() -> None:
    """The compacted topic's records, in order: a definition, images, a tombstone for one image, one for the
    bank. What a tombstone removes is what its key added."""
    banks = HashBanks()
    updates = BankUpdates(banks)
    first, second = BankImage(_hex(), _hex()), BankImage(None, _hex())
    for key, value in (
        definition_record(REJECT),
        image_record(REJECT.name, first),
        image_record(REJECT.name, second),
    ):
        updates.apply(key, value)
    filled = (banks.size(), banks.match(_image(first.sha256)) is not None)
    updates.apply(image_record(REJECT.name, first)[0], None)
    after_image = (banks.size(), banks.match(_image(first.sha256)))
    updates.apply(REJECT.name.encode(), None)
    assert ((3, True), (1, None), ()) == (filled, after_image, banks.banks)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"known-bad", b"not json"),
        (b"known-bad", orjson.dumps({"bank": "other", "action": "reject"})),
        (b"unknown/" + b"a" * 64, orjson.dumps({"bank": "unknown", "sha256": "a" * 64})),
        (b"known-bad/" + b"a" * 64, orjson.dumps({"bank": "known-bad", "sha256": "b" * 64})),
    ],
)
def test_an_invalid_topic_record_is_skipped(key: bytes, value: bytes) -> None:
    """Not JSON, a bank other than its key's, an image of an undefined bank, a hash other than its key's."""
    banks = _banks(REJECT)
    assert (False, 0) == (BankUpdates(banks).apply(key, value), banks.size())
