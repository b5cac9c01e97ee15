"""Hash-bank matching at bank scale: the time to match one image against 100,000 PDQ hashes.

Four banks of 25,000 random PDQ hashes each (and as many SHA-256 hashes) in one ``HashBanks``; 1,000 images
are matched, one in ten a near copy (a few bits away) of a banked hash. The baseline, measured in the same
run on the same hashes, is the straightforward scan in plain Python (XOR of 256-bit ints and
``int.bit_count``) that a vectorised search has to beat. Targets: at most ``MAX_MS_PER_IMAGE`` per image,
and at least ``MIN_SPEEDUP`` times faster than the plain scan. No broker or emulator is involved.
"""

from __future__ import annotations

import random
import time

from bench.common import BenchContext, BenchResult
from worker.content.banks import Bank, BankAction, HashBanks
from worker.records import ContentHashes

NAME = "known_content_banks"
BANKS = 4
HASHES_PER_BANK = 25_000
QUERIES = 1_000
BASELINE_QUERIES = 100
NEAR_EVERY = 10
MAX_MS_PER_IMAGE = 2.0
MIN_SPEEDUP = 5.0


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _queries(rng: random.Random, banked: list[str]) -> list[ContentHashes]:
    queries = []
    for index in range(QUERIES):
        if index % NEAR_EVERY == 0:
            near = int(rng.choice(banked), 16) ^ sum(1 << rng.randrange(256) for _ in range(8))
            pdq = f"{near:064x}"
        else:
            pdq = _hex(rng)
        queries.append(ContentHashes(_hex(rng), pdq, 100))
    return queries


def _plain_scan(banked: list[int], query: str, threshold: int) -> int | None:
    """The baseline: the nearest banked hash within ``threshold``, by a loop over Python ints."""
    value = int(query, 16)
    best = min((value ^ candidate).bit_count() for candidate in banked)
    return best if best <= threshold else None


async def run(ctx: BenchContext) -> BenchResult:  # noqa: ARG001 - the runner's signature; no broker needed
    """Build the banks, time the vectorised matches and the plain scan, compare."""
    rng = random.Random(14)
    banks = HashBanks()
    banked: list[str] = []
    started = time.perf_counter()
    for index in range(BANKS):
        bank = Bank(f"bank-{index}", BankAction.REJECT if index % 2 else BankAction.NEEDS_REVIEW)
        banks.define(bank)
        for _ in range(HASHES_PER_BANK):
            pdq = _hex(rng)
            banks.add(bank.name, sha256=_hex(rng), pdq=pdq)
            banked.append(pdq)
    load_s = time.perf_counter() - started
    queries = _queries(rng, banked)
    banks.match(queries[1])  # builds the matrix once, as the first image after a change does
    started = time.perf_counter()
    matched = sum(banks.match(query) is not None for query in queries)
    vectorised_ms = (time.perf_counter() - started) / QUERIES * 1000
    as_ints = [int(pdq, 16) for pdq in banked]
    started = time.perf_counter()
    baseline_matched = sum(
        _plain_scan(as_ints, query.pdq or "", 31) is not None for query in queries[:BASELINE_QUERIES]
    )
    plain_ms = (time.perf_counter() - started) / BASELINE_QUERIES * 1000
    speedup = plain_ms / vectorised_ms
    return BenchResult(
        name=NAME,
        ratio=speedup,
        target=f">= {MIN_SPEEDUP} x the plain scan, <= {MAX_MS_PER_IMAGE} ms per image",
        met=speedup >= MIN_SPEEDUP and vectorised_ms <= MAX_MS_PER_IMAGE,
        baseline=f"plain Python scan {plain_ms:.2f} ms per image",
        measured=f"HashBanks.match {vectorised_ms:.3f} ms/image at {BANKS * HASHES_PER_BANK:,} PDQ hashes",
        figures={
            "banked_pdq_hashes": BANKS * HASHES_PER_BANK,
            "banked_sha256_hashes": BANKS * HASHES_PER_BANK,
            "load_s": round(load_s, 2),
            "matched_of_1000": matched,
            "baseline_matched_of_100": baseline_matched,
            "vectorised_ms_per_image": round(vectorised_ms, 3),
            "plain_ms_per_image": round(plain_ms, 2),
        },
    )
