"""Fidelity of the vision emulator: real recorded requests, replayed through the real SDK, get answers of the
recorded shape (status, keys, value types, nesting), and error answers equal the recorded ones.

Recordings: ``$MODERATION_AZURE_RECORDINGS``, else ``tests/data/azure-recordings`` (its README names the
sources).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import AsyncHttpResponse, HttpRequest

from tests.fixtures.emulator import TEST_KEY, png_image, sdk_client
from worker.dev.emulator.fixtures import bytes_key, parse_fixtures
from worker.dev.emulator.server import Emulator

pytestmark = pytest.mark.integration


def _find_recordings() -> Path | None:
    candidates = [
        os.environ.get("MODERATION_AZURE_RECORDINGS", ""),
        str(Path(__file__).parents[1] / "data" / "azure-recordings"),
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


RECORDINGS = _find_recordings()


def _load(name: str) -> dict[str, Any]:
    assert RECORDINGS is not None
    document: dict[str, Any] = json.loads((RECORDINGS / name).read_text(encoding="utf-8"))
    return document


def _entries() -> list[Any]:
    if RECORDINGS is None:
        return []
    return [
        pytest.param(entry, id=f"{path.stem}-{index}")
        for path in sorted(RECORDINGS.glob("analyze_*.json"))
        for index, entry in enumerate(json.loads(path.read_text(encoding="utf-8"))["Entries"])
    ]


def shape(value: object) -> object:
    """The structure of a JSON value: dicts keep their keys, lists the distinct shapes of their items,
    scalars become their type name (so ``1`` and ``1.0`` differ, as they do for the SDK)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        distinct = {orjson.dumps(shape(item), option=orjson.OPT_SORT_KEYS): shape(item) for item in value}
        return [distinct[key] for key in sorted(distinct)]
    return type(value).__name__


def scene_of(body: dict[str, Any]) -> dict[str, Any]:
    """A fixture step that makes the emulator describe what a recorded body describes (tags and text)."""
    lines = [line["text"] for block in body["readResult"]["blocks"] for line in block["lines"]]
    tags = [[tag["name"], tag["confidence"]] for tag in body["tagsResult"]["values"]]
    return {"tags": tags, "text": "\n".join(lines), **body["metadata"]}


ALL_FEATURES_BODY = "analyze_sync_all_features_from_url.json"


def sdk_arguments(query: dict[str, str]) -> tuple[list[VisualFeatures], dict[str, Any]]:
    """The SDK call that sends ``query``: its features and keyword options."""
    options: dict[str, Any] = {}
    if "language" in query:
        options["language"] = query["language"]
    if "gender-neutral-caption" in query:
        options["gender_neutral_caption"] = query["gender-neutral-caption"] == "true"
    if "smartcrops-aspect-ratios" in query:
        options["smart_crops_aspect_ratios"] = [
            float(r) for r in query["smartcrops-aspect-ratios"].split(",")
        ]
    if "model-version" in query:
        options["model_version"] = query["model-version"]
    return [VisualFeatures(name) for name in query["features"].split(",")], options


def test_the_recordings_are_present() -> None:
    """The fidelity tests need the recorded traffic; a missing copy is a failure, not a skip."""
    assert RECORDINGS is not None, "set MODERATION_AZURE_RECORDINGS to the azure-recordings directory"


