"""Injecting the planned faults, one at a time, into the replicas, the broker and the analyzer emulator.

Each fault returns a ``FaultRecord``: when it started and ended (seconds since the scenario started) and
what was observed while it lasted. The input producer shares ``input_gate`` with the broker fault: no
submission is in flight while the broker is killed, so the input topic holds each id exactly once and the
ledger's ground truth stays exact (the producer is not what the run tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.chaos.plan import Fault, FaultKind
from tests.chaos.replicas import ReplicaSet
from tests.chaos.submissions import calm_scripts
from tests.pipeline_harness import wait_until
from worker.dev.broker import EmbeddedKafka
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator

#: the worker's own drain deadline is 15 s (``tests.pipeline_harness.worker_environment``)
SIGTERM_TIMEOUT_S = 45.0
STORM_CAP = 6


@dataclass(frozen=True)
class FaultRecord:
    """One injected fault: its plan, when it ran, and ``detail`` (e.g. log lines written during it)."""

    fault: Fault
    started_s: float
    ended_s: float
    detail: dict[str, float | int | str] = field(default_factory=dict)


class FaultInjector:
    """Applies faults to ``replicas``, ``broker`` and ``emulator``; times are from ``started_at``."""

    def __init__(
        self,
        replicas: ReplicaSet,
        broker: EmbeddedKafka,
        emulator: Emulator,
        *,
        storm: dict[str, object],
        input_gate: asyncio.Lock,
        started_at: float,
    ) -> None:
        self._replicas = replicas
        self._broker = broker
        self._emulator = emulator
        self._storm = storm
        self._input_gate = input_gate
        self._started_at = started_at

    def _now(self) -> float:
        return round(time.monotonic() - self._started_at, 2)

    async def run(self, faults: Sequence[Fault]) -> list[FaultRecord]:
        """Each fault in order, not before its ``at_s``; returns what happened."""
        records = []
        for fault in faults:
            await asyncio.sleep(max(fault.at_s - self._now(), 0.0))
            records.append(await self.apply(fault))
        return records

    async def apply(self, fault: Fault) -> FaultRecord:
        """Inject ``fault`` and return once the system is back to full strength (replicas restarted)."""
        started = self._now()
        detail: dict[str, float | int | str] = {}
        if fault.kind is FaultKind.REPLICA_SIGKILL:
            assert fault.replica is not None  # the plan names the replica of every SIGKILL
            await self._replicas.sigkill(fault.replica)
            detail["replica"] = fault.replica
        elif fault.kind is FaultKind.ROLLING_SIGTERM:
            for index in range(self._replicas.count):
                await self._replicas.sigterm(index, timeout_s=SIGTERM_TIMEOUT_S)
                await self._replicas.wait_ready(index)
        elif fault.kind is FaultKind.BROKER_SIGKILL:
            detail = await self._broker_outage(fault.duration_s, fault.replica)
        else:
            detail = await self._storm_for(fault.duration_s, fault.calls)
        return FaultRecord(fault, started, self._now(), detail)

    async def _broker_outage(self, duration_s: float, replica: int | None) -> dict[str, float | int | str]:
        """SIGKILL the broker, keep it down ``duration_s`` (SIGKILLing ``replica`` halfway, so that it
        restarts while the broker is down), restart it on its data; wait for every replica to be back."""
        detail: dict[str, float | int | str] = {}
        async with self._input_gate:
            lines_before = self._replicas.log_lines()
            await self._broker.kill()
            down_at = time.monotonic()
            await asyncio.sleep(duration_s / 2)
            if replica is not None:
                await self._replicas.sigkill(replica)
                detail["replica_killed_while_down"] = replica
            await asyncio.sleep(duration_s / 2)
            lines_during = self._replicas.log_lines() - lines_before
            await self._broker.start()
            outage_s = time.monotonic() - down_at
        await self._replicas.wait_all_ready()
        return detail | {
            "outage_s": round(outage_s, 2),
            "replica_log_lines_while_down": lines_during,
            "replica_log_lines_per_s_while_down": round(lines_during / duration_s, 1),
        }

    async def _storm_for(self, duration_s: float, calls: int) -> dict[str, float | int | str]:
        """Script 429/5xx answers for the shared images for ``duration_s`` and until ``calls`` calls were
        answered (at most ``STORM_CAP`` times ``duration_s``: every replica may be restarting), then calm
        them."""
        before, calls_before = self._emulator.stats.by_status, self._emulator.stats.calls_total
        started = time.monotonic()
        self._emulator.load_fixtures(parse_fixtures(self._storm), merge=True)
        await asyncio.sleep(duration_s)
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: self._emulator.stats.calls_total - calls_before >= calls,
                timeout_s=(STORM_CAP - 1) * duration_s,
                interval_s=0.2,
            )
        self._emulator.load_fixtures(parse_fixtures(calm_scripts()), merge=True)
        storm_s = time.monotonic() - started
        after = self._emulator.stats.by_status
        detail: dict[str, float | int | str] = {"storm_s": round(storm_s, 2)}
        for status in sorted(after):
            if after[status] != before.get(status, 0):
                detail[f"answers_{status}"] = after[status] - before.get(status, 0)
        return detail
