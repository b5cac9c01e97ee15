"""Specification of the shadow policy: decided beside the live policy, counted as an agreement matrix, never
routed by; its results (when a topic is set) are side records under the candidate's version."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from worker.assembly import side_record_sources
from worker.contracts import Contracts, SchemaName, Submission
from worker.domain import Analysis, Decision, Tag
from worker.errors import ConfigurationError, ImageAnalysisRejected
from worker.evaluation.analysis_record import AnalysisRecords
from worker.evaluation.shadow import ShadowPolicy
from worker.moderation import Moderator, RouteTopics
from worker.observability.metrics import Metrics
from worker.policy import BlockRule, Policy, PolicyMode, decide, decide_image_error
from worker.records import Decided, SourceCoordinates, Stall
from worker.settings import Settings

CONTRACTS = Contracts.load()
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SOURCE = SourceCoordinates("images.submitted", 2, 40, 1_700_000_000_000)
SECRET = "sig=c2VjcmV0"
URL = f"https://images.example.com/a.jpg?sv=2024&{SECRET}"
LIVE = Policy(mode=PolicyMode.BLOCKLIST, blocklist={"knife": BlockRule(review_at=0.7, reject_at=None)})
#: stricter on knives, and blocks cats: what an operator might try in shadow first
CANDIDATE = Policy(
    mode=PolicyMode.BLOCKLIST,
    blocklist={
        "knife": BlockRule(review_at=0.5, reject_at=0.75),
        "cat": BlockRule(review_at=0.9, reject_at=None),
    },
)
ANALYSES = {
    "plain": Analysis("2023-10-01", (Tag("outdoor", 0.9),)),
    "knife-0.6": Analysis("2023-10-01", (Tag("knife", 0.6), Tag("kitchen", 0.9))),
    "knife-0.8": Analysis("2023-10-01", (Tag("knife", 0.8), Tag("kitchen", 0.9))),
    "cat": Analysis("2023-10-01", (Tag("cat", 0.95),)),
    "dim": Analysis("2023-10-01", (Tag("blur", 0.2),)),
}


class RecordingObserver:
    """An ``AgreementObserver`` that keeps every pair it is told."""

    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()

    def observe_shadow_decision(self, live: str, shadow: str) -> None:
        self.pairs[(str(live), str(shadow))] += 1


def decided(image_id: str, analysis: Analysis | None, *, hold: bool = False) -> Decided:
    verdict = (
        decide(LIVE, analysis, hold=hold) if analysis else decide_image_error(LIVE, "InvalidImageFormat")
    )
    return Decided(Submission(image_id, URL), verdict, analysis, LIVE.version, SOURCE, NOW, hold)


def test_each_analyzed_image_is_counted_under_its_live_and_shadow_decision() -> None:
    """The matrix holds, per image, (live, candidate) decisions on the same analysis: hand-computed here."""
    observer = RecordingObserver()
    shadow = ShadowPolicy(CANDIDATE, observer)

    for image_id, analysis in ANALYSES.items():
        shadow.side_records(decided(image_id, analysis))

    expected = Counter(
        {
            ("approved", "approved"): 1,  # plain
            ("approved", "needs_review"): 2,  # knife 0.6 (candidate reviews at 0.5), cat 0.95
            ("needs_review", "rejected"): 1,  # knife 0.8 (candidate rejects at 0.75)
            ("needs_review", "needs_review"): 1,  # dim: no signal under both
        }
    )
    assert expected == observer.pairs


def test_an_image_the_analyzer_refused_is_neither_counted_nor_shadowed() -> None:
    """Without an analysis there is nothing to decide again: no pair, no record."""
    observer = RecordingObserver()
    shadow = ShadowPolicy(CANDIDATE, observer, topic="images.shadow-results")

    records = shadow.side_records(decided("broken", None))

    assert ((), Counter()) == (tuple(records), observer.pairs)


def test_the_shadow_decision_is_taken_under_the_same_hold_as_the_live_one() -> None:
    """A hold in force turns the candidate's approvals into reviews too, so the matrix compares policies."""
    observer = RecordingObserver()
    ShadowPolicy(CANDIDATE, observer).side_records(decided("plain", ANALYSES["plain"], hold=True))

    assert Counter({("needs_review", "needs_review"): 1}) == observer.pairs


