"""Scripted answers for the vision emulator: the fixtures format, its loader, per-image scripts, the default.

A fixtures document is a JSON object mapping an image key to a script (a list of steps; a single step may be
written without the list). Keys: an image URL, ``sha256:<64 hex>`` of posted bytes, or ``*`` (every image that
has no script of its own, each with its own progress). A step is one of::

    {"status": 503, "headers": {...}, "body": {...}}   a canned answer; body optional (see ``CannedReply``)
    {"tags": [["cat", 0.98], ...], "text": "...", "width": 864, "height": 576}   a 200 built from tags
    {"error": "InvalidImageFormat"}                    a named error (``vision_contract.NAMED_ERRORS``)
    {"hang": true}                                     never answer

and may also carry ``headers`` (added to the answer) and ``delay_ms``. Each image's calls walk its script; the
last step repeats forever. URL matching, first hit wins: the exact URL; then the URL without its query string
and fragment (so a key written without a query matches every SAS-signed variant); then ``*``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from worker.dev.emulator.contract import NAMED_ERRORS

WILDCARD_KEY = "*"
_SHA256_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")
_T = TypeVar("_T")
_STEP_KEYS = frozenset(
    {"status", "headers", "body", "delay_ms", "hang", "tags", "text", "width", "height", "error"}
)


class FixtureError(ValueError):
    """A fixtures document does not follow the format; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class CannedReply:
    """Answer ``status`` with ``body`` as JSON.

    Without a body, a 200 is the default answer for the image and an error status gets the standard envelope
    for that status (``vision_contract.error_for_status``).
    """

    status: int
    body: object | None = None


@dataclass(frozen=True, slots=True)
class TagsReply:
    """A 200 built for the requested features from these tags; size defaults to the image's own or 864x576."""

    tags: tuple[tuple[str, float], ...]
    text: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The named error from ``vision_contract.NAMED_ERRORS``."""

    name: str


Reply = CannedReply | TagsReply | ErrorReply


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted call: wait ``delay_ms``, then give ``reply`` with ``headers`` added.

    If ``hang``, never answer (``reply`` is then ``None``) until the emulator stops or the client gives up.
    """

    reply: Reply | None
    headers: tuple[tuple[str, str], ...] = ()
    delay_ms: int = 0
    hang: bool = False


Scripts = Mapping[str, tuple[Step, ...]]


def load_fixtures(path: Path) -> dict[str, tuple[Step, ...]]:
    """Read and check a fixtures file (UTF-8 JSON); raises ``FixtureError`` naming the first problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{path}: not valid JSON: {exc}") from exc
    return parse_fixtures(document)


def parse_fixtures(document: object) -> dict[str, tuple[Step, ...]]:
    """Check a decoded fixtures document and turn it into scripts; raises ``FixtureError``."""
    if not isinstance(document, dict):
        raise FixtureError("a fixtures document is a JSON object mapping image keys to scripts")
    scripts: dict[str, tuple[Step, ...]] = {}
    for key, script in document.items():
        if not (key == WILDCARD_KEY or _SHA256_KEY.match(key) or urlsplit(key).scheme in ("http", "https")):
            raise FixtureError(f"{_shown(key)}: a key is an http(s) URL, 'sha256:<64 lowercase hex>' or '*'")
        items = script if isinstance(script, list) else [script]
        if not items:
            raise FixtureError(f"{_shown(key)}: a script needs at least one step")
        scripts[key] = tuple(_parse_step(item, f"{_shown(key)}[{index}]") for index, item in enumerate(items))
    return scripts


def _shown(key: str) -> str:
    # Fixture keys may carry SAS tokens: error messages name them without their query string.
    parts = urlsplit(key)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "<redacted>", "")) if parts.query else key


def _parse_step(item: object, where: str) -> Step:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: a step is a JSON object")
    unknown = set(item) - _STEP_KEYS
    if unknown:
        raise FixtureError(f"{where}: unknown keys {sorted(unknown)}")
    kinds = [kind for kind in ("status", "tags", "error") if kind in item]
    hang = item.get("hang", False)
    if not isinstance(hang, bool):
        raise FixtureError(f"{where}: 'hang' is true or false")
    if len(kinds) > 1 or (not kinds and not hang):
        raise FixtureError(f"{where}: a step has exactly one of 'status', 'tags', 'error' (or only 'hang')")
    delay_ms = item.get("delay_ms", 0)
    if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
        raise FixtureError(f"{where}: 'delay_ms' is a non-negative integer")
    reply = _parse_reply(item, kinds[0], where) if kinds else None
    return Step(reply, _parse_headers(item.get("headers", {}), where), delay_ms, hang)


def _parse_reply(item: dict[str, object], kind: str, where: str) -> Reply:
    if kind == "status":
        status = item["status"]
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise FixtureError(f"{where}: 'status' is an HTTP status from 200 to 599")
        if "body" not in item and status != 200 and status < 400:
            raise FixtureError(f"{where}: a status below 400 other than 200 needs a 'body'")
        return CannedReply(status, item.get("body"))
    if kind == "error":
        name = item["error"]
        if name not in NAMED_ERRORS:
            raise FixtureError(f"{where}: unknown error {name!r}; known: {sorted(NAMED_ERRORS)}")
        return ErrorReply(str(name))
    return TagsReply(
        _parse_tags(item["tags"], where),
        _optional(item, "text", str, where),
        _optional(item, "width", int, where),
        _optional(item, "height", int, where),
    )


def _parse_tags(tags: object, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(tags, list):
        raise FixtureError(f"{where}: 'tags' is a list of [name, confidence] pairs")
    parsed: list[tuple[str, float]] = []
    for pair in tags:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise FixtureError(f"{where}: each tag is [name, confidence]")
        confidence = pair[1]
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not 0 <= confidence <= 1
        ):
            raise FixtureError(f"{where}: tag {pair[0]!r} needs a confidence in [0, 1]")
        parsed.append((pair[0], float(confidence)))
    return tuple(parsed)


def _optional(item: dict[str, object], name: str, kind: type[_T], where: str) -> _T | None:
    value = item.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise FixtureError(f"{where}: {name!r} must be a {kind.__name__}")
    return value


def _parse_headers(headers: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise FixtureError(f"{where}: 'headers' maps names to string values")
    return tuple((str(name), value) for name, value in headers.items())


def strip_query(url: str) -> str:
    """``url`` without its query string and fragment: the identity of an image across SAS tokens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def image_identity(image_key: str) -> str:
    """What stays the same for one image across requests: a URL without its query, or the bytes key."""
    return image_key if image_key.startswith("sha256:") else strip_query(image_key)


