"""Translate Image Analysis 4.0 failures into the worker's hierarchy (``worker.errors``).

Pure: takes what the SDK exposes (status, error codes, message, Retry-After header) and returns the
exception to raise. The mapping follows the wire contract (``docs/azure-contract.md`` §3): in 4.0 a bad
request's outer code is ``InvalidRequest`` and the specific reason is ``innererror.code``.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable

from worker.errors import (
    AnalyzerError,
    AnalyzerOutcome,
    AnalyzerThrottled,
    FatalAnalyzerError,
    ImageAnalysisRejected,
    TransientAnalyzerError,
)
from worker.redact import redact_text

#: inner codes that say the image itself is unusable: route it, don't retry
IMAGE_CODES = frozenset({"InvalidImageFormat", "InvalidImageSize", "InvalidImageUrl"})
#: inner codes that say our request is wrong (features, language, ratios): no image will ever succeed
CONFIGURATION_CODES = frozenset({"NotSupportedVisualFeature", "NotSupportedLanguage", "BadArgument"})
#: the longest Retry-After we honour as "throttled"; F0 answers days-long waits with 403 instead
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def classify_http_error(
    status: int | None,
    *,
    code: str | None,
    inner_code: str | None,
    message: str,
    retry_after: str | None,
) -> AnalyzerError:
    """The worker exception for one non-200 answer; ``status`` None means the body could not be decoded."""
    text = redact_text(message)[:300]
    if status is None:
        return TransientAnalyzerError(f"undecodable service answer: {text}", outcome=AnalyzerOutcome.SERVER)
    if status == 429:
        return AnalyzerThrottled(
            f"throttled by the service (429): {text}", retry_after_s=parse_retry_after(retry_after)
        )
    if status in (401, 403):
        return FatalAnalyzerError(
            f"access denied ({status}): check the key and endpoint of the resource: {text}"
        )
    if status == 404:
        return FatalAnalyzerError(f"not found (404): check the endpoint URL: {text}")
    if status == 400:
        return _classify_bad_request(code, inner_code, text)
    if status == 413:
        return ImageAnalysisRejected(f"image too large (413): {text}", code="InvalidImageSize")
    if status == 408 or status >= 500:
        outcome = AnalyzerOutcome.TIMEOUT if status in (408, 504) else AnalyzerOutcome.SERVER
        return TransientAnalyzerError(
            f"service error ({status}): {text}", outcome=outcome, retry_after_s=parse_retry_after(retry_after)
        )
    return FatalAnalyzerError(f"unexpected answer ({status}): {text}")


def _classify_bad_request(code: str | None, inner_code: str | None, text: str) -> AnalyzerError:
    if inner_code in CONFIGURATION_CODES:
        return FatalAnalyzerError(f"the request is misconfigured ({inner_code}): {text}")
    if inner_code in IMAGE_CODES:
        return ImageAnalysisRejected(f"image rejected by the service ({inner_code}): {text}", code=inner_code)
    lowered = text.lower()
    if "not accessible" in lowered:
        return ImageAnalysisRejected(f"image URL not accessible: {text}", code="NotAccessible")
    if "image size" in lowered or "larger than" in lowered:
        return ImageAnalysisRejected(f"image size not allowed: {text}", code="InvalidImageSize")
    if "not supported" in lowered or "features" in lowered:
        return FatalAnalyzerError(f"the request is misconfigured ({code}): {text}")
    return ImageAnalysisRejected(
        f"image rejected by the service ({code}): {text}", code=inner_code or code or "InvalidRequest"
    )
