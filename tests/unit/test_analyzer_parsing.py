"""Golden tests: every recorded Image Analysis answer parses into an Analysis; errors map right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult

from worker.analysis.azure import analysis_from_result
from worker.analysis.azure_errors import classify_http_error, parse_retry_after
from worker.domain import Tag
from worker.errors import (
    AnalyzerThrottled,
    FatalAnalyzerError,
    ImageAnalysisRejected,
    TransientAnalyzerError,
)

RECORDINGS = Path(__file__).parents[1] / "data" / "azure-recordings"


def _ok_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(RECORDINGS.glob("*.json")):
        document = json.loads(path.read_text())
        for index, entry in enumerate(document.get("Entries", [])):
            if entry["StatusCode"] == 200:
                bodies.append((f"{path.stem}[{index}]", entry["ResponseBody"]))
        if "responses" in document:
            bodies.append((path.stem, document["responses"]["200"]["body"]))
    return bodies


OK_BODIES = _ok_bodies()


def test_the_recordings_hold_successful_answers() -> None:
    """The golden set is not empty: recordings and official examples are both present."""
    assert len(OK_BODIES) >= 10


@pytest.mark.parametrize(("name", "body"), OK_BODIES, ids=[name for name, _ in OK_BODIES])
def test_every_recorded_answer_parses_through_the_sdk_model(name: str, body: dict[str, Any]) -> None:
    """The SDK's own model of a recorded body gives our Analysis: tags intact, confidences in [0, 1]."""
    result = ImageAnalysisResult(body)
    analysis = analysis_from_result(result)
    raw_tags = (body.get("tagsResult") or {}).get("values", [])
    assert [(tag["name"], float(tag["confidence"])) for tag in raw_tags] == [
        (tag.name, tag.confidence) for tag in analysis.tags
    ]
    assert str(body["modelVersion"]) == analysis.model_version
    assert body["metadata"]["width"] == analysis.width
    assert all(0.0 <= tag.confidence <= 1.0 for tag in analysis.tags), name


def test_malformed_tag_entries_are_dropped_and_confidences_clamped() -> None:
    """The SDK coerces nothing: strings, booleans and missing names are dropped, out-of-range clamped."""
    body = {
        "modelVersion": "2023-10-01",
        "metadata": {"width": "864", "height": 576},
        "tagsResult": {
            "values": [
                {"name": "cat", "confidence": 1.7},
                {"name": "dog", "confidence": "0.5"},
                {"name": "", "confidence": 0.4},
                {"confidence": 0.4},
                {"name": "flag", "confidence": True},
                "junk",
                {"name": "sky", "confidence": -0.2},
            ]
        },
    }
    analysis = analysis_from_result(body)
    assert (Tag("cat", 1.0), Tag("sky", 0.0)) == analysis.tags
    assert (None, 576) == (analysis.width, analysis.height)


def test_an_answer_without_tags_gives_no_tags() -> None:
    """A 200 without ``tagsResult`` (another feature asked) is an analysis with no tags, not an error."""
    assert (
        () == analysis_from_result({"modelVersion": "2023-10-01", "metadata": {"width": 1, "height": 1}}).tags
    )


@pytest.mark.parametrize(
    ("status", "code", "inner", "message", "expected_type", "expected_code"),
    [
        (
            400,
            "InvalidRequest",
            "InvalidImageFormat",
            "Image format is not valid.",
            ImageAnalysisRejected,
            "InvalidImageFormat",
        ),
        (
            400,
            "InvalidRequest",
            "InvalidImageSize",
            "The image dimension is not allowed",
            ImageAnalysisRejected,
            "InvalidImageSize",
        ),
        (
            400,
            "InvalidRequest",
            None,
            "The provided image url is not accessible.",
            ImageAnalysisRejected,
            "NotAccessible",
        ),
        (
            400,
            "InvalidRequest",
            None,
            "The image size is not allowed to be zero or larger than 20971520 bytes.",
            ImageAnalysisRejected,
            "InvalidImageSize",
        ),
        (
            400,
            "InvalidRequest",
            "NotSupportedVisualFeature",
            "Specified feature type is not valid",
            FatalAnalyzerError,
            None,
        ),
        (
            400,
            "InvalidRequest",
            None,
            "The feature 'Caption' is not supported in this region",
            FatalAnalyzerError,
            None,
        ),
        (401, "401", None, "Access denied due to invalid subscription key", FatalAnalyzerError, None),
        (403, "403", None, "Out of call volume quota", FatalAnalyzerError, None),
        (404, "404", None, "Resource not found", FatalAnalyzerError, None),
        (500, "InternalServerError", None, "boom", TransientAnalyzerError, None),
        (503, "ServiceUnavailable", None, "busy", TransientAnalyzerError, None),
        (None, None, None, "undecodable", TransientAnalyzerError, None),
    ],
)
def test_service_errors_map_to_the_worker_hierarchy(
    status: int | None,
    code: str | None,
    inner: str | None,
    message: str,
    expected_type: type[Exception],
    expected_code: str | None,
) -> None:
    """docs/azure-contract.md §3.2: image problems route, misconfiguration stops, the rest is retried."""
    error = classify_http_error(status, code=code, inner_code=inner, message=message, retry_after=None)
    assert expected_type is type(error)
    if expected_code is not None:
        assert isinstance(error, ImageAnalysisRejected)
        assert expected_code == error.code


def test_throttling_carries_retry_after_seconds() -> None:
    """429 with ``Retry-After: 2`` becomes AnalyzerThrottled(retry_after_s=2.0)."""
    error = classify_http_error(429, code="429", inner_code=None, message="rate limit", retry_after="2")
    assert isinstance(error, AnalyzerThrottled)
    assert 2.0 == error.retry_after_s
    assert "throttled" == error.outcome


def test_retry_after_accepts_http_dates_and_caps_absurd_values() -> None:
    """Retry-After may be an HTTP-date; days-long waits are capped, garbage is ignored."""
    now = 1_700_000_000.0
    assert 30.0 == parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=lambda: now)
    assert 3600.0 == parse_retry_after("1296000")
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_error_messages_never_carry_a_sas_token() -> None:
    """A service message that echoes a signed URL is redacted before it becomes our exception text."""
    error = classify_http_error(
        400,
        code="InvalidRequest",
        inner_code=None,
        message="The image url https://acct.blob.core.windows.net/c/a.jpg?sig=SECRET is not accessible.",
        retry_after=None,
    )
    assert "SECRET" not in str(error)
