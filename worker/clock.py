"""Time as the worker's timed parts take it: a clock and a sleep, injected so tests run on virtual time.

Production passes ``time.monotonic`` and ``asyncio.sleep``; the unit tests pass a fake clock whose ``sleep``
returns when the test moves time forward.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
"""Seconds from a monotonic clock: only differences between readings mean anything."""

Sleep = Callable[[float], Awaitable[object]]
"""Waits the given number of seconds."""
