"""``StormFilter``: one line per kind and interval from a noisy library, the dropped ones counted."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from worker.observability.log_storm import StormFilter
from worker.observability.logs import configure_logging


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_storm_of_one_kind_passes_one_line_per_interval_with_the_count() -> None:
    """100 records of one kind within a second: the first passes; the next after the second carries 99."""
    clock = FakeClock()
    storm = StormFilter(("aiokafka",), interval_s=1.0, clock=clock)
    passed = []
    for index in range(100):
        clock.now = index * 0.005
        record = _record("aiokafka.conn", "Unable connect to node with id %s: %s", index % 3, "refused")
        if storm.filter(record):
            passed.append(record)
    clock.now = 1.2
    last = _record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
    assert storm.filter(last)
    assert 1 == len(passed)
    assert not hasattr(passed[0], "suppressed")
    assert 99 == getattr(last, "suppressed", None)


def test_kinds_are_condensed_independently() -> None:
    """Another message template, or another logger, is another kind: its first record passes."""
    clock = FakeClock()
    storm = StormFilter(("aiokafka",), clock=clock)
    assert storm.filter(_record("aiokafka.conn", "Unable connect to node %s", 1))
    assert storm.filter(_record("aiokafka.conn", "Connection lost to %s", 1))
    assert storm.filter(_record("aiokafka.consumer.group_coordinator", "Unable connect to node %s", 1))
    assert not storm.filter(_record("aiokafka.conn", "Unable connect to node %s", 2))


def test_records_of_other_loggers_all_pass() -> None:
    """The worker's own lines are never condensed."""
    storm = StormFilter(("aiokafka",), clock=FakeClock())
    assert all(storm.filter(_record("worker.kafka.loop", "fatal_error")) for _ in range(50))


def test_a_non_positive_interval_is_refused() -> None:
    """An interval of 0 would condense nothing: a configuration mistake, said at once."""
    with pytest.raises(ValueError, match="interval_s"):
        StormFilter(("aiokafka",), interval_s=0.0)


def test_configure_logging_condenses_aiokafka_lines() -> None:
    """Through the worker's own logging set-up, 50 identical aiokafka errors in a row become one line."""
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        for _ in range(50):
            logging.getLogger("aiokafka.conn").error("Unable connect to %s", "127.0.0.1:9")
        logging.getLogger("worker.test").warning("own_line")
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        configure_logging("INFO", io.StringIO())
    assert ["Unable connect to 127.0.0.1:9", "own_line"] == [line["event"] for line in lines]