def test_without_a_topic_the_shadow_policy_produces_no_record() -> None:
    """Shadow results are opt-in: by default only the metrics see the shadow decision."""
    shadow = ShadowPolicy(CANDIDATE, RecordingObserver())

    assert () == tuple(shadow.side_records(decided("cat", ANALYSES["cat"])))


def test_with_a_topic_the_shadow_result_is_a_side_record_under_the_candidates_version() -> None:
    """A valid moderation-result.v1 on the shadow topic, keyed by id, URL redacted: the candidate decides."""
    shadow = ShadowPolicy(CANDIDATE, RecordingObserver(), topic="images.shadow-results")

    [record] = shadow.side_records(decided("knife-0.8", ANALYSES["knife-0.8"]))
    document = orjson.loads(record.value)

    assert None is CONTRACTS.describe_violation(SchemaName.MODERATION_RESULT, document)
    assert ("images.shadow-results", b"knife-0.8") == (record.topic, record.key)
    assert ("rejected", CANDIDATE.version) == (document["decision"], document["policy_version"])
    assert [{"name": "knife", "confidence": 0.8}] == document["tags"]
    assert SECRET not in record.value.decode()
    assert (b"true", b"needs_review") == (
        dict(record.headers)["moderation-shadow"],
        dict(record.headers)["moderation-live-decision"],
    )


def test_the_metrics_export_all_nine_cells_from_the_start_and_count_each_pair() -> None:
    """``moderation_shadow_decisions_total`` has every (live, shadow) pair at 0 until counted."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="test")
    metrics.observe_shadow_decision(Decision.APPROVED, Decision.REJECTED)
    metrics.observe_shadow_decision("approved", "rejected")

    cells = {
        (live, shadow): registry.get_sample_value(
            "moderation_shadow_decisions_total", {"live": live, "shadow": shadow}
        )
        for live in Decision
        for shadow in Decision
    }

    expected = dict.fromkeys(cells, 0.0) | {(Decision.APPROVED, Decision.REJECTED): 2.0}
    assert expected == cells


def test_a_pair_outside_the_decision_enum_is_refused_so_the_labels_stay_bounded() -> None:
    """An unknown label value is a programming error, not a new series."""
    metrics = Metrics(CollectorRegistry(), version="test")

    with pytest.raises(ValueError, match="unknown decision pair"):
        metrics.observe_shadow_decision("approved", "maybe")


def test_the_shadow_policy_version_is_published_as_an_info_metric() -> None:
    """Dashboards name the candidate under test next to its agreement matrix."""
    registry = CollectorRegistry()
    Metrics(registry, version="test").set_shadow_policy(CANDIDATE.version, "blocklist")

    labels = {"policy_version": CANDIDATE.version, "mode": "blocklist"}
    assert 1.0 == registry.get_sample_value("moderation_shadow_policy_info", labels)


@dataclass
class ScriptedAnalyzer:
    """A ``GuardedAnalysis`` answering from a table by URL path; a missing entry is an image error."""

    table: dict[str, Analysis]

    async def analyze_guarded(self, image_url: str, stall: Stall) -> Analysis:  # noqa: ARG002 - protocol
        name = image_url.rsplit("/", maxsplit=1)[-1].split("?", maxsplit=1)[0]
        if name not in self.table:
            raise ImageAnalysisRejected("not an image", code="InvalidImageFormat")
        return self.table[name]


class NoObserver:
    def decided(self, verdict: object, analysis: object) -> None:
        """Decisions are not what these tests look at."""


class NoStall:
    def stall(self) -> None:
        """Never stalls."""

    def unstall(self) -> None:
        """Never stalls."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