@pytest.mark.parametrize("entry", _entries())
async def test_recorded_request_gets_an_answer_of_the_recorded_shape(emulator: Emulator, entry: Any) -> None:
    """The SDK call that produced a recording sends the same path and query to the emulator and meets the
    recorded status (as the same SDK outcome), content type and body shape; error bodies equal the record."""
    url = entry["RequestBody"]["url"]
    if entry["StatusCode"] == 400:
        step: dict[str, Any] = {"error": "NotAccessible"}
    else:
        step = scene_of(_load(ALL_FEATURES_BODY)["Entries"][0]["ResponseBody"])
    emulator.load_fixtures(parse_fixtures({url: step}))
    # The recordings' key is sanitised; the 401 recording is the one that used a key the service refused.
    key = entry["RequestHeaders"]["Ocp-Apim-Subscription-Key"] if entry["StatusCode"] == 401 else TEST_KEY
    recorded = urlsplit(entry["RequestUri"])
    features, options = sdk_arguments(dict(parse_qsl(recorded.query)))
    sent: list[HttpRequest] = []
    received: list[AsyncHttpResponse] = []
    async with sdk_client(emulator.endpoint, key) as client:
        outcome: ImageAnalysisResult | HttpResponseError
        try:
            outcome = await client.analyze_from_url(
                url,
                features,
                raw_request_hook=lambda pipeline_request: sent.append(pipeline_request.http_request),
                raw_response_hook=lambda pipeline_response: received.append(pipeline_response.http_response),
                **options,
            )
        except HttpResponseError as exc:
            outcome = exc
    assert (recorded.path, recorded.query) == urlsplit(sent[0].url)[2:4]
    response = received[0]
    assert (entry["StatusCode"], type(outcome)) == (
        response.status_code,
        EXPECTED_OUTCOME[response.status_code],
    )
    assert entry["ResponseHeaders"]["Content-Type"] == response.headers["Content-Type"]
    if isinstance(outcome, ImageAnalysisResult):
        assert shape(entry["ResponseBody"]) == shape(outcome.as_dict())
    else:
        assert entry["ResponseBody"] == orjson.loads(response.text())
        assert ("x-ms-error-code" in entry["ResponseHeaders"]) == ("x-ms-error-code" in response.headers)


#: what the SDK gives for each recorded status (docs/azure-contract.md §3.3)
EXPECTED_OUTCOME = {200: ImageAnalysisResult, 400: HttpResponseError, 401: ClientAuthenticationError}


async def test_a_refused_key_raises_client_authentication_error_with_permission_denied(
    emulator: Emulator,
) -> None:
    """401 maps to ClientAuthenticationError; the reason phrase is the gateway's ``PermissionDenied``."""
    async with sdk_client(emulator.endpoint, "wrong-key") as client:
        with pytest.raises(ClientAuthenticationError) as caught:
            await client.analyze_from_url("https://img.example/a.jpg", [VisualFeatures.TAGS])
    assert (caught.value.status_code, caught.value.reason, _code(caught)) == (401, "PermissionDenied", "401")


def _code(caught: pytest.ExceptionInfo[HttpResponseError]) -> str | None:
    return caught.value.error.code if caught.value.error else None


MAXIMUM_SET_EXAMPLES = [
    "AnalyzeFromUrl_MaximumSet",
    "AnalyzeFromBuffer_MaximumSet",
    "AnalyzeFromImageData_MaximumSet",
]


@pytest.mark.parametrize("example", MAXIMUM_SET_EXAMPLES)
async def test_official_examples_with_every_feature_get_the_example_shape(
    emulator: Emulator, example: str
) -> None:
    """The spec's maximum-set examples, sent by URL or as bytes (a real 864x576 PNG), answer 200 with every
    result key and the same nested shape as the example body."""
    document = _load(f"{example}.json")
    parameters, expected = document["parameters"], document["responses"]["200"]["body"]
    features = [VisualFeatures(name) for name in parameters["features"]]
    options = {
        "language": parameters["language"],
        "gender_neutral_caption": parameters["gender-neutral-caption"],
        "smart_crops_aspect_ratios": parameters["smartcrops-aspect-ratios"],
        "model_version": parameters["model-version"],
    }
    image = png_image(expected["metadata"]["width"], expected["metadata"]["height"])
    url = parameters.get("imageUrl", {}).get("url")
    emulator.load_fixtures(parse_fixtures({url or bytes_key(image): scene_of(expected)}))
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        if url:
            result = await client.analyze_from_url(url, features, **options)
        else:
            result = await client.analyze(image, features, **options)
    assert shape(expected) == shape(result.as_dict())
    assert expected["metadata"] == result.as_dict()["metadata"]


@pytest.mark.parametrize("example", ["AnalyzeFromUrl_MaximumSet_Gen", "AnalyzeFromBuffer_MaximumSet_Gen"])
async def test_generated_examples_with_a_made_up_language_are_refused(
    emulator: Emulator, example: str
) -> None:
    """The generated examples are schema-valid but not service-valid: their random ``language`` is not a tags
    language, so the emulator answers NotSupportedLanguage as the service documents, not the example's 200."""
    parameters = _load(f"{example}.json")["parameters"]
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.analyze(png_image(100, 100), [VisualFeatures.TAGS], language=parameters["language"])
    assert caught.value.error is not None
    assert (
        caught.value.status_code,
        caught.value.error.code,
        caught.value.error.innererror.get("code"),
    ) == (400, "InvalidRequest", "NotSupportedLanguage")
