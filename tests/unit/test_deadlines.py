"""``Deadlines``: what ``asyncio.timeout`` does for one block, for many same-length blocks with one timer."""

from __future__ import annotations

import asyncio

import pytest

from worker.deadlines import Deadlines

SHORT_S = 0.05


async def _bounded(deadlines: Deadlines, seconds: float) -> str:
    with deadlines:
        await asyncio.sleep(seconds)
    return "done"


async def test_a_block_that_ends_in_time_returns_normally() -> None:
    deadlines = Deadlines(1.0)
    assert "done" == await _bounded(deadlines, 0.0)
    assert "done" == await _bounded(deadlines, 0.01)
    deadlines.close()


async def test_a_block_past_its_deadline_raises_timeout_and_leaves_the_task_usable() -> None:
    deadlines = Deadlines(SHORT_S)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await _bounded(deadlines, 10.0)
    elapsed = loop.time() - started
    assert SHORT_S <= elapsed < 1.0
    task = asyncio.current_task()
    assert task is not None
    assert 0 == task.cancelling()  # the expiry's cancel request was withdrawn
    assert "done" == await _bounded(deadlines, 0.0)  # and the task can enter again


async def test_concurrent_blocks_expire_independently_in_start_order() -> None:
    """Staggered starts with one timer: the slow blocks time out, the quick ones finish."""
    deadlines = Deadlines(0.2)

    async def staggered(delay: float, work: float) -> str:
        await asyncio.sleep(delay)
        try:
            return await _bounded(deadlines, work)
        except TimeoutError:
            return "timeout"

    plan = [(0.0, 1.0), (0.02, 0.01), (0.05, 1.0), (0.08, 0.05), (0.1, 1.0), (0.15, 0.0)]
    outcomes = await asyncio.gather(*(staggered(delay, work) for delay, work in plan))
    assert ["timeout", "done", "timeout", "done", "timeout", "done"] == outcomes


async def test_a_cancellation_from_elsewhere_is_not_turned_into_a_timeout() -> None:
    deadlines = Deadlines(10.0)
    task = asyncio.create_task(_bounded(deadlines, 10.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadlines.close()


async def test_a_cancellation_from_elsewhere_at_the_deadline_stays_a_cancellation() -> None:
    """Both cancel requests usually land in the same loop iteration (epoll wakes in whole milliseconds);
    whichever comes first, the task sees ``CancelledError``."""
    deadlines = Deadlines(SHORT_S)

    async def cancelled_as_it_expires() -> str:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(SHORT_S, task.cancel)
        return await _bounded(deadlines, 10.0)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_as_it_expires())


async def test_one_block_per_task_at_a_time() -> None:
    deadlines = Deadlines(1.0)
    with deadlines, pytest.raises(RuntimeError, match="already inside"), deadlines:
        pass  # pragma: no cover - the inner block never runs
    deadlines.close()


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Deadlines(0.0)
