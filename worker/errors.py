"""The worker's exception hierarchy, and what each kind of failure makes the pipeline do.

::

    ModerationError
    ├── AnalyzerError                 raised by an Analyzer
    │   ├── TransientAnalyzerError    retry with backoff (429, 5xx, timeout, connection)
    │   │   └── AnalyzerThrottled     429: no calls until ``retry_after_s`` has passed
    │   ├── ImageAnalysisRejected     the image itself is unusable: route by policy (needs_review by default)
    │   └── FatalAnalyzerError        wrong key or endpoint: stop the worker, commit nothing past the failure
    ├── ConfigurationError            bad settings or policy: refuse to start
    └── KafkaConnectionFailed         no usable connection to the Kafka cluster (``reason`` says why)
        ├── KafkaUnavailable          no broker answered (refused, unknown host, timeout): retrying may help
        ├── KafkaAuthenticationFailed SASL refused the credentials or mechanism, or no OAuth token was issued
        ├── KafkaTlsFailed            the broker's certificate is not trusted or not for the host, or the
        │                             broker refused the client certificate
        └── KafkaProtocolMismatch     the listener speaks another security protocol than the client (TLS or
                                      plaintext, SASL or none)

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


# --- Kafka connection failures (worker.kafka.connection_failures classifies aiokafka's exceptions) ---


class KafkaConnectionFailed(ModerationError):
    """The worker cannot use a connection to the cluster; the message names the broker and the cause.

    ``reason`` is a bounded label for logs and metrics (e.g. ``refused``, ``sasl_credentials``,
    ``tls_untrusted``); ``broker`` is the ``host:port`` that failed. Messages never carry a password.
    """

    #: whether trying again later may succeed without changing any setting
    retryable = False

    def __init__(self, message: str, *, reason: str, broker: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.broker = broker


class KafkaUnavailable(KafkaConnectionFailed):
    """No broker answered: connection refused, unknown host, timeout, or the connection dropped."""

    retryable = True


class KafkaAuthenticationFailed(KafkaConnectionFailed):
    """SASL authentication failed: wrong username or password, a mechanism the broker lacks, no token."""


class KafkaTlsFailed(KafkaConnectionFailed):
    """TLS failed: an untrusted certificate, one for another host, or a refused client certificate."""


class KafkaProtocolMismatch(KafkaConnectionFailed):
    """The listener expects another ``security_protocol``: TLS against plaintext, SASL against none."""
