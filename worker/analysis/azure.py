"""The production ``Analyzer``: Azure AI Vision Image Analysis 4.0 through the official async SDK.

``AzureAnalyzer`` drives the official async SDK with the SDK's own retries off (the worker owns retry
timing, see ``worker.analysis.guarded``), explicit connect/read timeouts and an overall deadline per call, and
translates every failure into ``worker.errors`` at this boundary.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from azure.ai.vision.imageanalysis.aio import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult, VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport

from worker.analysis.azure_errors import classify_http_error
from worker.domain import Analysis, Tag
from worker.errors import AnalyzerError, AnalyzerOutcome, TransientAnalyzerError
from worker.redact import redact_text

_NUMBERS = (int, float)


def analysis_from_result(result: Mapping[str, Any]) -> Analysis:
    """Our view of an SDK ``ImageAnalysisResult`` (or its wire JSON): tags, model version, size.

    The SDK validates nothing (a missing key reads as None, numbers are not coerced), so we cannot trust it:
    entries without a name or a numeric confidence are dropped, confidences are clamped to [0, 1].
    """
    tags_result = result.get("tagsResult") or {}
    raw_tags = tags_result.get("values") or [] if isinstance(tags_result, Mapping) else []
    tags = tuple(tag for tag in map(_tag, raw_tags) if tag is not None)
    metadata = result.get("metadata") or {}
    return Analysis(
        model_version=str(result.get("modelVersion") or "unknown"),
        tags=tags,
        width=_int_or_none(metadata.get("width")) if isinstance(metadata, Mapping) else None,
        height=_int_or_none(metadata.get("height")) if isinstance(metadata, Mapping) else None,
    )


def _tag(entry: Any) -> Tag | None:
    try:
        name, confidence = entry["name"], entry["confidence"]
    except (KeyError, TypeError, IndexError):  # not a mapping, or a key missing
        return None
    if not isinstance(name, str) or not name or not isinstance(confidence, _NUMBERS):
        return None
    if isinstance(confidence, bool):
        return None
    confidence = float(confidence)
    return Tag(name=name, confidence=0.0 if confidence < 0.0 else 1.0 if confidence > 1.0 else confidence)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def proxy_for(endpoint: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL the standard variables give for ``endpoint``, or ``None`` for a direct connection.

    ``https_proxy``/``http_proxy`` (lower case first, then upper case, as curl and urllib read them) by the
    endpoint's scheme; ``no_proxy``/``NO_PROXY`` host patterns (``*``, ``host``, ``.suffix``) bypass it.
    """
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    proxy = environ.get(f"{scheme}_proxy") or environ.get(f"{scheme.upper()}_PROXY")
    if not proxy:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    host = (parts.hostname or "").rstrip(".")
    host_port = f"{host}:{parts.port}" if parts.port else host
    for entry in no_proxy.lower().split(","):
        pattern = entry.strip().lstrip(".").rstrip(".")
        if pattern == "*" or pattern in (host, host_port) or host.endswith(f".{pattern}"):
            return None
    return proxy


def build_client(
    endpoint: str,
    credential: AzureKeyCredential | AsyncTokenCredential,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    environ: Mapping[str, str],
) -> ImageAnalysisClient:
    """The SDK client as the worker runs it: no SDK retries, explicit timeouts, the proxy resolved once, and
    no connection limit of its own. Call it with an event loop running (aiohttp binds its session to it).

    The SDK's default (``use_env_settings``) lets aiohttp look up the proxy variables and ``~/.netrc`` in a
    thread pool on every request: that cost a third of the worker's CPU per call, and a ``.netrc`` entry for
    the endpoint's host would add a second credential to every call. The proxy is read from ``environ`` here,
    once; ``.netrc`` is never read.

    The SDK's default aiohttp session allows 100 connections. The pipeline already bounds the calls in
    flight (``MODERATION_MAX_IN_FLIGHT``, one call per record at a time); a lower bound here made calls
    beyond 100 queue inside aiohttp, where they count as analyzer latency: at 600 ms per call and 128 in
    flight the worker made 100 / 0.6 = 165 calls/s instead of 200 (docs/benchmarks.md, latency_hiding).
    """
    proxy = proxy_for(endpoint, environ)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),  # 0: no limit; the pipeline's max_in_flight bounds calls
        # As the SDK's own session: no cookies, bodies decompressed by the SDK; no proxy from the environment.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
    )
    transport = AioHttpTransport(
        session=session,
        session_owner=True,  # the client's close() closes the session
        connection_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return ImageAnalysisClient(
        endpoint,
        credential,
        transport=transport,
        retry_total=0,  # the worker retries with its own backoff, budget and quota limiter
        use_env_settings=False,
        proxies={urlsplit(endpoint).scheme.lower(): proxy} if proxy else None,
    )


class AzureAnalyzer:
    """Image Analysis 4.0 through ``azure.ai.vision.imageanalysis.aio.ImageAnalysisClient``."""

    def __init__(
        self,
        endpoint: str,
        credential: AzureKeyCredential | AsyncTokenCredential,
        *,
        features: Sequence[str] = ("tags",),
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        client: ImageAnalysisClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ`` holds the proxy variables (see ``build_client``); ``None``: a direct connection."""
        self._features = [VisualFeatures(name) for name in features]
        # Overall deadline: connect + read, so a dribbling response cannot hold a slot forever.
        self._deadline_s = connect_timeout_s + read_timeout_s
        self._client = client or build_client(
            endpoint,
            credential,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            environ=environ or {},
        )

    async def analyze(self, image_url: str) -> Analysis:
        """One SDK call (``analyze_from_url``) under the deadline; failures come out as ``worker.errors``."""
        return await self._call(self._client.analyze_from_url(image_url, self._features))

    async def analyze_data(self, image_data: bytes) -> Analysis:
        """The same call with the image's bytes in the body (the SDK's ``analyze``), for images the worker
        fetched itself (``MODERATION_IMAGE_FETCH=worker``): Azure never sees the image's URL."""
        return await self._call(self._client.analyze(image_data, self._features))

    async def _call(self, call: Awaitable[ImageAnalysisResult]) -> Analysis:
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await call
        except AnalyzerError:
            raise
        except TimeoutError as exc:
            raise TransientAnalyzerError(
                "analyzer call exceeded its deadline", outcome=AnalyzerOutcome.TIMEOUT
            ) from exc
        except HttpResponseError as exc:
            raise _translate_http_error(exc) from exc
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
            raise TransientAnalyzerError("analyzer call timed out", outcome=AnalyzerOutcome.TIMEOUT) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientAnalyzerError(
                f"cannot reach the analyzer: {redact_text(str(exc))[:200]}",
                outcome=AnalyzerOutcome.CONNECTION,
            ) from exc
        except json.JSONDecodeError as exc:  # the SDK raises it bare for a 200 with an empty body
            raise TransientAnalyzerError(
                "the analyzer answered an empty body", outcome=AnalyzerOutcome.SERVER
            ) from exc
        return analysis_from_result(result)

    async def aclose(self) -> None:
        """Close the SDK client and its aiohttp session."""
        await self._client.close()


def _translate_http_error(exc: HttpResponseError) -> AnalyzerError:
    error = exc.error
    inner = getattr(error, "innererror", None) or {}
    headers = getattr(exc.response, "headers", None) or {}
    retry_after = headers.get("Retry-After")
    return classify_http_error(
        exc.status_code,
        code=getattr(error, "code", None),
        inner_code=inner.get("code") if isinstance(inner, Mapping) else None,
        message=getattr(error, "message", None) or exc.reason or type(exc).__name__,
        retry_after=retry_after,
    )
