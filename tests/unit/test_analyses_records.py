"""Specification of the analyses topic: ``analysis.v1`` keeps every tag and no full URL, reads back to the
same analysis, and has a topic of its own with a retention of its own."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from worker.contracts import Contracts, SchemaName, Submission, default_schemas_dir
from worker.domain import Analysis, Decision, Tag, Verdict
from worker.evaluation.analysis_record import (
    MAX_ANALYSIS_TAGS,
    AnalysisRecords,
    InvalidAnalysis,
    KeptAnalysis,
    decode_analysis,
)
from worker.kafka.topics import topic_specs
from worker.policy import decide_image_error
from worker.policy_file import load_default_policy
from worker.records import Decided, SourceCoordinates
from worker.settings import Settings

CONTRACTS = Contracts.load()
POLICY = load_default_policy(contracts=CONTRACTS)
NOW = datetime(2026, 11, 26, 10, 0, 1, 250_000, tzinfo=UTC)
SOURCE = SourceCoordinates("images.submitted", 3, 18442, 1_700_000_000_000)
SECRET = "c2VjcmV0LXNpZw"
URL = f"https://user:pw@contoso.blob.core.windows.net/uploads/a.jpg?sv=2024&sig={SECRET}"
ANALYSIS = Analysis(
    "2023-10-01",
    (Tag("outdoor", 0.97), Tag("knife", 0.74), Tag("person", 0.61), Tag("Outdoor", 0.2)),
    width=1024,
    height=768,
)
VERDICT = Verdict(Decision.NEEDS_REVIEW, ())
EXAMPLE = orjson.loads((default_schemas_dir() / "examples" / "analysis.v1.json").read_bytes())


def decided(analysis: Analysis | None, verdict: Verdict = VERDICT, *, hold: bool = False) -> Decided:
    return Decided(Submission("img-7f3a", URL), verdict, analysis, POLICY.version, SOURCE, NOW, hold)


def test_the_analysis_record_keeps_every_tag_the_analyzer_reported_in_its_order() -> None:
    """Results keep matched tags only; the analysis keeps all of them, duplicates and case included."""
    [record] = AnalysisRecords("images.analyses").side_records(decided(ANALYSIS))
    document = orjson.loads(record.value)

    assert None is CONTRACTS.describe_violation(SchemaName.ANALYSIS, document)
    expected = [{"name": tag.name, "confidence": tag.confidence} for tag in ANALYSIS.tags]
    assert expected == document["tags"]
    assert ("images.analyses", b"img-7f3a") == (record.topic, record.key)


def test_the_analysis_record_carries_no_full_url() -> None:
    """Neither SAS token nor userinfo leaves the process; the URL is the redacted one results carry."""
    [record] = AnalysisRecords("images.analyses").side_records(decided(ANALYSIS))

    assert SECRET not in record.value.decode()
    assert "pw@" not in record.value.decode()
    expected = "https://contoso.blob.core.windows.net/uploads/a.jpg?<redacted>"
    assert expected == orjson.loads(record.value)["image"]["url"]


def test_an_analysis_record_reads_back_to_the_same_analysis_decision_and_hold() -> None:
    """What replay re-decides is exactly what the analyzer saw and what was published."""
    [record] = AnalysisRecords("images.analyses").side_records(decided(ANALYSIS, hold=True))

    expected = KeptAnalysis(
        id="img-7f3a",
        analysis=ANALYSIS,
        decision=Decision.NEEDS_REVIEW,
        policy_version=POLICY.version,
        hold=True,
        analyzed_at=NOW,
        source=SourceCoordinates("images.submitted", 3, 18442),
        url="https://contoso.blob.core.windows.net/uploads/a.jpg?<redacted>",
    )
    assert expected == decode_analysis(record.value, CONTRACTS)


def test_an_image_the_analyzer_refused_has_no_analysis_record() -> None:
    """No analysis, nothing to keep: an image error yields no side record."""
    verdict = decide_image_error(POLICY, "InvalidImageFormat")

    assert () == tuple(AnalysisRecords("images.analyses").side_records(decided(None, verdict)))


def test_at_most_the_documented_number_of_tags_is_kept() -> None:
    """The schema bounds the document; the encoder keeps the analyzer's first ``MAX_ANALYSIS_TAGS``."""
    many = Analysis("2023-10-01", tuple(Tag(f"tag-{index}", 0.5) for index in range(MAX_ANALYSIS_TAGS + 10)))
    [record] = AnalysisRecords("images.analyses").side_records(decided(many))
    document = orjson.loads(record.value)

    assert MAX_ANALYSIS_TAGS == len(document["tags"])
    assert None is CONTRACTS.describe_violation(SchemaName.ANALYSIS, document)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "no value"),
        (b"{not json", "not JSON"),
        (orjson.dumps({"schema": "analysis.v1", "id": "x"}), "required"),
        (orjson.dumps(EXAMPLE | {"schema": "analysis.v2"}), r"\$\.schema: fails const"),
    ],
)
def test_a_record_that_is_not_an_analysis_is_refused_naming_why(raw: bytes | None, problem: str) -> None:
    """Replay counts such records as skipped; the error says what is wrong without echoing the value."""
    with pytest.raises(InvalidAnalysis, match=problem):
        decode_analysis(raw, CONTRACTS)


def test_topics_create_makes_the_side_topics_only_when_their_feature_is_on() -> None:
    """Off by default; on, the analyses topic gets its own retention and shadow results the results' one."""
    off = {spec.name for spec in topic_specs(Settings.defaults())}
    settings = Settings.defaults(
        shadow_topic="images.shadow-results",
        analyses_topic="images.analyses",
        analyses_retention_ms=3_600_000,
        result_retention_ms=86_400_000,
    )
    on = {spec.name: spec.topic_configs for spec in topic_specs(settings)}

    assert not {"images.shadow-results", "images.analyses"} & off
    assert {"retention.ms": "3600000"} == on["images.analyses"]
    assert {"retention.ms": "86400000"} == on["images.shadow-results"]
