"""Structured logs: one JSON object per line through the stdlib ``logging`` module, URLs redacted.

Call sites log an event name and context as ``extra``:
``log.warning("analyzer_throttled", extra={"image_id": i, "retry_after_s": 2.0})``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Final

import orjson

from worker.observability.log_storm import StormFilter
from worker.redact import redact_text

# Attributes every LogRecord carries; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(
    {*vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)), "message", "asctime", "taskName"}
)
_RESERVED_KEYS: Final = frozenset({"ts", "level", "event", "logger", "exc_type", "exc_message", "traceback"})
_MAX_DEPTH: Final = 8


def _clean(value: object, depth: int = 0) -> object:
    """A JSON-ready copy of ``value`` with every string redacted; unknown types become redacted ``str()``."""
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH and isinstance(value, Mapping):
        return {redact_text(str(key)): _clean(item, depth + 1) for key, item in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, depth + 1) for item in value]
    return redact_text(str(value))


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``ts``, ``level``, ``event``, ``logger``, then the extra fields.

    ``ts`` is UTC ISO 8601 with milliseconds; ``level`` is lower case; ``event`` is the rendered message.
    An extra field named like a fixed key is kept with a trailing underscore. Exceptions add ``exc_type``
    (qualified class name), ``exc_message`` and ``traceback``. Every string is passed through
    ``redact_text``, so URLs never carry their query string into the log.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": redact_text(record.getMessage()),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                line[f"{key}_" if key in _RESERVED_KEYS else key] = _clean(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["exc_type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            line["exc_message"] = redact_text(str(exc))
            line["traceback"] = redact_text("".join(traceback.format_exception(exc)))
        if record.stack_info:
            line["stack"] = redact_text(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class _JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(level: str, stream: IO[str] | None = None) -> None:
    """Send all stdlib logging to ``stream`` (default: ``sys.stderr`` at call time) as JSON lines.

    ``level`` is a stdlib level name in any case (``"debug"``, ``"INFO"``...). aiokafka's lines are condensed
    to one per kind and second, with a ``suppressed`` count (``worker.observability.log_storm``).
    Idempotent: calling again replaces the handler this function installed and leaves others alone.
    Raises ``ValueError`` for an unknown level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonLineHandler)]:
        root.removeHandler(handler)
    handler = _JsonLineHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonLineFormatter())
    # While the cluster is down aiokafka logs each failed attempt of each client (~70 lines/s per replica).
    handler.addFilter(StormFilter(("aiokafka",)))
    root.addHandler(handler)
    root.setLevel(numeric)
    # azure-core logs every request and response at INFO: noise at our volume, and it names the endpoint.
    logging.getLogger("azure").setLevel(max(numeric, logging.WARNING))
