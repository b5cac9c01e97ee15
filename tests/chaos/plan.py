"""The chaos run's plan: scenarios, submissions, which faults when; a pure function of the seed and size.

Two scenarios run one after the other on one broker, each with its own topics and consumer group:

- ``sigterm-only``: rolling SIGTERM restarts and nothing else, so duplicates are measurable (target 0);
- ``chaos``: repeated SIGKILLs of replicas, rolling SIGTERM restarts, one broker SIGKILL and restart and an
  analyzer 429/5xx storm, while submissions (malformed and flaky ones included) flow.

Fault times are seconds after the scenario's first submission and are lower bounds: faults run one at a
time, in order, each once the previous one has finished.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from enum import StrEnum

import orjson

from tests.chaos.submissions import ChaosSubmissions, chaos_submissions, storm_scripts


class FaultKind(StrEnum):
    """The faults the run injects."""

    REPLICA_SIGKILL = "replica-sigkill"
    ROLLING_SIGTERM = "rolling-sigterm"
    BROKER_SIGKILL = "broker-sigkill"
    ANALYZER_STORM = "analyzer-storm"


@dataclass(frozen=True)
class Fault:
    """One fault: ``replica`` to SIGKILL (for a broker fault: mid-outage), ``duration_s`` of a broker outage
    or analyzer storm; a storm also lasts until the analyzer has answered ``calls`` calls."""

    kind: FaultKind
    at_s: float
    replica: int | None = None
    duration_s: float = 0.0
    calls: int = 0


@dataclass(frozen=True)
class Size:
    """How big a run is: submissions, fault counts and the seconds over which submissions are produced."""

    chaos_submissions: int
    sigterm_submissions: int
    replica_kills: int
    chaos_rolling_restarts: int
    sigterm_rolling_restarts: int
    chaos_produce_s: float
    sigterm_produce_s: float
    storm_calls: int
    storm_s: float
    broker_outage_s: float
    drain_timeout_s: float


FULL = Size(
    chaos_submissions=20_000,
    sigterm_submissions=5_000,
    replica_kills=12,
    chaos_rolling_restarts=2,
    sigterm_rolling_restarts=3,
    chaos_produce_s=180.0,
    sigterm_produce_s=45.0,
    storm_calls=400,
    storm_s=10.0,
    broker_outage_s=8.0,
    drain_timeout_s=180.0,
)
SHORT = Size(
    chaos_submissions=1_500,
    sigterm_submissions=500,
    replica_kills=3,
    chaos_rolling_restarts=1,
    sigterm_rolling_restarts=1,
    chaos_produce_s=60.0,
    sigterm_produce_s=15.0,
    storm_calls=100,
    storm_s=5.0,
    broker_outage_s=5.0,
    drain_timeout_s=90.0,
)
REPLICAS = 3
PARTITIONS = 6
FLAKY_SHARE = 0.02


@dataclass(frozen=True)
class ScenarioPlan:
    """One scenario: its submissions, the faults to inject and whether duplicates are a target."""

    name: str
    work: ChaosSubmissions
    produce_s: float
    faults: tuple[Fault, ...]
    duplicates_must_be_zero: bool
    drain_timeout_s: float
    storm: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ChaosPlan:
    """The whole run."""

    seed: int
    short: bool
    replicas: int
    partitions: int
    scenarios: tuple[ScenarioPlan, ...]

    def fingerprint(self) -> str:
        """A short hash of everything the seed decides, equal for equal seeds and sizes."""
        digest = hashlib.sha256(orjson.dumps([self.seed, self.short, self.replicas, self.partitions]))
        for scenario in self.scenarios:
            digest.update(scenario.name.encode())
            for key, value in scenario.work.submissions.records:
                digest.update(key + b"\0" + value)
            digest.update(orjson.dumps([scenario.work.scripts, scenario.storm], option=orjson.OPT_SORT_KEYS))
            digest.update(repr(scenario.faults).encode())
        return digest.hexdigest()[:16]


#: what each fault kind takes on the 2-core machine (a rolling restart waits for three replicas to start)
EXPECTED_S = {
    FaultKind.REPLICA_SIGKILL: 1.0,
    FaultKind.ROLLING_SIGTERM: 20.0,
    FaultKind.BROKER_SIGKILL: 8.0,  # plus the outage: the broker's own restart
    FaultKind.ANALYZER_STORM: 0.0,  # plus the storm
}


def expected_s(fault: Fault) -> float:
    """About how long ``fault`` takes to inject and recover from."""
    return EXPECTED_S[fault.kind] + fault.duration_s


def _spread(rng: random.Random, faults: list[Fault], window_s: float) -> tuple[Fault, ...]:
    """Shuffle ``faults`` and place them from 5 % of ``window_s`` on, each after the previous one's expected
    end plus a seeded share of the spare time, so that all of them strike while submissions flow."""
    rng.shuffle(faults)
    spare_s = max(0.85 * window_s - sum(expected_s(fault) for fault in faults), 0.0)
    gap_s = spare_s / max(len(faults), 1)
    cursor, placed = 0.05 * window_s, []
    for fault in faults:
        at_s = cursor + rng.uniform(0.5, 1.0) * gap_s
        placed.append(Fault(fault.kind, round(at_s, 2), fault.replica, fault.duration_s, fault.calls))
        cursor = at_s + expected_s(fault)
    return tuple(placed)


def sigterm_faults(size: Size) -> tuple[Fault, ...]:
    """Rolling SIGTERM restarts evenly through the production window."""
    step = size.sigterm_produce_s / (size.sigterm_rolling_restarts + 1)
    return tuple(
        Fault(FaultKind.ROLLING_SIGTERM, round(step * (index + 1), 2))
        for index in range(size.sigterm_rolling_restarts)
    )


def chaos_faults(size: Size, rng: random.Random) -> tuple[Fault, ...]:
    """Every fault kind, seeded order and times; SIGKILLed replicas chosen at random."""
    faults = [
        Fault(FaultKind.REPLICA_SIGKILL, 0.0, replica=rng.randrange(REPLICAS))
        for _ in range(size.replica_kills)
    ]
    faults += [Fault(FaultKind.ROLLING_SIGTERM, 0.0) for _ in range(size.chaos_rolling_restarts)]
    # The replica named in a broker fault is SIGKILLed mid-outage, so it restarts while the broker is down.
    faults.append(
        Fault(FaultKind.BROKER_SIGKILL, 0.0, replica=rng.randrange(REPLICAS), duration_s=size.broker_outage_s)
    )
    faults.append(Fault(FaultKind.ANALYZER_STORM, 0.0, duration_s=size.storm_s, calls=size.storm_calls))
    return _spread(rng, faults, size.chaos_produce_s)


def build_plan(seed: int, *, short: bool, size: Size | None = None) -> ChaosPlan:
    """The run for ``seed``: the same seed and size always give the same submissions, scripts and faults.

    ``size`` defaults to ``SHORT`` or ``FULL`` as ``short`` says.
    """
    size = size or (SHORT if short else FULL)
    rng = random.Random(seed)
    sigterm = ScenarioPlan(
        name="sigterm-only",
        work=chaos_submissions(size.sigterm_submissions, seed=seed, prefix="term", flaky_share=0.0),
        produce_s=size.sigterm_produce_s,
        faults=sigterm_faults(size),
        duplicates_must_be_zero=True,
        drain_timeout_s=size.drain_timeout_s,
    )
    chaos = ScenarioPlan(
        name="chaos",
        work=chaos_submissions(size.chaos_submissions, seed=seed, prefix="chaos", flaky_share=FLAKY_SHARE),
        produce_s=size.chaos_produce_s,
        faults=chaos_faults(size, rng),
        duplicates_must_be_zero=False,
        drain_timeout_s=size.drain_timeout_s,
        storm=storm_scripts(size.storm_calls, seed=seed),
    )
    return ChaosPlan(seed, short, REPLICAS, PARTITIONS, (sigterm, chaos))
