"""The emulator speaks docs/azure-contract.md: query checks, exact error bodies, 200 bodies, throttle."""

from __future__ import annotations

import pytest

from worker.dev.emulator.contract import (
    NAMED_ERRORS,
    RESULT_KEYS,
    AnalyzeOptions,
    RequestRejected,
    Scene,
    build_result,
    error_for_status,
    parse_query,
    throttled,
)
from worker.dev.emulator.state import SlidingWindowLimiter

BASE = {"api-version": "2023-10-01"}


def rejection(query: dict[str, str]) -> tuple[int, dict[str, object]]:
    with pytest.raises(RequestRejected) as caught:
        parse_query(query)
    return caught.value.error.status, caught.value.error.body()


def test_a_full_query_parses_to_options() -> None:
    """Every option the SDK can send is read, features in request order without duplicates."""
    query = BASE | {
        "features": "tags,caption,denseCaptions,objects,read,smartCrops,people,tags",
        "language": "en",
        "gender-neutral-caption": "true",
        "smartcrops-aspect-ratios": "0.9,1.33",
        "model-version": "latest",
    }
    expected = AnalyzeOptions(tuple(RESULT_KEYS), "en", True, (0.9, 1.33))
    assert expected == parse_query(query)


def test_empty_features_get_the_documented_400() -> None:
    """``features=`` (the SDK sends it for an empty list) is refused without an inner error."""
    message = "Either 'features' or 'model-name' needs to be specified in the query parameter."
    assert (400, {"error": {"code": "InvalidRequest", "message": message}}) == rejection(
        BASE | {"features": ""}
    )


@pytest.mark.parametrize("features", ["tags,colors", "Tags", "tags,CAPTION"])
def test_unknown_or_miscased_features_are_not_supported(features: str) -> None:
    """Feature names are case-sensitive; anything else is NotSupportedVisualFeature."""
    expected = {
        "error": {
            "code": "InvalidRequest",
            "message": "Analyze query is invalid.",
            "innererror": {
                "code": "NotSupportedVisualFeature",
                "message": "Specified feature type is not valid",
            },
        }
    }
    assert (400, expected) == rejection(BASE | {"features": features})


@pytest.mark.parametrize(
    ("features", "language", "supported"),
    [
        ("tags", "de", True),
        ("read,people,smartCrops", "xx", True),
        ("caption", "de", False),
        ("tags,objects", "fr", False),
        ("tags", "klingon", False),
    ],
)
def test_language_support_follows_the_features(features: str, language: str, supported: bool) -> None:
    """Tags know ~50 languages; caption, dense captions and objects only English; the rest ignore it."""
    query = BASE | {"features": features, "language": language}
    if supported:
        assert language == parse_query(query).language
    else:
        status, body = rejection(query)
        assert (status, body["error"]["innererror"]["code"]) == (400, "NotSupportedLanguage")  # type: ignore[index]


@pytest.mark.parametrize("ratios", ["0.5", "0.9,1.9", "abc", "nan"])
def test_crop_ratios_outside_the_allowed_range_are_bad_arguments(ratios: str) -> None:
    """Each ratio must be a number in [0.75, 1.8]."""
    status, body = rejection(BASE | {"features": "smartCrops", "smartcrops-aspect-ratios": ratios})
    expected_inner = {
        "code": "BadArgument",
        "message": "'smartcrops-aspect-ratios' aspect ratio is not in allowed range [0.75 to 1.8]",
    }
    assert (400, expected_inner) == (status, body["error"]["innererror"])  # type: ignore[index]


@pytest.mark.parametrize("query", [{}, {"api-version": "2024-02-01"}])
def test_only_the_2023_10_01_api_version_is_served(query: dict[str, str]) -> None:
    """The emulator's choice for the undocumented case: 400 with inner code UnsupportedApiVersion."""
    status, body = rejection(query | {"features": "tags"})
    assert (status, body["error"]["innererror"]["code"]) == (400, "UnsupportedApiVersion")  # type: ignore[index]


def test_gender_neutral_caption_and_model_version_must_be_well_formed() -> None:
    """Values the SDK would never send are bad arguments, not silently ignored."""
    assert rejection(BASE | {"features": "tags", "gender-neutral-caption": "maybe"})[0] == 400
    assert rejection(BASE | {"features": "tags", "model-version": "v4"})[0] == 400


SCENE = Scene((("man", 0.97), ("outdoor", 0.9), ("car", 0.6)), 864, 576, "STOP\nslow down")


def test_a_result_has_metadata_and_only_the_requested_features() -> None:
    """modelVersion and metadata always; one *Result key per requested feature and no other."""
    body = build_result(AnalyzeOptions(("people", "tags")), SCENE)
    assert {"modelVersion", "metadata", "peopleResult", "tagsResult"} == set(body)
    assert body["metadata"] == {"width": 864, "height": 576}
    expected_tags = [{"name": "man", "confidence": 0.97}, {"name": "outdoor", "confidence": 0.9},
                     {"name": "car", "confidence": 0.6}]  # fmt: skip
    assert {"values": expected_tags} == body["tagsResult"]


