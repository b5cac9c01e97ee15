"""The vision emulator: an aiohttp server that speaks Image Analysis 4.0 (``vision_contract``) from fixtures.

Tests and the demo point the real SDK at it over HTTP. Admin endpoints under ``/_emulator/`` read counters and
change fixtures at run time; see docs/emulator.md. ``moderation-worker dev emulator`` runs it standalone
(``worker.dev.emulator.standalone``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict

from worker.dev.emulator.contract import (
    MAX_IMAGE_BYTES,
    NAMED_ERRORS,
    ROUTE_SUFFIX,
    AnalyzeOptions,
    RequestRejected,
    Scene,
    ServiceError,
    build_result,
    check_byte_count,
    check_image_size,
    error_for_status,
    invalid_json_body,
    parse_query,
    throttled,
    unsupported_content_type,
)
from worker.dev.emulator.fixtures import (
    CannedReply,
    ErrorReply,
    FixtureError,
    Scripts,
    Step,
    TagsReply,
    bytes_key,
    default_tags,
    parse_fixtures,
    strip_query,
)
from worker.dev.emulator.image_format import probe
from worker.dev.emulator.state import (
    EMULATOR_STATE,
    EmulatorConfig,
    EmulatorState,
    EmulatorStats,
    ImageFetcher,
    ImageNotAccessibleError,
    TagSource,
)
from worker.errors import ImageAnalysisRejected

__all__ = [
    "EMULATOR_STATE",
    "Emulator",
    "EmulatorConfig",
    "EmulatorState",
    "EmulatorStats",
    "ImageFetcher",
    "ImageNotAccessibleError",
    "TagSource",
    "build_app",
]


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int
    body: object = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay_ms: int = 0
    hang: bool = False

    @classmethod
    def of_error(cls, error: ServiceError) -> _Outcome:
        return cls(error.status, error.body(), error.reason, error.headers)


@dataclass(frozen=True, slots=True)
class _Image:
    key: str  # the URL as sent, or sha256:<hex> of the bytes
    data: bytes | None = None
    size: tuple[int, int] | None = None


_SLASHES = re.compile(r"/{2,}")


async def _analyze(request: web.Request) -> web.StreamResponse:
    state = request.app[EMULATOR_STATE]
    if state.config.latency_ms:
        await asyncio.sleep(state.config.latency_ms / 1000)
    try:
        outcome = await _decide(state, request)
    except RequestRejected as rejected:
        outcome = _Outcome.of_error(rejected.error)
    if outcome.hang:
        state.hung_total += 1
        await state.closing.wait()
        raise web.HTTPServiceUnavailable  # only reached while the emulator shuts down
    if outcome.delay_ms:
        await asyncio.sleep(outcome.delay_ms / 1000)
    state.by_status[outcome.status] += 1
    return _respond(outcome)


async def _decide(state: EmulatorState, request: web.Request) -> _Outcome:
    """The answer to one analyze-route call, checked in the service's order; raises RequestRejected."""
    if request.method != hdrs.METH_POST or not _on_route(request.path, state.config.route_prefix):
        raise RequestRejected(NAMED_ERRORS["NotFound"])
    if not _authorized(request.headers, state.config.key):
        raise RequestRejected(NAMED_ERRORS["Unauthorized"])
    retry_after_s = state.limiter.try_admit() if state.limiter else None
    if retry_after_s is not None:
        state.rate_limited_total += 1
        raise RequestRejected(throttled(retry_after_s))
    options = parse_query(request.query)
    image = await _read_image(request)
    step = state.book.next_step(image.key)
    if step is None:
        return _Outcome(
            200, build_result(options, await _default_scene(state, image), state.config.model_version)
        )
    state.scripted_total += 1
    return await _scripted(state, options, image, step)


