"""The vision emulator's checks and injected faults, seen through the real SDK as the worker will see them:
each answer surfaces as the exception type of docs/azure-contract.md §3.3 with the documented codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import AsyncHttpResponse

from tests.fixtures.emulator import TEST_KEY, png_image, sdk_client
from worker.dev.emulator.fixtures import default_tags, parse_fixtures, strip_query
from worker.dev.emulator.server import Emulator, EmulatorConfig

pytestmark = pytest.mark.integration

TAGS = [VisualFeatures.TAGS]
CAT = "https://img.example/cat.jpg"


class FrozenClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def start() -> Callable[..., Emulator]:
    """Build an emulator with ``TEST_KEY`` and the given config options; use it with ``async with``."""

    def build(**options: Any) -> Emulator:
        return Emulator(EmulatorConfig(key=TEST_KEY, **options))

    return build


async def http_error(client: ImageAnalysisClient, *args: Any, **options: Any) -> HttpResponseError:
    """The HttpResponseError (or subclass) an analyze-by-URL call raises."""
    with pytest.raises(HttpResponseError) as caught:
        await client.analyze_from_url(*args, **options)
    return caught.value


def codes(error: HttpResponseError) -> tuple[int | None, str | None, str | None]:
    """Status, error.code and innererror.code of an SDK error."""
    inner = error.error.innererror.get("code") if error.error else None
    return error.status_code, error.error.code if error.error else None, inner


def tag_pairs(result: ImageAnalysisResult) -> list[tuple[str, float]]:
    """``(name, confidence)`` of the result's tags, in order."""
    assert result.tags is not None
    return [(tag.name, tag.confidence) for tag in result.tags.list]


def tag_names(result: ImageAnalysisResult) -> list[str]:
    return [name for name, _ in tag_pairs(result)]


class StaticToken:
    """An async token credential that always has a valid token (Entra ID without Entra)."""

    async def get_token(self, *_scopes: str, **_options: Any) -> AccessToken:
        return AccessToken("token-for-tests", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        return None


async def test_a_bearer_token_is_accepted_instead_of_a_key(emulator: Emulator) -> None:
    """Entra ID callers send ``Authorization: Bearer``; over http the SDK needs ``enforce_https=False``."""
    client = ImageAnalysisClient(emulator.endpoint, StaticToken(), retry_total=0, use_env_settings=False)
    async with client:
        result = await client.analyze_from_url(CAT, TAGS, enforce_https=False)
    assert list(default_tags(CAT.encode())) == tag_pairs(result)


async def test_a_portal_style_endpoint_with_a_trailing_slash_is_served(emulator: Emulator) -> None:
    """The SDK then sends ``//computervision/...``; repeated slashes count as one."""
    async with sdk_client(emulator.endpoint + "/", TEST_KEY) as client:
        result = await client.analyze_from_url(CAT, TAGS)
    assert result.metadata.width == 864


async def test_a_wrong_endpoint_path_is_resource_not_found(start: Callable[..., Emulator]) -> None:
    """With a route prefix set, another path answers 404 ``Resource not found`` (ResourceNotFoundError)."""
    async with start(route_prefix="") as emulator:
        async with sdk_client(emulator.endpoint + "/vision/v3.2", TEST_KEY) as client:
            with pytest.raises(ResourceNotFoundError) as caught:
                await client.analyze_from_url(CAT, TAGS)
        async with sdk_client(emulator.endpoint, TEST_KEY) as client:
            served = await client.analyze_from_url(CAT, TAGS)
    assert caught.value.error is not None
    assert (*codes(caught.value)[:2], caught.value.error.message) == (404, "404", "Resource not found")
    assert served.metadata.width == 864


async def test_features_are_checked(emulator: Emulator) -> None:
    """No features: the 'Either features or model-name' 400; an unknown name: NotSupportedVisualFeature."""
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        empty = await http_error(client, CAT, [])
        unknown = await http_error(client, CAT, ["colors"])
    assert codes(empty) == (400, "InvalidRequest", None)
    assert empty.error is not None
    assert (
        empty.error.message
        == "Either 'features' or 'model-name' needs to be specified in the query parameter."
    )
    assert codes(unknown) == (400, "InvalidRequest", "NotSupportedVisualFeature")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (b"", (400, "InvalidRequest", None)),
        (b"this is not an image", (400, "InvalidRequest", "InvalidImageFormat")),
        (png_image(49, 600), (400, "InvalidRequest", "InvalidImageSize")),
        (png_image(16001, 50), (400, "InvalidRequest", "InvalidImageSize")),
        pytest.param(
            bytes(20_971_521),
            (400, "InvalidRequest", None),
            # aiohttp's client warns that a 20 MiB bytes body is sent in one go; that is the point here.
            marks=pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning"),
        ),
    ],
    ids=["empty", "not-an-image", "too-narrow", "too-wide", "over-20-MiB"],
)
async def test_posted_bytes_are_checked_like_the_service(
    emulator: Emulator, image: bytes, expected: tuple[int, str, str | None]
) -> None:
    """Byte count, then format (magic bytes), then dimensions in [50, 16000]: each a 400 HttpResponseError."""
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.analyze(image, TAGS)
    assert expected == codes(caught.value)


