"""What the chaos run submits, and the emulator scripts that give each submission a known route.

Built on ``tests.pipeline_harness.make_submissions`` (the four image kinds, 6.25 % malformed ones that must be
dead-lettered). On top of it, a seeded share of the valid submissions point at images of their own whose
first calls fail transiently (503, 500, 429 with Retry-After, a hang) before the kind's normal answer, and
an analyzer storm document makes the four shared images fail at random for a stretch of calls. Transient
failures never change a route (the worker retries them without limit), so every id keeps its expected route.
Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from tests.pipeline_harness import IMAGE_HOST, SCRIPTS, Submissions, make_submissions

#: transient first answers of a flaky image, with their weights; a 429 holds a whole replica for
#: Retry-After and a hang costs the analyzer timeout, so both stay rare
FLAKY_FAULTS: tuple[tuple[dict[str, object], int], ...] = (
    ({"status": 503}, 5),
    ({"status": 500}, 4),
    ({"status": 429, "headers": {"Retry-After": "1"}}, 1),
    ({"hang": True}, 1),
)
#: failing answers during an analyzer storm, with their weights
STORM_FAULTS: tuple[tuple[dict[str, object], int], ...] = (
    ({"status": 503}, 4),
    ({"status": 500}, 4),
    ({"status": 429, "headers": {"Retry-After": "1"}}, 1),
)


@dataclass(frozen=True)
class ChaosSubmissions:
    """Submissions with their expected routes, and the emulator scripts their flaky images need."""

    submissions: Submissions
    scripts: dict[str, object]

    @property
    def flaky(self) -> int:
        """How many submissions point at an image with transient faults."""
        return len(self.scripts)


def _kind_of(url: str) -> str:
    """``approved`` for ``https://images.example.com/approved.jpg?sig=...``."""
    return url.split("?", 1)[0].rsplit("/", 1)[1].removesuffix(".jpg")


def _weighted(rng: random.Random, choices: tuple[tuple[dict[str, object], int], ...]) -> dict[str, object]:
    steps = [step for step, _ in choices]
    return dict(rng.choices(steps, weights=[weight for _, weight in choices])[0])


def chaos_submissions(count: int, *, seed: int, prefix: str, flaky_share: float) -> ChaosSubmissions:
    """``count`` submissions (ids ``<prefix>-NNNNNN``); about ``flaky_share`` of the valid ones are flaky.

    A flaky image ``<host>/flaky-<index>-<kind>.jpg`` answers one to three transient faults, then what the
    kind's shared image answers, so its expected route is the kind's.
    """
    base = make_submissions(count, seed=seed, prefix=prefix)
    rng = random.Random(f"flaky-{seed}")
    records: list[tuple[bytes, bytes]] = []
    scripts: dict[str, object] = {}
    for index, (key, value) in enumerate(base.records):
        image_id = key.decode()
        if base.expected[image_id] == "dead-letter" or rng.random() >= flaky_share:
            records.append((key, value))
            continue
        submission = orjson.loads(value)
        kind = _kind_of(submission["image"]["url"])
        image = f"{IMAGE_HOST}/flaky-{index}-{kind}.jpg"
        faults = [_weighted(rng, FLAKY_FAULTS) for _ in range(rng.randint(1, 3))]
        scripts[image] = [*faults, SCRIPTS[f"{IMAGE_HOST}/{kind}.jpg"]]
        submission["image"]["url"] = f"{image}?sv=2024&sig=SECRET{index}"
        records.append((key, orjson.dumps(submission)))
    return ChaosSubmissions(Submissions(records, dict(base.expected)), scripts)


def storm_scripts(calls: int, *, seed: int, fault_share: float = 0.5) -> dict[str, object]:
    """A fixtures document for ``POST /_emulator/fixtures?mode=merge``: each shared image's next ``calls``
    answers fail with probability ``fault_share`` (503, 500, 429), then it answers normally again."""
    rng = random.Random(f"storm-{seed}")
    document: dict[str, object] = {}
    for image, normal in SCRIPTS.items():
        steps = [_weighted(rng, STORM_FAULTS) if rng.random() < fault_share else normal for _ in range(calls)]
        document[image] = [*steps, normal]
    return document


def calm_scripts() -> Mapping[str, object]:
    """The shared images' normal scripts: merged back when a storm ends."""
    return dict(SCRIPTS)