def _on_route(path: str, prefix: str | None) -> bool:
    """Any path ending in the route (docs/azure-contract.md §6.1), or exactly ``prefix + route`` when a
    prefix is set; repeated slashes count as one: a portal endpoint ends in '/' and the SDK appends '/...'."""
    path = _SLASHES.sub("/", path)
    return path.endswith(ROUTE_SUFFIX) if prefix is None else path == prefix.rstrip("/") + ROUTE_SUFFIX


def _authorized(headers: Mapping[str, str], key: str) -> bool:
    if headers.get("Ocp-Apim-Subscription-Key") == key:
        return True
    # Entra ID tokens cannot be verified offline: any non-empty bearer token is accepted.
    scheme, _, token = headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def _read_image(request: web.Request) -> _Image:
    media_type = request.content_type if hdrs.CONTENT_TYPE in request.headers else ""
    if media_type not in ("application/json", "application/octet-stream"):
        raise RequestRejected(unsupported_content_type(media_type))
    if (request.content_length or 0) > MAX_IMAGE_BYTES:
        raise RequestRejected(NAMED_ERRORS["InvalidImageBytes"])
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body over client_max_size
        raise RequestRejected(NAMED_ERRORS["InvalidImageBytes"]) from None
    if media_type == "application/octet-stream":
        return _checked_image(bytes_key(body), body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRejected(invalid_json_body()) from None
    url = document.get("url") if isinstance(document, dict) else None
    if not isinstance(url, str):
        raise RequestRejected(invalid_json_body())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RequestRejected(NAMED_ERRORS["NotAccessible"])
    return _Image(url)


def _checked_image(key: str, data: bytes) -> _Image:
    """Validate image bytes like the service: byte count, then format, then dimensions."""
    check_byte_count(len(data))
    info = probe(data)
    if info is None:
        raise RequestRejected(NAMED_ERRORS["InvalidImageFormat"])
    check_image_size(info.width, info.height)
    return _Image(key, data, (info.width, info.height))


async def _default_scene(state: EmulatorState, image: _Image) -> Scene:
    config = state.config
    if image.data is None and config.fetcher is not None:
        try:
            fetched = await config.fetcher.fetch(image.key)
        except ImageNotAccessibleError:
            raise RequestRejected(NAMED_ERRORS["NotAccessible"]) from None
        image = _checked_image(image.key, fetched)
    if image.data is None:  # fixture mode: never fetch; the tags follow from the URL without its SAS token
        tags = default_tags(strip_query(image.key).encode())
        return Scene(tags, *config.default_size)
    try:
        tags = tuple(await config.tag_source.tags_for(image.data))
    except ImageAnalysisRejected as exc:  # a model that cannot read the image answers like the service
        error = NAMED_ERRORS.get(exc.code)
        raise RequestRejected(error if error else NAMED_ERRORS["InvalidImageFormat"]) from None
    return Scene(tags, *(image.size or config.default_size))


async def _scripted(state: EmulatorState, options: AnalyzeOptions, image: _Image, step: Step) -> _Outcome:
    reply = step.reply
    if step.hang or reply is None:
        return _Outcome(0, hang=True)
    if isinstance(reply, TagsReply):
        width, height = image.size or state.config.default_size
        scene = Scene(reply.tags, reply.width or width, reply.height or height, reply.text)
        outcome = _Outcome(200, build_result(options, scene, state.config.model_version))
    elif isinstance(reply, ErrorReply):
        outcome = _Outcome.of_error(NAMED_ERRORS[reply.name])
    elif isinstance(reply, CannedReply) and reply.body is not None:
        outcome = _Outcome(reply.status, reply.body)
    elif reply.status == 200:
        scene = await _default_scene(state, image)
        outcome = _Outcome(200, build_result(options, scene, state.config.model_version))
    else:
        outcome = _Outcome.of_error(error_for_status(reply.status))
    return _Outcome(
        outcome.status, outcome.body, outcome.reason, outcome.headers + step.headers, step.delay_ms
    )


_SERVICE_HEADERS = {
    "x-ms-region": "emulator",
    "api-supported-versions": "2023-02-01-preview,2023-04-01-preview,2023-10-01",
    "X-Content-Type-Options": "nosniff",
}


def _respond(outcome: _Outcome) -> web.Response:
    """Headers as the real service sends them; the gateway 401 has only apim-request-id, as recorded."""
    request_id = str(uuid.uuid4())
    headers: CIMultiDict[str] = CIMultiDict({"apim-request-id": request_id})
    if outcome.status == 401:
        headers[hdrs.CONTENT_TYPE] = "application/json"
    else:
        headers.update(_SERVICE_HEADERS)
        headers[hdrs.CONTENT_TYPE] = "application/json; charset=utf-8"
        headers["request-id"] = request_id
        if outcome.status in (200, 400):
            headers["CSP-Billing-Usage"] = "CognitiveServices.ComputerVision.Transaction=1"
    error = outcome.body.get("error") if isinstance(outcome.body, dict) else None
    if outcome.status >= 400 and outcome.status != 401 and isinstance(error, dict) and "code" in error:
        headers["x-ms-error-code"] = str(error["code"])
    for name, value in outcome.headers:  # later ones (a step's) replace same-named ones, whatever the case
        headers[name] = value
    return web.Response(
        status=outcome.status, reason=outcome.reason, body=orjson.dumps(outcome.body), headers=headers
    )


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[EMULATOR_STATE].stats().as_json())


