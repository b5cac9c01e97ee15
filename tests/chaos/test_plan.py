"""The chaos plan: reproducible from its seed, every fault kind in it, flaky images keep their routes."""

from __future__ import annotations

from collections import Counter

import orjson

from tests.chaos.plan import FULL, SHORT, FaultKind, build_plan
from tests.chaos.submissions import chaos_submissions, storm_scripts
from tests.pipeline_harness import IMAGE_HOST, SCRIPTS


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    """Submissions, scripts and faults are a function of the seed: equal seeds, equal fingerprints."""
    first, again, other = (build_plan(seed, short=True) for seed in (5, 5, 6))

    assert first.fingerprint() == again.fingerprint()
    assert first.fingerprint() != other.fingerprint()
    assert [s.faults for s in first.scenarios] == [s.faults for s in again.scenarios]


def test_the_full_run_submits_at_least_20000_and_injects_every_fault_kind() -> None:
    """Full size: >= 20,000 chaos submissions, every fault kind; the SIGTERM-only scenario only SIGTERMs."""
    plan = build_plan(1, short=False)
    sigterm, chaos = plan.scenarios

    kinds = Counter(fault.kind for fault in chaos.faults)
    assert len(chaos.work.submissions.records) >= 20_000 == FULL.chaos_submissions
    assert set(FaultKind) == set(kinds)
    assert FULL.replica_kills == kinds[FaultKind.REPLICA_SIGKILL]
    assert {FaultKind.ROLLING_SIGTERM} == {fault.kind for fault in sigterm.faults}
    assert (True, False) == (sigterm.duplicates_must_be_zero, chaos.duplicates_must_be_zero)


def test_the_short_run_is_about_2000_submissions_with_fewer_faults() -> None:
    """Short size: ~2,000 submissions in all, fewer faults than the full run, still every kind."""
    short, full = build_plan(1, short=True), build_plan(1, short=False)

    total = sum(len(s.work.submissions.records) for s in short.scenarios)
    assert 2_000 == total == SHORT.chaos_submissions + SHORT.sigterm_submissions
    assert sum(len(s.faults) for s in short.scenarios) < sum(len(s.faults) for s in full.scenarios)
    assert set(FaultKind) == {fault.kind for fault in short.scenarios[1].faults}


def test_faults_are_in_time_order_within_the_production_window() -> None:
    """Chaos faults are ordered and planned while submissions are still being produced."""
    chaos = build_plan(3, short=False).scenarios[1]

    times = [fault.at_s for fault in chaos.faults]
    assert sorted(times) == times
    assert 0 < times[0]
    assert times[-1] < chaos.produce_s


def test_a_flaky_image_fails_transiently_then_answers_like_its_kind() -> None:
    """Each flaky submission points at its own image whose script ends in its kind's normal answer."""
    work = chaos_submissions(2_000, seed=9, prefix="p", flaky_share=0.05)

    assert 0 < work.flaky
    for key, value in work.submissions.records:
        if "dead-letter" == work.submissions.expected[key.decode()]:
            continue
        image = orjson.loads(value)["image"]["url"].split("?", 1)[0]
        if image in work.scripts:
            steps = work.scripts[image]
            kind = image.rsplit("-", 1)[1].removesuffix(".jpg")
            assert isinstance(steps, list)
            assert SCRIPTS[f"{IMAGE_HOST}/{kind}.jpg"] == steps[-1]
            assert 2 <= len(steps) <= 4
            assert {"approved": "approved", "rejected": "rejected"}.get(kind, "needs-review") == (
                work.submissions.expected[key.decode()]
            )


def test_a_storm_fails_about_the_share_asked_and_ends_calm() -> None:
    """Every shared image's storm script fails about half its calls, then answers normally for ever."""
    document = storm_scripts(400, seed=4)

    assert set(SCRIPTS) == set(document)
    for image, steps in document.items():
        assert isinstance(steps, list)
        failing = sum(1 for step in steps[:-1] if step != SCRIPTS[image])
        assert 150 <= failing <= 250
        assert SCRIPTS[image] == steps[-1]
