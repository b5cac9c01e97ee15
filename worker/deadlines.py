"""One timer for many calls of the same length: ``with deadlines:`` bounds the awaits of the current task like
``asyncio.timeout(seconds)`` does, without a timer handle per call.

Every analyzer call gets the same deadline, so calls expire in the order they started: a dict of running
tasks in start order is a queue of deadlines, and one timer set for the oldest is enough. Entering and
leaving costs a dict entry; ``asyncio.timeout`` schedules and cancels a timer every time, which was 1.5 % of
the worker's CPU per call (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any


class Deadlines:
    """``with deadlines:`` inside a task: the block's awaits raise ``TimeoutError`` once ``seconds`` have
    passed since it was entered. One block per task at a time; cancellations from elsewhere propagate as
    ``CancelledError``, exactly as with ``asyncio.timeout``."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0.0:
            raise ValueError(f"a deadline must be positive, got {seconds}")
        self._seconds = seconds
        # task -> (deadline, task.cancelling() on entry); insertion order is deadline order
        self._running: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs to run inside a task")
        if task in self._running or task in self._expired:
            raise RuntimeError("this task is already inside a deadline")
        loop = task.get_loop()
        deadline = loop.time() + self._seconds
        self._running[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs to run inside a task")
        if task not in self._expired:
            del self._running[task]
            return
        cancelling = self._expired.pop(task)
        if task.uncancel() <= cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def close(self) -> None:
        """Stop the timer (blocks still running are no longer bounded)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self._running:
            return
        loop = next(iter(self._running)).get_loop()
        now = loop.time()
        while self._running:
            task, (deadline, cancelling) = next(iter(self._running.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            del self._running[task]
            self._expired[task] = cancelling
            task.cancel()