async def _fixtures(request: web.Request) -> web.Response:
    state = request.app[EMULATOR_STATE]
    mode = request.query.get("mode", "replace")
    if mode not in ("replace", "merge"):
        return _admin_error("the mode is 'replace' or 'merge'")
    try:
        scripts = parse_fixtures(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, FixtureError) as exc:
        return _admin_error(str(exc))
    if mode == "merge":
        state.book.merge(scripts)
    else:
        state.book.replace(scripts)
    return web.json_response({"mode": mode, "images": len(scripts)})


def _admin_error(message: str) -> web.Response:
    return web.json_response({"error": {"code": "InvalidFixtures", "message": message}}, status=400)


async def _reset(request: web.Request) -> web.Response:
    request.app[EMULATOR_STATE].reset()
    return web.json_response({"reset": True})


def build_app(config: EmulatorConfig) -> web.Application:
    """The emulator's aiohttp application; its state is ``app[EMULATOR_STATE]``."""
    app = web.Application(client_max_size=MAX_IMAGE_BYTES + 1)
    app[EMULATOR_STATE] = EmulatorState(config)
    app.router.add_get("/_emulator/stats", _stats)
    app.router.add_post("/_emulator/fixtures", _fixtures)
    app.router.add_post("/_emulator/reset", _reset)
    app.router.add_route("*", "/{tail:.*}", _analyze)
    return app


class Emulator:
    """Runs ``build_app(config)`` on ``host:port`` (0 picks a free port) for the life of an ``async with``."""

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = build_app(config)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> EmulatorState:
        """Scripts, limiter and counters of the running app."""
        return self._app[EMULATOR_STATE]

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT`` to give the SDK client; only while running."""
        if self._runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self._host}:{self._runner.addresses[0][1]}"

    @property
    def stats(self) -> EmulatorStats:
        """A snapshot of the counters (same as ``GET /_emulator/stats``)."""
        return self.state.stats()

    def load_fixtures(self, scripts: Scripts, *, merge: bool = False) -> None:
        """Replace (or merge into) the scripts in force, like ``POST /_emulator/fixtures``."""
        (self.state.book.merge if merge else self.state.book.replace)(scripts)

    def reset(self) -> None:
        """Back to the configured fixtures and zero counters, like ``POST /_emulator/reset``."""
        self.state.reset()

    async def __aenter__(self) -> Self:
        # handler_cancellation: a client that gives up on a hung call frees its handler at once.
        runner = web.AppRunner(self._app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.state.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