async def test_a_valid_image_reports_its_own_size(emulator: Emulator) -> None:
    """metadata carries the posted image's width and height."""
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        result = await client.analyze(png_image(50, 16000), TAGS)
    assert (result.metadata.width, result.metadata.height) == (50, 16000)


async def test_an_unsupported_content_type_is_a_bad_request(emulator: Emulator) -> None:
    """Only application/json and application/octet-stream bodies are accepted."""
    async with sdk_client(emulator.endpoint, TEST_KEY) as client:
        with pytest.raises(HttpResponseError) as caught:
            await client.analyze(png_image(100, 100), TAGS, content_type="image/png")
    assert codes(caught.value) == (400, "InvalidRequest", None)


async def test_over_the_rate_limit_the_answer_is_429_with_retry_after(start: Callable[..., Emulator]) -> None:
    """Two calls per second: the third in the same instant gets 429, ``Retry-After: 1`` and the quota
    message; once the window has moved on, calls pass again. Throttled calls do not use up the quota."""
    clock = FrozenClock()
    received: list[AsyncHttpResponse] = []
    async with start(rate_limit_per_s=2, clock=clock) as emulator:
        async with sdk_client(emulator.endpoint, TEST_KEY) as client:
            for _ in range(2):
                await client.analyze_from_url(CAT, TAGS)
            throttled = await http_error(
                client, CAT, TAGS, raw_response_hook=lambda response: received.append(response.http_response)
            )
            clock.now_s += 1.0
            await client.analyze_from_url(CAT, TAGS)
        stats = emulator.stats
    assert codes(throttled) == (429, "429", None)
    assert received[0].headers["Retry-After"] == "1"
    assert throttled.error is not None
    assert "Please retry after 1 seconds." in (throttled.error.message or "")
    assert (dict(stats.by_status), stats.rate_limited_total) == ({200: 3, 429: 1}, 1)


async def test_a_script_answers_503_then_200(start: Callable[..., Emulator]) -> None:
    """With SDK retries off the worker sees the 503 itself, then the scripted tags on the next call."""
    fixtures = parse_fixtures({CAT: [{"status": 503}, {"tags": [["cat", 0.97]]}]})
    async with start(fixtures=fixtures) as emulator, sdk_client(emulator.endpoint, TEST_KEY) as client:
        unavailable = await http_error(client, CAT + "?sig=first", TAGS)
        result = await client.analyze_from_url(CAT + "?sig=second", TAGS)
    assert codes(unavailable) == (503, "ServiceUnavailable", None)
    assert tag_pairs(result) == [("cat", 0.97)]


async def test_sdk_retries_absorb_a_scripted_503(start: Callable[..., Emulator]) -> None:
    """With the SDK's own retries on, 503 is retried at once (first backoff is 0 s): one call, two answers."""
    fixtures = parse_fixtures({CAT: [{"status": 503}, {"tags": [["cat", 0.97]]}]})
    async with start(fixtures=fixtures) as emulator:
        async with sdk_client(emulator.endpoint, TEST_KEY, retry_total=3) as client:
            result = await client.analyze_from_url(CAT, TAGS)
        stats = emulator.stats
    assert (tag_names(result), dict(stats.by_status)) == (["cat"], {503: 1, 200: 1})


