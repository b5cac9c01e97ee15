"""Specification of ``MODERATION_REVIEW_*`` and of the ``review`` command's configuration errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.cli import main
from worker.errors import ConfigurationError
from worker.review.console import load_tokens, proxy_trust
from worker.review.settings import ReviewSettings, decisions_topic


def test_defaults_with_a_token_file() -> None:
    """A few minutes' lease, the shared topic names, loopback address, secure cookies."""
    settings = ReviewSettings.from_env({"MODERATION_REVIEW_TOKENS_FILE": "/run/secrets/tokens"})

    expected = (
        300.0,
        "images.review-decisions",
        "images.review-escalated",
        "images.review-audit",
        "127.0.0.1",
    )
    assert expected == (
        settings.lease_s,
        settings.decisions_topic,
        settings.escalated_topic,
        settings.audit_topic,
        settings.host,
    )
    assert settings.secure_cookies
    assert Path("/run/secrets/tokens") == settings.tokens_file


def test_lists_are_comma_separated_and_the_session_key_never_prints() -> None:
    """Reason labels, proxies and origins are CSV; the key is a SecretStr."""
    settings = ReviewSettings.from_env(
        {
            "MODERATION_REVIEW_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
            "MODERATION_REVIEW_REJECT_REASONS": "nudity,gore",
            "MODERATION_REVIEW_SESSION_KEY": "super-secret-session-key",
        }
    )

    assert (("10.0.0.0/8", "192.0.2.7"), ("nudity", "gore")) == (
        settings.trusted_proxies,
        settings.reject_reasons,
    )
    assert "super-secret-session-key" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "MODERATION_REVIEW_TOKENS_FILE or MODERATION_REVIEW_TRUSTED_PROXIES is required"),
        (
            {"MODERATION_REVIEW_TOKENS_FILE": "t", "MODERATION_REVIEW_LEASE_S": "0.1"},
            "MODERATION_REVIEW_LEASE_S",
        ),
        ({"MODERATION_REVIEW_TOKENS_FILE": "t", "MODERATION_REVIEW_LEASE": "60"}, "MODERATION_REVIEW_LEASE"),
        ({"MODERATION_REVIEW_TOKENS_FILE": "t", "MODERATION_REVIEW_REJECT_REASONS": " , "}, "REJECT_REASONS"),
    ],
)
def test_bad_settings_are_configuration_errors_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    """A missing identity source, a too-short lease, a misspelt variable, an empty label list."""
    with pytest.raises(ConfigurationError, match=message):
        ReviewSettings.from_env(environ)


def test_an_unreadable_token_file_or_bad_proxy_list_is_a_configuration_error(tmp_path: Path) -> None:
    """Named before anything connects to Kafka."""
    missing = ReviewSettings.from_env({"MODERATION_REVIEW_TOKENS_FILE": str(tmp_path / "absent")})
    bad_line = tmp_path / "tokens"
    bad_line.write_text("alice reviewer\n")
    proxies = ReviewSettings.from_env({"MODERATION_REVIEW_TRUSTED_PROXIES": "10.0.0.0/33"})

    with pytest.raises(ConfigurationError, match="cannot read"):
        load_tokens(missing)
    with pytest.raises(ConfigurationError, match="line 1"):
        load_tokens(ReviewSettings.from_env({"MODERATION_REVIEW_TOKENS_FILE": str(bad_line)}))
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
        proxy_trust(proxies)


def test_the_review_command_exits_2_without_an_identity_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nobody could sign in: a configuration error, exit 2, before connecting to Kafka."""
    for name in ("MODERATION_REVIEW_TOKENS_FILE", "MODERATION_REVIEW_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)

    code = main(["review"])

    assert 2 == code
    assert "MODERATION_REVIEW_TOKENS_FILE or MODERATION_REVIEW_TRUSTED_PROXIES" in capsys.readouterr().err


def test_docs_review_lists_every_setting_with_its_default() -> None:
    """docs/review.md's settings table names exactly the variables ReviewSettings reads."""
    text = (Path(__file__).parents[2] / "docs" / "review.md").read_text()
    documented = set(re.findall(r"^\| `(MODERATION_REVIEW_\w+)` \|", text, flags=re.MULTILINE))

    assert {f"MODERATION_REVIEW_{name.upper()}" for name in ReviewSettings.model_fields} == documented


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "images.review-decisions"),
        ({"MODERATION_REVIEW_DECISIONS_TOPIC": " team.decisions "}, "team.decisions"),
        ({"moderation_review_decisions_topic": "team.decisions"}, "team.decisions"),
    ],
)
def test_readers_of_the_decisions_find_the_topic_the_console_writes(
    environ: dict[str, str], expected: str
) -> None:
    """decisions_topic reads MODERATION_REVIEW_DECISIONS_TOPIC as from_env does, without sign-in settings."""
    with_tokens = environ | {"MODERATION_REVIEW_TOKENS_FILE": "/run/secrets/tokens"}
    assert (expected, expected) == (
        decisions_topic(environ),
        ReviewSettings.from_env(with_tokens).decisions_topic,
    )


def test_a_blank_decisions_topic_is_a_configuration_error() -> None:
    """An empty topic name is refused, naming the variable."""
    with pytest.raises(ConfigurationError, match="MODERATION_REVIEW_DECISIONS_TOPIC"):
        decisions_topic({"MODERATION_REVIEW_DECISIONS_TOPIC": "  "})