def test_dense_captions_start_with_the_caption_over_the_whole_image() -> None:
    """The first dense caption equals the caption and covers x=0,y=0,w=width,h=height."""
    body = build_result(AnalyzeOptions(("caption", "denseCaptions")), SCENE)
    first = body["denseCaptionsResult"]["values"][0]  # type: ignore[index]
    assert body["captionResult"] == {"text": first["text"], "confidence": first["confidence"]}
    assert first["boundingBox"] == {"x": 0, "y": 0, "w": 864, "h": 576}


def test_gender_neutral_captions_say_person() -> None:
    """gender-neutral-caption=true replaces gendered words in the caption."""
    neutral = build_result(AnalyzeOptions(("caption",), gender_neutral_caption=True), SCENE)
    assert neutral["captionResult"]["text"] == "a picture of person and outdoor"  # type: ignore[index]


def test_smart_crops_follow_the_requested_ratios_in_order() -> None:
    """One crop per ratio, echoing it, each inside the image and close to the asked shape."""
    body = build_result(AnalyzeOptions(("smartCrops",), crop_ratios=(0.9, 1.33)), SCENE)
    crops = body["smartCropsResult"]["values"]  # type: ignore[index]
    assert [crop["aspectRatio"] for crop in crops] == [0.9, 1.33]
    for crop in crops:
        box = crop["boundingBox"]
        assert box["x"] + box["w"] <= 864
        assert box["y"] + box["h"] <= 576
        assert abs(box["w"] / box["h"] - crop["aspectRatio"]) < 0.01


def test_without_ratios_one_crop_close_to_the_image_shape_is_returned() -> None:
    """The service picks one ratio between 0.5 and 2.0 when none is requested."""
    body = build_result(AnalyzeOptions(("smartCrops",)), Scene((), 3000, 100))
    assert [c["aspectRatio"] for c in body["smartCropsResult"]["values"]] == [2.0]  # type: ignore[index]


def test_read_returns_one_block_of_lines_with_four_point_polygons() -> None:
    """Each text line becomes a line with its words; every polygon has exactly four points."""
    read = build_result(AnalyzeOptions(("read",)), SCENE)["readResult"]
    lines = read["blocks"][0]["lines"]  # type: ignore[index]
    assert [line["text"] for line in lines] == ["STOP", "slow down"]
    assert [[w["text"] for w in line["words"]] for line in lines[1:]] == [["slow", "down"]]
    words = [word for line in lines for word in line["words"]]
    polygons = [item["boundingPolygon"] for item in [*lines, *words]]
    assert {4} == {len(polygon) for polygon in polygons}


def test_empty_scenes_give_empty_lists() -> None:
    """No text: ``blocks: []``; no person tag: ``values: []`` for people; no tags: empty tags and objects."""
    body = build_result(AnalyzeOptions(("read", "people", "tags", "objects")), Scene((), 100, 100))
    expected: dict[str, object] = {
        "readResult": {"blocks": []},
        "peopleResult": {"values": []},
        "tagsResult": {"values": []},
        "objectsResult": {"values": []},
    }
    assert expected == {key: body[key] for key in expected}


def test_unscripted_error_statuses_get_an_envelope() -> None:
    """A fixture's bare status gets the catalogue entry, or the status as the code."""
    assert NAMED_ERRORS["ServiceUnavailable"] == error_for_status(503)
    assert (NAMED_ERRORS["TooManyRequests"].body(), ()) == (
        error_for_status(429).body(),
        error_for_status(429).headers,
    )
    assert error_for_status(418).body() == {
        "error": {"code": "418", "message": "The request failed with status 418."}
    }


def test_the_throttling_answer_names_the_wait_in_header_and_message() -> None:
    """429 with Retry-After N and the quota message saying 'retry after N seconds'."""
    error = throttled(3)
    assert (error.status, error.code, error.headers) == (429, "429", (("Retry-After", "3"),))
    assert "Please retry after 3 seconds." in error.message


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_the_window_admits_the_limit_then_refuses_until_a_slot_frees() -> None:
    """3 per second: the 4th call in the same instant waits 1 s; half a second later still refused."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 1.0, clock)
    assert [limiter.try_admit() for _ in range(4)] == [None, None, None, 1]
    clock.now_s += 0.5
    assert limiter.try_admit() == 1
    clock.now_s += 0.5
    assert [limiter.try_admit() for _ in range(4)] == [None, None, None, 1]


def test_retry_after_is_the_whole_seconds_until_the_oldest_call_leaves_the_window() -> None:
    """A 20-per-minute window (F0) answers the seconds left, rounded up, never below 1."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(20, 60.0, clock)
    assert all(limiter.try_admit() is None for _ in range(20))
    clock.now_s += 10.2
    assert limiter.try_admit() == 50
    clock.now_s += 49.7
    assert limiter.try_admit() == 1


def test_a_limit_must_admit_something() -> None:
    """Zero calls or a non-positive window is a configuration error."""
    with pytest.raises(ValueError, match="max_calls"):
        SlidingWindowLimiter(0, 1.0, FakeClock())
