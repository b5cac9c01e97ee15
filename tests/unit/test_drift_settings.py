"""Drift settings: window, minimum samples and a pinned reference file, read from ``MODERATION_DRIFT_*``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.runner import run_worker
from worker.settings import Settings


def test_drift_settings_default_to_a_ten_minute_window_of_200_samples_and_no_pinned_reference() -> None:
    """Unset variables give the documented defaults."""
    settings = Settings.from_env({}, need_analyzer=False)

    assert (600.0, 200, None) == (
        settings.drift_window_s,
        settings.drift_min_samples,
        settings.drift_reference_file,
    )


def test_drift_settings_are_parsed_and_bad_values_named() -> None:
    """Values parse to their types; a window under 1 s and zero samples are refused, both named at once."""
    env = {
        "MODERATION_DRIFT_WINDOW_S": "3.5",
        "MODERATION_DRIFT_MIN_SAMPLES": "50",
        "MODERATION_DRIFT_REFERENCE_FILE": "/etc/moderation/drift.json",
    }
    settings = Settings.from_env(env, need_analyzer=False)
    assert (3.5, 50, Path("/etc/moderation/drift.json")) == (
        settings.drift_window_s,
        settings.drift_min_samples,
        settings.drift_reference_file,
    )

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(
            {"MODERATION_DRIFT_WINDOW_S": "0.5", "MODERATION_DRIFT_MIN_SAMPLES": "0"}, need_analyzer=False
        )
    assert "MODERATION_DRIFT_WINDOW_S" in str(raised.value)
    assert "MODERATION_DRIFT_MIN_SAMPLES" in str(raised.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "MODERATION_DRIFT_REFERENCE_FILE"),
        ('{"decision_mix": {"maybe": 1.0}}', "unknown decisions"),
        ('{"tags": {"weapon": {"confidence": [0.5, 0.5]}}}', "does not fit"),
    ],
)
async def test_a_missing_or_bad_pinned_reference_stops_the_worker_before_any_io(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    """The worker refuses to start (ConfigurationError: exit 2 from the CLI) rather than drop a reference."""
    path = tmp_path / "drift.json"
    if content is not None:
        path.write_text(content)
    settings = Settings.defaults(drift_reference_file=path)

    with pytest.raises(ConfigurationError) as raised:
        await asyncio.wait_for(run_worker(settings, stop=asyncio.Event()), timeout=10)

    assert expected in str(raised.value)