def bytes_key(image: bytes) -> str:
    """The fixture key of posted image bytes: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(image).hexdigest()


class ScriptBook:
    """The scripts in force and how far each image has got through its script; used from one event loop.

    Progress is counted per matched fixture key (so SAS variants of one image share a script), and for the
    ``*`` script per image identity (URL without query, or the bytes key).
    """

    def __init__(self, scripts: Scripts | None = None) -> None:
        self._scripts: dict[str, tuple[Step, ...]] = dict(scripts or {})
        self._calls: dict[str, int] = {}

    def replace(self, scripts: Scripts) -> None:
        """Use only ``scripts`` from now on; every image starts again at its first step."""
        self._scripts = dict(scripts)
        self._calls.clear()

    def merge(self, scripts: Scripts) -> None:
        """Add or overwrite the given keys; those keys (and ``*`` progress, if ``*`` is given) start again."""
        self._scripts.update(scripts)
        for key in scripts:
            self._calls.pop(key, None)
        if WILDCARD_KEY in scripts:
            self._calls = {k: v for k, v in self._calls.items() if not k.startswith(WILDCARD_KEY)}

    def next_step(self, image_key: str) -> Step | None:
        """The step for this call of the image (a URL or a bytes key), advancing its progress; ``None`` when
        no script matches and the default answer applies."""
        identity = image_identity(image_key)
        for candidate in (image_key, identity):
            if candidate in self._scripts:
                return self._advance(candidate, self._scripts[candidate])
        if WILDCARD_KEY in self._scripts:
            return self._advance(WILDCARD_KEY + identity, self._scripts[WILDCARD_KEY])
        return None

    def _advance(self, counter_key: str, script: Sequence[Step]) -> Step:
        calls = self._calls.get(counter_key, 0)
        self._calls[counter_key] = calls + 1
        return script[min(calls, len(script) - 1)]


#: the benign vocabulary of default answers: nothing a moderation policy is likely to block
DEFAULT_VOCABULARY = (
    "outdoor", "indoor", "person", "cat", "dog", "text", "building", "tree",
    "sky", "car", "food", "plant", "animal", "water", "furniture", "grass",
)  # fmt: skip


def default_tags(seed: bytes) -> tuple[tuple[str, float], ...]:
    """Two to five distinct tags from ``DEFAULT_VOCABULARY`` with confidences in [0.5, 0.99], highest first.

    A pure function of ``seed`` (the image bytes, or the URL without its query), so runs are reproducible.
    """
    digest = hashlib.sha256(seed).digest()
    count = 2 + digest[0] % 4
    names: list[str] = []
    for byte in digest[1:]:
        name = DEFAULT_VOCABULARY[byte % len(DEFAULT_VOCABULARY)]
        if name not in names:
            names.append(name)
        if len(names) == count:
            break
    confidences = (round(0.5 + 0.49 * digest[16 + i] / 255, 4) for i in range(len(names)))
    return tuple(sorted(zip(names, confidences, strict=False), key=lambda tag: -tag[1]))


class HashTagSource:
    """The fetch-free default ``TagSource``: tags are ``default_tags`` of the image bytes."""

    async def tags_for(self, image: bytes) -> list[tuple[str, float]]:
        """Deterministic tags for ``image``; never fails."""
        return list(default_tags(image))
