"""Worker replicas as an orchestrator runs them: each slot restarts its process whenever it exits.

Each incarnation is ``python -m worker.cli run`` (``tests.pipeline_harness.worker_process``) with its stderr
in its own file ``replica-<slot>-<incarnation>.log``. Every exit is recorded with the cause the run gave it
(our SIGKILL, our SIGTERM, or none: the process stopped by itself), so the ledger can judge exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from tests.chaos.ledger import Exit, ExitCause
from tests.pipeline_harness import wait_until, worker_process

#: the line a worker logs once it has joined Kafka and is about to consume
READY_EVENT = b'"event":"worker_started"'
RESTART_DELAY_S = 1.0


class _Slot:
    """One replica slot: the running process (if any), what was done to it, and its ready/exit signals."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.incarnation = 0
        self.process: asyncio.subprocess.Process | None = None
        self.log: Path | None = None
        self.cause = ExitCause.UNPROVOKED
        self.exited = asyncio.Event()


class ReplicaSet:
    """``count`` supervised replicas with the environment ``env``; logs go to ``log_dir``.

    ``started_at`` is the monotonic time exit times are measured from (settable). Use as ``async with``:
    entering starts every slot, leaving stops them all with SIGTERM (``stop``) if that has not happened yet.
    """

    def __init__(
        self, count: int, env: Mapping[str, str], log_dir: Path, *, started_at: float, ready_timeout_s: float
    ) -> None:
        self._env = dict(env)
        self._log_dir = log_dir
        self.started_at = started_at
        self._ready_timeout_s = ready_timeout_s
        self._slots = [_Slot(index) for index in range(count)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.exits: list[Exit] = []

    @property
    def count(self) -> int:
        """How many slots there are."""
        return len(self._slots)

    async def __aenter__(self) -> ReplicaSet:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._tasks = [asyncio.create_task(self._supervise(slot)) for slot in self._slots]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.stop(timeout_s=30.0)
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def wait_ready(self, index: int) -> None:
        """Return once slot ``index``'s current process has logged that it started (TimeoutError)."""
        slot = self._slots[index]
        await wait_until(lambda: self._is_ready(slot), timeout_s=self._ready_timeout_s, interval_s=0.2)

    async def wait_all_ready(self) -> None:
        """Return once every slot's current process has started."""
        await asyncio.gather(*(self.wait_ready(slot.index) for slot in self._slots))

    async def sigkill(self, index: int) -> None:
        """SIGKILL slot ``index``'s process, as a crashed node would; the slot restarts it."""
        slot = self._slots[index]
        if slot.process is not None and slot.process.returncode is None:
            slot.cause = ExitCause.SIGKILL
            slot.process.send_signal(signal.SIGKILL)
            await self._wait_exited(slot, timeout_s=30.0)

    async def sigterm(self, index: int, *, timeout_s: float) -> None:
        """SIGTERM slot ``index``'s process and wait for it to exit; past ``timeout_s`` SIGKILL it."""
        slot = self._slots[index]
        if slot.process is None or slot.process.returncode is not None:
            return
        slot.cause = ExitCause.SIGTERM
        slot.process.send_signal(signal.SIGTERM)
        try:
            await self._wait_exited(slot, timeout_s=timeout_s)
        except TimeoutError:
            slot.cause = ExitCause.SIGTERM_TIMEOUT
            if slot.process is not None and slot.process.returncode is None:
                slot.process.send_signal(signal.SIGKILL)
            await self._wait_exited(slot, timeout_s=30.0)

    async def stop(self, *, timeout_s: float) -> None:
        """Stop restarting and SIGTERM every running process, all at once, as a scale-down would."""
        self._stopping = True
        while True:
            await asyncio.gather(*(self.sigterm(slot.index, timeout_s=timeout_s) for slot in self._slots))
            # A slot that was starting a process as the stop began has one now: stop that one too.
            _, running = await asyncio.wait(self._tasks, timeout=1.0)
            if not running:
                return

    def log_lines(self) -> int:
        """Lines written to every replica log of this set so far."""
        total = 0
        for path in self._log_dir.glob("replica-*.log"):
            with path.open("rb") as file:
                total += sum(1 for _ in file)
        return total

    async def _wait_exited(self, slot: _Slot, *, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await slot.exited.wait()

    @staticmethod
    def _is_ready(slot: _Slot) -> bool:
        if slot.process is None or slot.log is None or slot.process.returncode is not None:
            return False
        try:
            return READY_EVENT in slot.log.read_bytes()
        except FileNotFoundError:
            return False

    async def _supervise(self, slot: _Slot) -> None:
        """Run slot ``slot`` until ``stop``: start, wait for the exit, record it, restart after a pause."""
        while not self._stopping:
            slot.incarnation += 1
            slot.log = self._log_dir / f"replica-{slot.index}-{slot.incarnation:02d}.log"
            slot.exited.clear()
            async with worker_process(self._env, slot.log) as process:
                slot.process = process
                code = await process.wait()
            self.exits.append(
                Exit(
                    replica=slot.index,
                    incarnation=slot.incarnation,
                    code=code,
                    cause=slot.cause,
                    at_s=round(time.monotonic() - self.started_at, 2),
                    log=slot.log.name,
                )
            )
            slot.cause = ExitCause.UNPROVOKED
            slot.process = None
            slot.exited.set()
            if not self._stopping:
                await asyncio.sleep(RESTART_DELAY_S)
