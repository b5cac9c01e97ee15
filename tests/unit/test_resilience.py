"""Component tests of the guarded analyzer: quota, breaker and retries around a scripted fake Analyzer.

Time is virtual: one fake clock drives the limiter, the breaker and the guard, and ``sleep`` advances it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from worker.analysis.breaker import BreakerState, CircuitBreaker
from worker.analysis.guarded import GuardedAnalyzer
from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis, Tag
from worker.errors import (
    AnalyzerError,
    AnalyzerOutcome,
    AnalyzerThrottled,
    FatalAnalyzerError,
    ImageAnalysisRejected,
    TransientAnalyzerError,
)

OK = Analysis(model_version="test", tags=(Tag("cat", 0.9),))


class FakeClock:
    """Monotonic seconds that move only when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ScriptedAnalyzer:
    """Answers from a script: an exception to raise or an Analysis to return; the last entry repeats."""

    def __init__(self, script: Iterable[AnalyzerError | Analysis]) -> None:
        self._script = list(script)
        self.calls = 0

    async def analyze(self, image_url: str) -> Analysis:  # noqa: ARG002 - the seam's signature
        step = self._script[min(self.calls, len(self._script) - 1)]
        self.calls += 1
        if isinstance(step, AnalyzerError):
            raise step
        return step

    async def aclose(self) -> None:
        """Nothing to release."""


class Recorder:
    """Collects what the guard reports (observer and stall hooks)."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.waits: list[float] = []
        self.retries = 0
        self.stalls = 0
        self.unstalls = 0

    def call(self, outcome: str, seconds: float, waited_s: float) -> None:  # noqa: ARG002 - not checked
        self.outcomes.append(outcome)
        self.waits.append(waited_s)

    def retry(self) -> None:
        self.retries += 1

    def stall(self) -> None:
        self.stalls += 1

    def unstall(self) -> None:
        self.unstalls += 1


def guarded(
    script: Iterable[AnalyzerError | Analysis], *, budget_s: float = 60.0
) -> tuple[GuardedAnalyzer, ScriptedAnalyzer, QuotaLimiter, CircuitBreaker, FakeClock, Recorder]:
    clock = FakeClock()
    analyzer = ScriptedAnalyzer(script)
    limiter = QuotaLimiter(1000.0, clock=clock, sleep=clock.sleep)
    breaker = CircuitBreaker(failure_threshold=3, window_s=60.0, open_for_s=5.0, clock=clock)
    recorder = Recorder()
    guard = GuardedAnalyzer(
        analyzer,
        limiter,
        breaker,
        recorder,
        budget_s=budget_s,
        rng=random.Random(1),
        clock=clock,
        sleep=clock.sleep,
    )
    return guard, analyzer, limiter, breaker, clock, recorder


async def test_transient_errors_are_retried_until_success() -> None:
    """Two 503s then an answer: three calls, two retries, the answer returned, nothing stalled."""
    guard, analyzer, _, _, _, recorder = guarded(
        [TransientAnalyzerError("503"), TransientAnalyzerError("503"), OK]
    )
    assert OK == await guard.analyze_guarded("https://x/a.jpg", recorder)
    assert (3, 2, ["server", "server", "ok"], 0) == (
        analyzer.calls,
        recorder.retries,
        recorder.outcomes,
        recorder.stalls,
    )


async def test_throttling_holds_every_call_until_retry_after() -> None:
    """A 429 with Retry-After 2 s: the next call is not made before 2 s of (virtual) time have passed, and
    it reports that wait for its token (the first call, granted at once, reports none)."""
    guard, analyzer, limiter, _, clock, recorder = guarded([AnalyzerThrottled("429", retry_after_s=2.0), OK])
    assert OK == await guard.analyze_guarded("https://x/a.jpg", recorder)
    assert 2 == analyzer.calls
    assert clock.now >= 2.0
    assert 1 == limiter.throttled_total
    assert 0.0 == recorder.waits[0]
    assert recorder.waits[1] >= 2.0


async def test_image_and_fatal_errors_are_not_retried() -> None:
    """An image error and a fatal error surface at once, after one call each."""
    guard, analyzer, _, _, _, recorder = guarded([ImageAnalysisRejected("bad", code="InvalidImageFormat")])
    with pytest.raises(ImageAnalysisRejected):
        await guard.analyze_guarded("https://x/a.jpg", recorder)
    fatal_guard, fatal_analyzer, _, _, _, fatal_recorder = guarded([FatalAnalyzerError("401")])
    with pytest.raises(FatalAnalyzerError):
        await fatal_guard.analyze_guarded("https://x/a.jpg", fatal_recorder)
    assert (1, 1) == (analyzer.calls, fatal_analyzer.calls)


async def test_past_the_budget_the_partition_stalls_and_resumes_on_success() -> None:
    """Failures beyond the retry budget stall the partition (the message is kept) until an answer comes."""
    failures: list[AnalyzerError | Analysis] = [
        TransientAnalyzerError("down", outcome=AnalyzerOutcome.CONNECTION)
    ] * 12
    guard, _, _, _, _, recorder = guarded([*failures, OK], budget_s=1.0)
    assert OK == await guard.analyze_guarded("https://x/a.jpg", recorder)
    assert recorder.stalls >= 1
    assert recorder.unstalls >= 1


async def test_a_failure_storm_opens_the_breaker_and_a_probe_closes_it() -> None:
    """Three consecutive failures open the circuit; calls wait for the probe, whose success closes it."""
    storm: list[AnalyzerError | Analysis] = [TransientAnalyzerError("500")] * 3
    guard, _, _, breaker, clock, recorder = guarded([*storm, OK])
    assert OK == await guard.analyze_guarded("https://x/a.jpg", recorder)
    assert BreakerState.CLOSED == breaker.state
    assert 1 == breaker.opened_total
    assert clock.now >= 5.0  # the open period passed before the probe
