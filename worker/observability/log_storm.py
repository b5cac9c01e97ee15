"""Condensing a client library's error storm: at most one log line per kind and interval, with a count.

While the Kafka cluster is down, aiokafka logs every failed connection attempt of every client, about seventy
lines a second per replica: the lines that matter drown, and the log pipeline pays for each. ``StormFilter``
lets the first record of a kind through, drops the rest of that kind for ``interval_s``, and adds to the next
record it lets through how many it dropped (``suppressed``). A kind is the logger and the message template
(the unformatted ``msg``), so "cannot connect to node %s" stays one kind whatever the node. Records of other
loggers pass untouched. Pure but for the injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from worker.clock import Clock

#: kinds remembered at most; past it the memory starts afresh (a message built with f-strings is many kinds)
MAX_KINDS = 1024


@dataclass(slots=True)
class _Kind:
    passed_at: float
    suppressed: int = 0


class StormFilter(logging.Filter):
    """A ``logging.Filter`` for a handler: condenses the records of ``loggers`` (names or their prefixes)."""

    def __init__(
        self, loggers: Sequence[str], *, interval_s: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        super().__init__()
        if interval_s <= 0.0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._prefixes = tuple(loggers)
        self._interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to emit ``record``; the first of a kind in each interval carries ``suppressed`` (>= 1) when
        records of its kind were dropped since the last one emitted."""
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        kind = self._kinds.get(key)
        if kind is not None and now - kind.passed_at < self._interval_s:
            kind.suppressed += 1
            return False
        if kind is not None and kind.suppressed:
            record.suppressed = kind.suppressed
        if kind is None and len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        self._kinds[key] = _Kind(passed_at=now)
        return True
