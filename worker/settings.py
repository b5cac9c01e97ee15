"""One frozen Settings object, read once from ``MODERATION_*`` environment variables.

Every variable, its default and its meaning is listed in ``docs/configuration.md``; secrets are ``Secret``
values that never print.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from worker.errors import ConfigurationError

PREFIX = "MODERATION_"
ANALYZER_KINDS = ("azure", "model")
AUTH_KINDS = ("key", "entra")
VISUAL_FEATURES = ("tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people")

T = TypeVar("T")


class Secret:
    """A string that shows as ``'***'`` in reprs, logs and tracebacks; ``reveal()`` hands it to the SDK."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is handed to a client."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's whole configuration; build it with ``Settings.from_env(os.environ)``."""

    bootstrap_servers: str
    group_id: str
    input_topic: str
    approved_topic: str
    review_topic: str
    rejected_topic: str
    dead_letter_topic: str
    control_topic: str
    analyzer: str
    azure_endpoint: str
    azure_key: Secret
    azure_auth: str
    visual_features: tuple[str, ...]
    policy_file: Path | None
    quota_calls_per_s: float
    max_in_flight: int
    max_in_flight_per_partition: int
    analyzer_timeout_s: float
    analyzer_connect_timeout_s: float
    retry_budget_s: float
    max_message_bytes: int
    drain_timeout_s: float
    metrics_host: str
    metrics_port: int
    log_level: str
    drift_state_file: Path | None
    drift_window_s: float
    drift_min_samples: int
    drift_reference_file: Path | None
    topic_partitions: int
    topic_replication: int
    result_retention_ms: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, need_analyzer: bool = True) -> Settings:
        """Parse every ``MODERATION_*`` variable; raise ConfigurationError naming *all* bad variables at once.

        ``need_analyzer=False`` is for commands that never call the analyzer (``topics create``).
        """
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in fields(cls):
            suffix, default = ENVIRONMENT[spec.name]
            name = PREFIX + suffix
            raw = environ.get(name, default).strip()
            try:
                values[spec.name] = _PARSERS[spec.name](raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise ConfigurationError("invalid configuration: " + "; ".join(problems))
        settings = cls(**values)
        if need_analyzer:
            settings.check_complete()
        return settings

    @classmethod
    def defaults(cls, **overrides: Any) -> Settings:
        """Settings with every default applied, then ``overrides`` (for tests and embedded runs)."""
        base = cls.from_env({}, need_analyzer=False)
        values = {spec.name: getattr(base, spec.name) for spec in fields(cls)} | overrides
        return cls(**values)

    def check_complete(self) -> None:
        """Cross-field checks: what the chosen analyzer needs must be present."""
        if self.analyzer == "azure":
            if not self.azure_endpoint:
                raise ConfigurationError(f"{PREFIX}AZURE_ENDPOINT is required when {PREFIX}ANALYZER=azure")
            if self.azure_auth == "key" and not self.azure_key.reveal():
                raise ConfigurationError(f"{PREFIX}AZURE_KEY is required when {PREFIX}AZURE_AUTH=key")

    @property
    def output_topics(self) -> tuple[str, str, str, str]:
        """approved, needs-review, rejected and dead-letter topics, in that order."""
        return (self.approved_topic, self.review_topic, self.rejected_topic, self.dead_letter_topic)


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _optional_text(raw: str) -> str:
    return raw


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def _number(kind: Callable[[str], T], minimum: float) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"must be a {kind.__name__}, got {raw!r}") from None
        if value < minimum:  # type: ignore[operator]
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _features(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [name for name in names if name not in VISUAL_FEATURES]
    if not names or unknown:
        raise ValueError(f"must be a CSV of {', '.join(VISUAL_FEATURES)}")
    return names


def _path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _url(raw: str) -> str:
    if raw and not raw.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (or http:// for a local emulator)")
    return raw


#: field -> (environment variable without the prefix, default as text); docs/configuration.md lists them all
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "bootstrap_servers": ("BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    "group_id": ("GROUP_ID", "moderation-worker"),
    "input_topic": ("INPUT_TOPIC", "images.submitted"),
    "approved_topic": ("APPROVED_TOPIC", "images.approved"),
    "review_topic": ("REVIEW_TOPIC", "images.needs-review"),
    "rejected_topic": ("REJECTED_TOPIC", "images.rejected"),
    "dead_letter_topic": ("DEAD_LETTER_TOPIC", "images.dead-letter"),
    "control_topic": ("CONTROL_TOPIC", "moderation.control"),
    "analyzer": ("ANALYZER", "azure"),
    "azure_endpoint": ("AZURE_ENDPOINT", ""),
    "azure_key": ("AZURE_KEY", ""),
    "azure_auth": ("AZURE_AUTH", "key"),
    "visual_features": ("VISUAL_FEATURES", "tags"),
    "policy_file": ("POLICY_FILE", ""),
    "quota_calls_per_s": ("QUOTA_CALLS_PER_S", "20"),
    "max_in_flight": ("MAX_IN_FLIGHT", "64"),
    "max_in_flight_per_partition": ("MAX_IN_FLIGHT_PER_PARTITION", "32"),
    "analyzer_timeout_s": ("ANALYZER_TIMEOUT_S", "10"),
    "analyzer_connect_timeout_s": ("ANALYZER_CONNECT_TIMEOUT_S", "3"),
    "retry_budget_s": ("RETRY_BUDGET_S", "60"),
    "max_message_bytes": ("MAX_MESSAGE_BYTES", "65536"),
    "drain_timeout_s": ("DRAIN_TIMEOUT_S", "20"),
    "metrics_host": ("METRICS_HOST", "0.0.0.0"),  # noqa: S104 - scraped from outside the container
    "metrics_port": ("METRICS_PORT", "9400"),
    "log_level": ("LOG_LEVEL", "INFO"),
    "drift_state_file": ("DRIFT_STATE_FILE", ""),
    "drift_window_s": ("DRIFT_WINDOW_S", "600"),
    "drift_min_samples": ("DRIFT_MIN_SAMPLES", "200"),
    "drift_reference_file": ("DRIFT_REFERENCE_FILE", ""),
    "topic_partitions": ("TOPIC_PARTITIONS", "6"),
    "topic_replication": ("TOPIC_REPLICATION", "1"),
    "result_retention_ms": ("RESULT_RETENTION_MS", str(7 * 24 * 3600 * 1000)),
}

_PARSERS: dict[str, Callable[[str], Any]] = {
    "bootstrap_servers": _text,
    "group_id": _text,
    "input_topic": _text,
    "approved_topic": _text,
    "review_topic": _text,
    "rejected_topic": _text,
    "dead_letter_topic": _text,
    "control_topic": _text,
    "analyzer": _choice(ANALYZER_KINDS),
    "azure_endpoint": _url,
    "azure_key": Secret,
    "azure_auth": _choice(AUTH_KINDS),
    "visual_features": _features,
    "policy_file": _path,
    "quota_calls_per_s": _number(float, 0.001),
    "max_in_flight": _number(int, 1),
    "max_in_flight_per_partition": _number(int, 1),
    "analyzer_timeout_s": _number(float, 0.1),
    "analyzer_connect_timeout_s": _number(float, 0.1),
    "retry_budget_s": _number(float, 0.0),
    "max_message_bytes": _number(int, 64),
    "drain_timeout_s": _number(float, 0.0),
    "metrics_host": _optional_text,
    "metrics_port": _number(int, 0),
    "log_level": _choice(("DEBUG", "INFO", "WARNING", "ERROR")),
    "drift_state_file": _path,
    "drift_window_s": _number(float, 1.0),
    "drift_min_samples": _number(int, 1),
    "drift_reference_file": _path,
    "topic_partitions": _number(int, 1),
    "topic_replication": _number(int, 1),
    "result_retention_ms": _number(int, -1),
}
