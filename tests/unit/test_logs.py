"""Specification of the JSON-lines log format: fixed keys, extra fields, exceptions, redaction."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import PurePosixPath

import orjson
import pytest

from worker.observability.logs import configure_logging

SAS_URL = "https://acct.blob.core.windows.net/images/cat.jpg?sv=2024-01-01&sig=TOPSECRET"
REDACTED_URL = "https://acct.blob.core.windows.net/images/cat.jpg?<redacted>"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure logging into a buffer and restore the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging("info", buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_each_event_is_one_json_line_with_fixed_keys_and_extra_fields(stream: io.StringIO) -> None:
    """ts, level, event and logger come first; extra= fields follow with their JSON types kept."""
    logging.getLogger("worker.kafka.loop").info(
        "result_routed", extra={"image_id": "img-1", "topic": "images.approved", "partition": 3, "offset": 41}
    )

    [line] = lines(stream)
    assert list(line)[:4] == ["ts", "level", "event", "logger"]
    assert {key: line[key] for key in list(line)[1:]} == {
        "level": "info",
        "event": "result_routed",
        "logger": "worker.kafka.loop",
        "image_id": "img-1",
        "topic": "images.approved",
        "partition": 3,
        "offset": 41,
    }
    assert isinstance(line["ts"], str)
    assert line["ts"].endswith("+00:00")


def test_urls_are_redacted_in_the_event_extra_fields_and_nested_values(stream: io.StringIO) -> None:
    """A SAS token never reaches the log, wherever the URL appears."""
    logging.getLogger("worker").warning(
        "fetch failed for %s",
        SAS_URL,
        extra={"url": SAS_URL, "context": {"urls": [SAS_URL], "depth": 1}},
    )

    [line] = lines(stream)
    assert "TOPSECRET" not in stream.getvalue()
    assert line["event"] == f"fetch failed for {REDACTED_URL}"
    assert line["url"] == REDACTED_URL
    assert line["context"] == {"urls": [REDACTED_URL], "depth": 1}


def test_exceptions_are_rendered_as_class_redacted_message_and_traceback(stream: io.StringIO) -> None:
    """exc_type names the class; exc_message and traceback are redacted like everything else."""

    def call_analyzer() -> None:
        raise ConnectionError(f"cannot reach {SAS_URL}")

    try:
        call_analyzer()
    except ConnectionError:
        logging.getLogger("worker.analysis.azure").exception("analyzer_call_failed")

    [line] = lines(stream)
    assert line["level"] == "error"
    assert line["exc_type"] == "builtins.ConnectionError"
    assert line["exc_message"] == f"cannot reach {REDACTED_URL}"
    assert isinstance(line["traceback"], str)
    assert "Traceback (most recent call last)" in line["traceback"]
    assert "TOPSECRET" not in stream.getvalue()


def test_messages_below_the_configured_level_are_dropped(stream: io.StringIO) -> None:
    """At info, debug events produce no line."""
    log = logging.getLogger("worker.kafka.offsets")

    log.debug("offset_done")
    log.info("offset_committed")

    assert [line["event"] for line in lines(stream)] == ["offset_committed"]


def test_configuring_twice_replaces_our_handler_instead_of_duplicating_lines(stream: io.StringIO) -> None:
    """The composition root may reconfigure (e.g. a new level); each event still prints once."""
    second = io.StringIO()
    configure_logging("DEBUG", second)

    logging.getLogger("worker").debug("partition_paused")

    assert stream.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["partition_paused"]


def test_an_extra_field_named_like_a_fixed_key_is_kept_under_a_suffixed_name(stream: io.StringIO) -> None:
    """Fixed keys cannot be overwritten by call sites; the colliding value is not lost either."""
    logging.getLogger("worker").info("control_applied", extra={"event": "hold", "level": 2})

    [line] = lines(stream)
    assert (line["event"], line["event_"], line["level"], line["level_"]) == (
        "control_applied",
        "hold",
        "info",
        2,
    )


def test_values_json_cannot_encode_become_strings_and_newlines_stay_on_one_line(stream: io.StringIO) -> None:
    """Unknown types are rendered with str(); a multi-line message is escaped, so one event is one line."""
    logging.getLogger("worker").info("line one\nline two", extra={"path": PurePosixPath("/etc/policy.json")})

    assert len(stream.getvalue().splitlines()) == 1
    [line] = lines(stream)
    assert (line["event"], line["path"]) == ("line one\nline two", "/etc/policy.json")


def test_an_unknown_level_name_is_refused() -> None:
    """A typo in MODERATION_LOG_LEVEL fails at start-up instead of logging at a surprising level."""
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", io.StringIO())