async def test_named_errors_and_scripted_headers_reach_the_caller(start: Callable[..., Emulator]) -> None:
    """``{"error": "InvalidImageFormat"}`` gives the inner code; a step's headers are added to the answer."""
    fixtures = parse_fixtures({CAT: {"error": "InvalidImageFormat", "headers": {"x-test-step": "1"}}})
    received: list[AsyncHttpResponse] = []
    async with start(fixtures=fixtures) as emulator, sdk_client(emulator.endpoint, TEST_KEY) as client:
        error = await http_error(
            client, CAT, TAGS, raw_response_hook=lambda response: received.append(response.http_response)
        )
    assert codes(error) == (400, "InvalidRequest", "InvalidImageFormat")
    assert (received[0].headers["x-test-step"], received[0].headers["x-ms-error-code"]) == (
        "1",
        "InvalidRequest",
    )


async def test_configured_latency_delays_every_call(start: Callable[..., Emulator]) -> None:
    """``latency_ms`` is added to each analyze call."""
    async with start(latency_ms=250) as emulator, sdk_client(emulator.endpoint, TEST_KEY) as client:
        began = time.monotonic()
        await client.analyze_from_url(CAT, TAGS)
        elapsed_s = time.monotonic() - began
    assert elapsed_s >= 0.25


async def test_a_slow_step_and_a_hanging_step_time_the_client_out(start: Callable[..., Emulator]) -> None:
    """A step delayed past the client's read timeout, or one that never answers, raises
    ServiceResponseTimeoutError; the hung call is counted, the slow one was never answered."""
    slow, hung = "https://img.example/slow.jpg", "https://img.example/hung.jpg"
    fixtures = parse_fixtures({slow: {"tags": [], "delay_ms": 60_000}, hung: {"hang": True}})
    async with start(fixtures=fixtures) as emulator:
        async with sdk_client(emulator.endpoint, TEST_KEY, read_timeout=0.3) as client:
            for url in (slow, hung):
                with pytest.raises(ServiceResponseTimeoutError):
                    await client.analyze_from_url(url, TAGS)
        stats = emulator.stats
    assert (dict(stats.by_status), stats.hung_total) == ({}, 1)


async def test_unscripted_images_get_the_same_tags_on_every_run_and_sas_token(
    start: Callable[..., Emulator],
) -> None:
    """The default answer depends only on the URL without its query (or on the bytes): two emulators and two
    SAS tokens give identical tags."""
    answers = []
    for sas in ("?sig=one", "?sig=two"):
        async with start() as emulator, sdk_client(emulator.endpoint, TEST_KEY) as client:
            by_url = await client.analyze_from_url(CAT + sas, TAGS)
            by_bytes = await client.analyze(png_image(100, 100), TAGS)
            answers.append((tag_names(by_url), tag_names(by_bytes)))
    expected_by_url = [name for name, _ in default_tags(strip_query(CAT).encode())]
    assert answers[0] == answers[1]
    assert expected_by_url == answers[0][0]


async def test_scripted_headers_replace_the_defaults_whatever_their_case(
    start: Callable[..., Emulator],
) -> None:
    """``{"error": "TooManyRequests", "headers": {"retry-after": "2"}}`` sends one Retry-After, of 2 s."""
    fixtures = parse_fixtures({CAT: {"error": "TooManyRequests", "headers": {"retry-after": "2"}}})
    received: list[AsyncHttpResponse] = []
    async with start(fixtures=fixtures) as emulator, sdk_client(emulator.endpoint, TEST_KEY) as client:
        error = await http_error(
            client, CAT, TAGS, raw_response_hook=lambda response: received.append(response.http_response)
        )
    retry_after = received[0].headers.getall("Retry-After")  # type: ignore[attr-defined]
    assert (error.status_code, retry_after) == (429, ["2"])
