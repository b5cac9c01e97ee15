"""The worker's exception hierarchy, and what each kind of failure makes the pipeline do.

::

    ModerationError
    ├── AnalyzerError                 raised by an Analyzer
    │   ├── TransientAnalyzerError    retry with backoff (429, 5xx, timeout, connection)
    │   │   └── AnalyzerThrottled     429: no calls until ``retry_after_s`` has passed
    │   ├── ImageAnalysisRejected     the image itself is unusable: route by policy (needs_review by default)
    │   └── FatalAnalyzerError        wrong key or endpoint: stop the worker, commit nothing past the failure
    └── ConfigurationError            bad settings or policy: refuse to start

Foreign errors (azure-core, aiohttp) are translated at the boundary with ``raise ... from exc``; messages
never carry secrets or an image URL's query string.
"""

from __future__ import annotations

from enum import StrEnum


class AnalyzerOutcome(StrEnum):
    """How one analyzer call ended: the closed set of ``moderation_analyzer_calls_total`` ``outcome`` labels.

    ``server``, ``timeout``, ``connection`` and ``fatal`` spend the analyzer error budget (docs/alerts.md);
    ``throttled`` is the quota working and ``image`` is the image's fault.
    """

    OK = "ok"
    THROTTLED = "throttled"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    IMAGE = "image"
    FATAL = "fatal"


class ModerationError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(ModerationError):
    """A setting or the policy file is missing or invalid; the worker refuses to start."""


class AnalyzerError(ModerationError):
    """An analyzer call failed; the subclass says what to do about it."""

    #: how the call ended, for metrics
    outcome: AnalyzerOutcome = AnalyzerOutcome.SERVER


class TransientAnalyzerError(AnalyzerError):
    """A failure worth retrying later: the service is busy, slow, unreachable or erroring."""

    def __init__(
        self,
        message: str,
        *,
        outcome: AnalyzerOutcome = AnalyzerOutcome.SERVER,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry_after_s = retry_after_s


class AnalyzerThrottled(TransientAnalyzerError):
    """The service answered 429: the whole replica holds its calls for ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(message, outcome=AnalyzerOutcome.THROTTLED, retry_after_s=retry_after_s)


class ImageAnalysisRejected(AnalyzerError):
    """The service refused this image (format, size, unreachable URL); retrying will not help.

    ``code`` is the most specific service code known, e.g. ``InvalidImageFormat``, ``InvalidImageSize``,
    ``NotAccessible`` or ``InvalidRequest``.
    """

    outcome = AnalyzerOutcome.IMAGE

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class FatalAnalyzerError(AnalyzerError):
    """The analyzer cannot work at all (wrong key, wrong endpoint, bad request shape): stop loudly."""

    outcome = AnalyzerOutcome.FATAL
