"""Start-up waits for the cluster: retries only an unreachable one, with backoff, inside its timeout."""

from __future__ import annotations

import logging
import random

import pytest
from aiokafka.errors import KafkaConnectionError

from worker.errors import KafkaAuthenticationFailed, KafkaConnectionFailed, KafkaUnavailable
from worker.kafka.security import ConnectionOptions
from worker.kafka.startup import StartupWait, start_explained, wait_for_cluster
from worker.kafka_settings import KafkaSecurity, SecurityProtocol

SECURITY = KafkaSecurity()
OPTIONS = ConnectionOptions(SecurityProtocol.PLAINTEXT)
BOOTSTRAP = "broker:9092"


def unavailable() -> KafkaUnavailable:
    return KafkaUnavailable(
        "Kafka broker broker:9092: connection refused", reason="refused", broker=BOOTSTRAP
    )


class ScriptedProbe:
    """A probe that fails with the scripted exceptions in turn, then answers ``broker:9092``."""

    def __init__(self, failures: list[KafkaConnectionFailed]) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(
        self,
        bootstrap_servers: str,
        security: KafkaSecurity,  # noqa: ARG002 - the probe's signature
        options: ConnectionOptions,  # noqa: ARG002
    ) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return bootstrap_servers


class FakeTime:
    """A monotonic clock that only ``sleep`` advances; records each sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_an_unreachable_cluster_is_waited_for_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three refused attempts, then an answer: the broker comes back after three sleeps, a log line each."""
    probe, time = ScriptedProbe([unavailable(), unavailable(), unavailable()]), FakeTime()
    with caplog.at_level(logging.WARNING, logger="worker.kafka.startup"):
        broker = await wait_for_cluster(
            BOOTSTRAP, SECURITY, OPTIONS, StartupWait(timeout_s=60), probe=probe, clock=time.clock,
            sleep=time.sleep, rng=random.Random(1),
        )  # fmt: skip
    attempts = [record.__dict__["attempt"] for record in caplog.records if record.msg == "kafka_unavailable"]
    assert (BOOTSTRAP, 4, 3, [1, 2, 3]) == (broker, probe.calls, len(time.sleeps), attempts)


async def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    """Delays are full-jitter draws under base * 2**attempt, capped at max_s: ceilings 0.5, 1, 2, 4, 5, 5."""
    probe, time = ScriptedProbe([unavailable() for _ in range(6)]), FakeTime()
    await wait_for_cluster(
        BOOTSTRAP, SECURITY, OPTIONS, StartupWait(timeout_s=600, base_s=0.5, max_s=5.0), probe=probe,
        clock=time.clock, sleep=time.sleep, rng=random.Random(3),
    )  # fmt: skip
    ceilings = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [True] * 6 == [0 <= slept <= ceiling for slept, ceiling in zip(time.sleeps, ceilings, strict=True)]


async def test_the_last_unavailability_is_raised_once_the_timeout_has_passed() -> None:
    """A cluster that never answers: the wait ends at the timeout (no sleep past it) with KafkaUnavailable."""
    probe, time = ScriptedProbe([unavailable() for _ in range(1000)]), FakeTime()
    with pytest.raises(KafkaUnavailable, match="connection refused"):
        await wait_for_cluster(
            BOOTSTRAP, SECURITY, OPTIONS, StartupWait(timeout_s=20), probe=probe, clock=time.clock,
            sleep=time.sleep, rng=random.Random(5),
        )  # fmt: skip
    assert 20.0 == pytest.approx(sum(time.sleeps))
    assert probe.calls == len(time.sleeps) + 1


async def test_a_zero_timeout_tries_once() -> None:
    """``timeout_s=0``: one attempt, no sleep."""
    probe, time = ScriptedProbe([unavailable()]), FakeTime()
    with pytest.raises(KafkaUnavailable):
        await wait_for_cluster(
            BOOTSTRAP, SECURITY, OPTIONS, StartupWait(timeout_s=0), probe=probe, clock=time.clock,
            sleep=time.sleep,
        )  # fmt: skip
    assert (1, []) == (probe.calls, time.sleeps)


async def test_a_refused_setting_stops_the_wait_at_once() -> None:
    """Authentication failing after an outage: raised at that attempt, no further retry."""
    refused = KafkaAuthenticationFailed(
        "SASL authentication failed", reason="sasl_credentials", broker=BOOTSTRAP
    )
    probe, time = ScriptedProbe([unavailable(), refused, unavailable()]), FakeTime()
    with pytest.raises(KafkaAuthenticationFailed):
        await wait_for_cluster(
            BOOTSTRAP, SECURITY, OPTIONS, StartupWait(timeout_s=60), probe=probe, clock=time.clock,
            sleep=time.sleep,
        )  # fmt: skip
    assert (2, 1) == (probe.calls, len(time.sleeps))


async def test_a_failed_client_start_raises_the_probed_cause_from_aiokafkas_error() -> None:
    """aiokafka's causeless "Unable to bootstrap" becomes the probe's classified failure, chained to it."""
    refused = KafkaAuthenticationFailed(
        "SASL authentication failed", reason="sasl_credentials", broker=BOOTSTRAP
    )

    async def start() -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('broker', 9092)]")

    with pytest.raises(KafkaAuthenticationFailed) as caught:
        await start_explained(start, BOOTSTRAP, SECURITY, OPTIONS, probe=ScriptedProbe([refused]))
    assert isinstance(caught.value.__cause__, KafkaConnectionError)


async def test_a_failed_start_whose_probe_succeeds_keeps_the_original_error() -> None:
    """The cluster answered the probe (it recovered in between): aiokafka's own error is raised."""

    async def start() -> None:
        raise KafkaConnectionError("Unable to bootstrap")

    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await start_explained(start, BOOTSTRAP, SECURITY, OPTIONS, probe=ScriptedProbe([]))
