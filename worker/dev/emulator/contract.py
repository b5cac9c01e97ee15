"""The Image Analysis 4.0 wire contract as the emulator speaks it: query rules, error answers, 200 bodies.

Pure: no aiohttp, no I/O. Messages and codes follow ``docs/azure-contract.md`` §2-§3;
where the service's answer is undocumented (an unsupported api-version, a malformed JSON body) the choice made
here is marked in the docstring of the function that makes it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

API_VERSION = "2023-10-01"
MODEL_VERSION = "2023-10-01"
ROUTE_SUFFIX = "/computervision/imageanalysis:analyze"
MAX_IMAGE_BYTES = 20_971_520
MIN_DIMENSION_PX = 50
MAX_DIMENSION_PX = 16_000
MIN_CROP_RATIO = 0.75
MAX_CROP_RATIO = 1.8

#: wire feature name -> the response key that carries its result, in the SDK's enum order
RESULT_KEYS: Mapping[str, str] = {
    "tags": "tagsResult",
    "caption": "captionResult",
    "denseCaptions": "denseCaptionsResult",
    "objects": "objectsResult",
    "read": "readResult",
    "smartCrops": "smartCropsResult",
    "people": "peopleResult",
}
#: caption, dense captions and objects are English-only [DOC language-support]
ENGLISH_ONLY_FEATURES = frozenset({"caption", "denseCaptions", "objects"})
#: languages the tags model supports [DOC language-support]; read, people and smart crops ignore ``language``
TAG_LANGUAGES = frozenset({
    "ar", "az", "bg", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "eu", "fi", "fr", "ga",
    "gl", "he", "hi", "hr", "hu", "id", "it", "ja", "kk", "ko", "lt", "lv", "mk", "ms", "nb", "nl", "pl",
    "prs", "pt", "pt-BR", "pt-PT", "ro", "ru", "sk", "sl", "sr-Cyrl", "sr-Latn", "sv", "th", "tr", "uk",
    "vi", "zh", "zh-Hans", "zh-Hant",
})  # fmt: skip
_MODEL_VERSION_PATTERN = re.compile(r"^(latest|\d{4}-\d{2}-\d{2})(-preview)?$")

UNAUTHORIZED_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. "
    "Make sure to provide a valid key for an active subscription "
    "and use a correct regional API endpoint for your resource."
)
_QUERY_INVALID = "Analyze query is invalid."


@dataclass(frozen=True, slots=True)
class ServiceError:
    """One error answer: status, the envelope's codes and messages, and headers specific to it.

    ``reason`` overrides the HTTP reason phrase (the gateway's 401 says ``PermissionDenied``).
    """

    status: int
    code: str
    message: str
    inner_code: str | None = None
    inner_message: str | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, object]:
        """The Azure.Core error envelope: ``{"error": {"code", "message"[, "innererror"]}}``."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.inner_code is not None:
            error["innererror"] = {"code": self.inner_code, "message": self.inner_message or self.message}
        return {"error": error}


class RequestRejected(Exception):
    """Raised by the request checks; ``error`` is the answer the service gives."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(f"{error.status} {error.code}: {error.message}")
        self.error = error


def _bad_request(
    message: str, inner_code: str | None = None, inner_message: str | None = None
) -> ServiceError:
    return ServiceError(400, "InvalidRequest", message, inner_code, inner_message)


def throttled(retry_after_s: int) -> ServiceError:
    """The 429 over-quota answer; ``retry_after_s`` (>= 1) goes both in the header and in the message."""
    return ServiceError(
        429,
        "429",
        f"Requests to the Analyze Operation under Computer Vision API ({API_VERSION}) "
        "have exceeded rate limit of your current ComputerVision S1 pricing tier. "
        f"Please retry after {retry_after_s} seconds. "
        "Please contact Azure support service if you would like to further increase the default rate limit.",
        headers=(("Retry-After", str(retry_after_s)),),
    )


#: errors a fixture can name with ``{"error": NAME}``; see docs/emulator.md
NAMED_ERRORS: Mapping[str, ServiceError] = {
    "NotAccessible": _bad_request("The provided image url is not accessible."),
    "InvalidImageFormat": _bad_request("Image format is not valid.", "InvalidImageFormat"),
    "InvalidImageSize": _bad_request(
        f"The image dimension is not allowed to be smaller than {MIN_DIMENSION_PX} and larger than "
        f"{MAX_DIMENSION_PX}.",
        "InvalidImageSize",
    ),
    "InvalidImageBytes": _bad_request(
        f"The image size is not allowed to be zero or larger than {MAX_IMAGE_BYTES} bytes."
    ),
    "NotSupportedVisualFeature": _bad_request(
        _QUERY_INVALID, "NotSupportedVisualFeature", "Specified feature type is not valid"
    ),
    "NotSupportedLanguage": _bad_request(
        _QUERY_INVALID, "NotSupportedLanguage", "The input language is not supported"
    ),
    "BadArgument": _bad_request(
        _QUERY_INVALID,
        "BadArgument",
        "'smartcrops-aspect-ratios' aspect ratio is not in allowed range "
        f"[{MIN_CROP_RATIO} to {MAX_CROP_RATIO}]",
    ),
    "MissingFeatures": _bad_request(
        "Either 'features' or 'model-name' needs to be specified in the query parameter."
    ),
    "Unauthorized": ServiceError(401, "401", UNAUTHORIZED_MESSAGE, reason="PermissionDenied"),
    # No Retry-After on 403: the SDK would sleep that long, often days (docs/azure-contract.md §4).
    "QuotaExceeded": ServiceError(
        403,
        "403",
        "Out of call volume quota for ComputerVision F0 pricing tier. Please retry after 1 day. "
        "To increase your call volume switch to a paid tier.",
    ),
    "NotFound": ServiceError(404, "404", "Resource not found"),
    "TooManyRequests": throttled(1),
    "InternalServerError": ServiceError(500, "InternalServerError", "An internal server error occurred."),
    "ServiceUnavailable": ServiceError(503, "ServiceUnavailable", "The service is temporarily unavailable."),
    "Timeout": ServiceError(504, "Timeout", "The operation timed out."),
}
_BY_STATUS = {error.status: error for error in NAMED_ERRORS.values() if error.status != 400}


def error_for_status(status: int) -> ServiceError:
    """The envelope for an error status (>= 400) scripted without a body; unnamed statuses use the status
    number as the code, as the gateway does. No extra headers: a scripted 429 carries ``Retry-After`` only
    if the script adds it, so both SDK behaviours (retry or raise at once) can be scripted."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return dataclasses.replace(known, headers=())
    if status == 400:
        return _bad_request("The request is invalid.")
    return ServiceError(status, str(status), f"The request failed with status {status}.")


def unsupported_content_type(content_type: str) -> ServiceError:
    """400 for a body that is neither ``application/json`` nor ``application/octet-stream``."""
    return _bad_request(f"The provided image content type '{content_type}' is not supported.")


def invalid_json_body() -> ServiceError:
    """400 for a JSON body that is not ``{"url": "<string>"}`` (emulator's wording; undocumented)."""
    return _bad_request("The request body is invalid: expected a JSON object with a string 'url'.")


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    """The parsed query of one analyze call.

    ``features`` are wire names in request order without duplicates; ``crop_ratios`` is ``None`` when
    ``smartcrops-aspect-ratios`` was not sent.
    """

    features: tuple[str, ...]
    language: str = "en"
    gender_neutral_caption: bool = False
    crop_ratios: tuple[float, ...] | None = None


def parse_query(query: Mapping[str, str]) -> AnalyzeOptions:
    """Check the query like the service and return the options; raises ``RequestRejected`` with its answer.

    Checks in order: api-version, features, language, smart-crop ratios, gender-neutral-caption,
    model-version. An absent or other api-version is answered 400 ``InvalidRequest`` with inner code
    ``UnsupportedApiVersion`` (the real answer is undocumented).
    """
    api_version = query.get("api-version", "")
    if api_version != API_VERSION:
        raise RequestRejected(
            _bad_request(
                f"The api-version must be '{API_VERSION}'.",
                "UnsupportedApiVersion",
                "Unsupported api-version.",
            )
        )
    features = _parse_features(query.get("features", ""))
    language = query.get("language", "en")
    if (ENGLISH_ONLY_FEATURES.intersection(features) and language != "en") or (
        "tags" in features and language not in TAG_LANGUAGES
    ):
        raise RequestRejected(NAMED_ERRORS["NotSupportedLanguage"])
    ratios = _parse_ratios(query.get("smartcrops-aspect-ratios"))
    gender_neutral = query.get("gender-neutral-caption", "false").lower()
    if gender_neutral not in ("true", "false"):
        raise RequestRejected(
            _bad_request(_QUERY_INVALID, "BadArgument", "'gender-neutral-caption' is invalid")
        )
    model_version = query.get("model-version", "latest")
    if not _MODEL_VERSION_PATTERN.match(model_version):
        raise RequestRejected(_bad_request(_QUERY_INVALID, "BadArgument", "'model-version' is invalid"))
    return AnalyzeOptions(features, language, gender_neutral == "true", ratios)


def _parse_features(csv: str) -> tuple[str, ...]:
    names = [name for name in csv.split(",") if name]
    if not names:
        raise RequestRejected(NAMED_ERRORS["MissingFeatures"])
    if any(name not in RESULT_KEYS for name in names):  # case-sensitive, as the service is
        raise RequestRejected(NAMED_ERRORS["NotSupportedVisualFeature"])
    return tuple(dict.fromkeys(names))


def _parse_ratios(csv: str | None) -> tuple[float, ...] | None:
    if csv is None:
        return None
    try:
        ratios = tuple(float(item) for item in csv.split(","))
    except ValueError:
        raise RequestRejected(NAMED_ERRORS["BadArgument"]) from None
    if not all(math.isfinite(r) and MIN_CROP_RATIO <= r <= MAX_CROP_RATIO for r in ratios):
        raise RequestRejected(NAMED_ERRORS["BadArgument"])
    return ratios


def check_image_size(width: int, height: int) -> None:
    """Raise ``RequestRejected(InvalidImageSize)`` unless both sides are within [50, 16000] pixels."""
    if not all(MIN_DIMENSION_PX <= side <= MAX_DIMENSION_PX for side in (width, height)):
        raise RequestRejected(NAMED_ERRORS["InvalidImageSize"])


def check_byte_count(byte_count: int) -> None:
    """Raise ``RequestRejected`` for an empty body or one over 20971520 bytes."""
    if byte_count == 0 or byte_count > MAX_IMAGE_BYTES:
        raise RequestRejected(NAMED_ERRORS["InvalidImageBytes"])


@dataclass(frozen=True, slots=True)
class Scene:
    """What the emulator pretends an image shows: tags (name, confidence in [0, 1]), size in pixels, OCR text.

    ``text`` lines are separated by newlines; ``None`` means no text in the image.
    """

    tags: tuple[tuple[str, float], ...]
    width: int
    height: int
    text: str | None = None


_PERSON_TAGS = frozenset({"person", "man", "woman", "boy", "girl", "child", "people"})
_NEUTRAL_WORDS = {"man": "person", "woman": "person", "boy": "child", "girl": "child"}


def build_result(
    options: AnalyzeOptions, scene: Scene, model_version: str = MODEL_VERSION
) -> dict[str, object]:
    """A 200 body with ``modelVersion``, ``metadata`` and exactly the requested features' result keys."""
    body: dict[str, object] = {
        "modelVersion": model_version,
        "metadata": {"width": scene.width, "height": scene.height},
    }
    caption = _caption(scene, gender_neutral=options.gender_neutral_caption)
    builders: dict[str, Callable[[], object]] = {
        "tags": lambda: {"values": [{"name": n, "confidence": c} for n, c in scene.tags]},
        "caption": lambda: caption,
        "denseCaptions": lambda: {"values": _dense_captions(scene, caption)},
        "objects": lambda: {"values": _objects(scene)},
        "read": lambda: {"blocks": _read_blocks(scene)},
        "smartCrops": lambda: {"values": _smart_crops(scene, options.crop_ratios)},
        "people": lambda: {"values": _people(scene)},
    }
    for feature in options.features:
        body[RESULT_KEYS[feature]] = builders[feature]()
    return body


def _box(index: int, scene: Scene) -> dict[str, int]:
    # A 3x3 grid of cells, walked in order: stable, inside the image, and different per index.
    cell_w, cell_h = max(1, scene.width // 3), max(1, scene.height // 3)
    return {"x": (index % 3) * cell_w, "y": (index // 3 % 3) * cell_h, "w": cell_w, "h": cell_h}


def _caption(scene: Scene, *, gender_neutral: bool) -> dict[str, object]:
    if not scene.tags:
        return {"text": "an image", "confidence": 0.5}
    names = [_NEUTRAL_WORDS.get(n, n) if gender_neutral else n for n, _ in scene.tags[:2]]
    return {"text": "a picture of " + " and ".join(names), "confidence": scene.tags[0][1]}


def _dense_captions(scene: Scene, caption: dict[str, object]) -> list[dict[str, object]]:
    whole = {"x": 0, "y": 0, "w": scene.width, "h": scene.height}
    values = [{"text": caption["text"], "confidence": caption["confidence"], "boundingBox": whole}]
    values += [
        {"text": _with_article(name), "confidence": confidence, "boundingBox": _box(index, scene)}
        for index, (name, confidence) in enumerate(scene.tags[:9])
    ]
    return values


def _with_article(name: str) -> str:
    return ("an " if name[:1] in ("a", "e", "i", "o", "u") else "a ") + name


def _objects(scene: Scene) -> list[dict[str, object]]:
    return [
        {"boundingBox": _box(index, scene), "tags": [{"name": name, "confidence": confidence}]}
        for index, (name, confidence) in enumerate(scene.tags[:5])
    ]


def _people(scene: Scene) -> list[dict[str, object]]:
    return [
        {"boundingBox": _box(index, scene), "confidence": confidence}
        for index, (name, confidence) in enumerate(scene.tags)
        if name in _PERSON_TAGS
    ][:1]


def _polygon(x: int, y: int, w: int, h: int) -> list[dict[str, int]]:
    return [{"x": x, "y": y}, {"x": x + w, "y": y}, {"x": x + w, "y": y + h}, {"x": x, "y": y + h}]


def _read_blocks(scene: Scene) -> list[dict[str, object]]:
    if not scene.text:
        return []
    lines: list[dict[str, object]] = []
    for row, line in enumerate(scene.text.splitlines()):
        y = min(10 + 30 * row, scene.height - 1)
        words, x = [], 10
        for word in line.split():
            width = 12 * len(word)
            words.append({"text": word, "boundingPolygon": _polygon(x, y, width, 20), "confidence": 0.99})
            x += width + 8
        lines.append({"text": line, "boundingPolygon": _polygon(10, y, max(x - 18, 1), 20), "words": words})
    return [{"lines": lines}]


def _smart_crops(scene: Scene, ratios: Sequence[float] | None) -> list[dict[str, object]]:
    if ratios is None:  # one crop close to the image's own shape, within [0.5, 2.0] as the service does
        ratios = (round(min(max(scene.width / scene.height, 0.5), 2.0), 2),)
    crops: list[dict[str, object]] = []
    for ratio in ratios:
        crop_w = min(scene.width, max(1, round(scene.height * ratio)))
        crop_h = min(scene.height, max(1, round(crop_w / ratio)))
        box = {"x": (scene.width - crop_w) // 2, "y": (scene.height - crop_h) // 2, "w": crop_w, "h": crop_h}
        crops.append({"aspectRatio": ratio, "boundingBox": box})
    return crops
