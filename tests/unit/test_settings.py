"""Settings: parsed once from MODERATION_* variables, every error reported, secrets never printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.settings import ENVIRONMENT, PREFIX, Secret, Settings

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_defaults_need_only_the_azure_endpoint_and_key() -> None:
    """With an endpoint and a key every other setting has a sane default."""
    env = {"MODERATION_AZURE_ENDPOINT": "https://x.example", "MODERATION_AZURE_KEY": "k"}
    settings = Settings.from_env(env)
    assert ("images.submitted", 20.0, ("tags",)) == (
        settings.input_topic,
        settings.quota_calls_per_s,
        settings.visual_features,
    )


def test_every_bad_variable_is_named_at_once() -> None:
    """Two bad values and a missing key: one error that names both variables."""
    env = {"MODERATION_QUOTA_CALLS_PER_S": "fast", "MODERATION_VISUAL_FEATURES": "tags,colors"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert "MODERATION_QUOTA_CALLS_PER_S" in str(caught.value)
    assert "MODERATION_VISUAL_FEATURES" in str(caught.value)


def test_azure_analyzer_requires_endpoint_and_key() -> None:
    """The default analyzer cannot start without its endpoint; commands that never call it can."""
    with pytest.raises(ConfigurationError, match="MODERATION_AZURE_ENDPOINT"):
        Settings.from_env({})
    assert "images.rejected" == Settings.from_env({}, need_analyzer=False).rejected_topic


def test_the_key_never_shows_in_reprs() -> None:
    """A Secret prints as *** inside the settings' repr; reveal() hands the value to the SDK."""
    env = {"MODERATION_AZURE_ENDPOINT": "https://x.example", "MODERATION_AZURE_KEY": "hunter2"}
    settings = Settings.from_env(env)
    assert "hunter2" not in repr(settings)
    assert "hunter2" == settings.azure_key.reveal()
    assert "Secret('***')" == str(Secret("x"))


def test_configuration_doc_lists_every_variable() -> None:
    """docs/configuration.md names exactly the variables the code reads."""
    documented = set(re.findall(r"`(MODERATION_[A-Z_]+)`", DOC.read_text()))
    read = {PREFIX + suffix for suffix, _ in ENVIRONMENT.values()}
    assert read == documented
