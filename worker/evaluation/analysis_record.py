"""The ``analysis.v1`` contract: the full analyzer output of one decided image, kept for replay.

``AnalysisRecords`` is the moderator's side-record source for the opt-in analyses topic
(``MODERATION_ANALYSES_TOPIC``); ``encode_analysis`` writes the document and ``decode_analysis`` reads it
back for ``worker.evaluation.replay``. Every tag is kept (results keep only matched ones) but no full URL:
the image URL is written redacted, as results carry it. Pure: no Kafka, HTTP or Azure imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from worker import __version__
from worker.contracts import Contracts, SchemaName
from worker.domain import Analysis, Decision, Tag
from worker.records import Decided, SideRecord, SourceCoordinates
from worker.redact import redact_url

MAX_ANALYSIS_TAGS: Final = 256
"""Tags one document keeps, in the analyzer's order (Image Analysis reports far fewer)."""
_SCHEMA: Final = str(SchemaName.ANALYSIS)
_CONTENT_TYPE_HEADER: Final = ("content-type", b"application/json")
_SCHEMA_HEADER: Final = ("moderation-schema", _SCHEMA.encode())


class InvalidAnalysis(ValueError):
    """A record on the analyses topic that is not an ``analysis.v1`` document; the message names why."""


@dataclass(frozen=True, slots=True)
class KeptAnalysis:
    """One decoded ``analysis.v1`` document: what was seen, what was decided, under which policy.

    ``analyzed_at`` is timezone-aware; ``url`` is the redacted image URL or ``None``.
    """

    id: str
    analysis: Analysis
    decision: Decision
    policy_version: str
    hold: bool
    analyzed_at: datetime
    source: SourceCoordinates
    url: str | None = None


def encode_analysis(decided: Decided, analysis: Analysis, *, worker_version: str = __version__) -> bytes:
    """Serialise the ``analysis.v1`` document of ``decided`` (whose analysis is ``analysis``)."""
    document: dict[str, object] = {
        "schema": _SCHEMA,
        "id": decided.submission.id,
        "source": {
            "topic": decided.source.topic,
            "partition": decided.source.partition,
            "offset": decided.source.offset,
        },
        "analyzed_at": decided.analyzed_at.astimezone(UTC),
        "model_version": analysis.model_version,
        "tags": [
            {"name": tag.name, "confidence": tag.confidence} for tag in analysis.tags[:MAX_ANALYSIS_TAGS]
        ],
        "policy_version": decided.policy_version,
        "decision": decided.verdict.decision,
        "hold": decided.hold,
        "image": {"url": redact_url(decided.submission.image_url)},
        "worker_version": worker_version,
    }
    if analysis.width is not None:
        document["width"] = analysis.width
    if analysis.height is not None:
        document["height"] = analysis.height
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def decode_analysis(raw: bytes | None, contracts: Contracts) -> KeptAnalysis:
    """Read one record value as ``analysis.v1``; raises ``InvalidAnalysis`` naming the problem."""
    if not raw:
        raise InvalidAnalysis("the record has no value")
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidAnalysis(f"value is not JSON: {exc.msg}") from None
    violation = contracts.describe_violation(SchemaName.ANALYSIS, document)
    if violation is not None:
        raise InvalidAnalysis(violation)
    source = document["source"]
    return KeptAnalysis(
        id=document["id"],
        analysis=Analysis(
            model_version=document["model_version"],
            tags=tuple(Tag(tag["name"], float(tag["confidence"])) for tag in document["tags"]),
            width=document.get("width"),
            height=document.get("height"),
        ),
        decision=Decision(document["decision"]),
        policy_version=document["policy_version"],
        hold=document["hold"],
        analyzed_at=datetime.fromisoformat(document["analyzed_at"].upper()),
        source=SourceCoordinates(source["topic"], source["partition"], source["offset"]),
        url=document.get("image", {}).get("url"),
    )


class AnalysisRecords:
    """``worker.moderation.SideRecordSource``: the ``analysis.v1`` record of every analyzed image on
    ``topic``, keyed by image id; nothing for an image the analyzer refused (there is no analysis)."""

    def __init__(self, topic: str, *, worker_version: str = __version__) -> None:
        self.topic = topic
        self._worker_version = worker_version
        self._headers = (
            _CONTENT_TYPE_HEADER,
            _SCHEMA_HEADER,
            ("moderation-worker-version", worker_version.encode()),
        )

    def side_records(self, decided: Decided) -> Sequence[SideRecord]:
        """One record with the full analysis, or none when the image was not analyzed."""
        if decided.analysis is None:
            return ()
        value = encode_analysis(decided, decided.analysis, worker_version=self._worker_version)
        return (SideRecord(self.topic, decided.submission.id.encode(), value, self._headers),)