async def test_a_moderator_with_a_shadow_routes_by_the_live_policy_and_carries_the_shadow_result_aside() -> (
    None
):
    """The result goes where the live policy says; the shadow result rides in ``Routed.side``."""
    observer = RecordingObserver()
    topics = RouteTopics("approved", "review", "rejected", "dead")
    moderator = Moderator(
        CONTRACTS,
        ScriptedAnalyzer({"cat.jpg": ANALYSES["cat"]}),
        NoObserver(),
        topics=topics,
        policy=lambda: LIVE,
        now=lambda: NOW,
        extras=[ShadowPolicy(CANDIDATE, observer, topic="shadow")],
    )
    value = orjson.dumps({"id": "img-1", "image": {"url": "https://images.example.com/cat.jpg"}})
    record = Record("images.submitted", 0, 7, 0, b"img-1", value)

    work = moderator.prepare(record)
    assert isinstance(work, Submission)
    routed = await moderator.complete(record, work, NoStall())

    assert ("approved", ["shadow"]) == (routed.topic, [side.topic for side in routed.side])
    assert "needs_review" == orjson.loads(routed.side[0].value)["decision"]
    assert Counter({("approved", "needs_review"): 1}) == observer.pairs


def test_a_shadow_policy_file_that_is_not_a_policy_stops_the_start(tmp_path: Path) -> None:
    """Validated at start exactly like the live policy: a ConfigurationError (exit 2 at the command line)."""
    bad = tmp_path / "shadow.json"
    bad.write_text('{"schema": "policy.v1", "mode": "sometimes"}')
    settings = Settings.defaults(shadow_policy_file=bad)

    with pytest.raises(ConfigurationError, match="invalid policy"):
        side_record_sources(settings, CONTRACTS, Metrics(CollectorRegistry(), version="test"))


@pytest.mark.parametrize("variable", ["MODERATION_SHADOW_TOPIC", "MODERATION_ANALYSES_TOPIC"])
def test_a_side_topic_that_is_a_result_topic_is_a_configuration_error(variable: str) -> None:
    """Every input ends in exactly one record on the four result topics: side records may not go there."""
    with pytest.raises(ConfigurationError, match=f"{variable}: 'images.approved' is the input or a result"):
        Settings.from_env({variable: "images.approved"}, need_analyzer=False)


async def test_an_image_error_carries_no_side_records_and_no_shadow_count() -> None:
    """A refused image is routed by the live ``on_image_error`` alone: no shadow, no analysis, no pair."""
    observer = RecordingObserver()
    moderator = Moderator(
        CONTRACTS,
        ScriptedAnalyzer({}),
        NoObserver(),
        topics=RouteTopics("approved", "review", "rejected", "dead"),
        policy=lambda: LIVE,
        now=lambda: NOW,
        extras=[ShadowPolicy(CANDIDATE, observer, topic="shadow"), AnalysisRecords("analyses")],
    )
    value = orjson.dumps({"id": "img-2", "image": {"url": "https://images.example.com/broken.jpg"}})
    record = Record("images.submitted", 0, 8, 0, b"img-2", value)

    work = moderator.prepare(record)
    assert isinstance(work, Submission)
    routed = await moderator.complete(record, work, NoStall())

    assert ("review", (), Counter()) == (routed.topic, routed.side, observer.pairs)


def test_a_shadow_topic_without_a_shadow_policy_is_logged_and_produces_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Harmless, but surely a mistake: one warning at start names it, and no source is built."""
    settings = Settings.defaults(shadow_topic="images.shadow-results")

    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        sources = side_record_sources(settings, CONTRACTS, Metrics(CollectorRegistry(), version="test"))

    assert ((), ["shadow_topic_without_shadow_policy"]) == (
        sources,
        [entry.message for entry in caplog.records],
    )
