"""Specification of the running worker's cluster probe: one change reported per outage and per recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from worker.kafka.reachability import cluster_answers, watch_reachability


class ScriptedCluster:
    """Answers each metadata request as scripted: ``True`` answers, an exception is raised, ``"hang"``
    never answers; when the script ends the probe's loop is stopped."""

    def __init__(self, answers: list[bool | KafkaError | str]) -> None:
        self._answers: Iterator[bool | KafkaError | str] = iter(answers)
        self.requests = 0

    async def topics(self) -> set[str]:
        self.requests += 1
        answer = next(self._answers)
        if isinstance(answer, KafkaError):
            raise answer
        if answer == "hang":
            await asyncio.Event().wait()
        return {"images.submitted"}


class Stop(Exception):
    """Raised by the fake sleep once the script is spent."""


async def run_script(answers: list[bool | KafkaError | str]) -> tuple[list[bool], ScriptedCluster]:
    cluster = ScriptedCluster(answers)
    changes: list[bool] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > len(answers):
            raise Stop

    with pytest.raises(Stop):
        await watch_reachability(cluster, changes.append, interval_s=5.0, timeout_s=0.05, sleep=sleep)
    assert [5.0] * (len(answers) + 1) == slept
    return changes, cluster


async def test_an_outage_is_reported_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Answers, three failed probes (a refused connection, a hang past the deadline, an error), answers
    again: exactly two changes (False, then True) and two log lines, whatever the number of failures."""
    refused = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]")
    with caplog.at_level(logging.INFO, logger="worker.kafka.reachability"):
        changes, cluster = await run_script([True, refused, "hang", KafkaError("no metadata"), True, True])

    assert [False, True] == changes
    assert 6 == cluster.requests
    assert [("kafka_unreachable", "KafkaConnectionError"), ("kafka_reachable", 3)] == [
        (record.message, getattr(record, "cause", getattr(record, "failed_probes", None)))
        for record in caplog.records
    ]


async def test_a_cluster_that_keeps_answering_reports_no_change() -> None:
    """Healthy all along: no change is reported."""
    changes, _ = await run_script([True, True, True])
    assert [] == changes


async def test_a_probe_that_hangs_counts_as_a_timeout() -> None:
    """A broker that accepts the connection and never answers: the deadline turns it into ``timeout``."""
    assert "timeout" == await cluster_answers(ScriptedCluster(["hang"]), timeout_s=0.01)
    assert None is await cluster_answers(ScriptedCluster([True]), timeout_s=1.0)
