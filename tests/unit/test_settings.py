"""Settings: parsed once from MODERATION_* variables, every error reported, secrets never printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.errors import ConfigurationError
from worker.setting_values import PREFIX
from worker.settings import Settings

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"
COMPLETE = {"MODERATION_AZURE_ENDPOINT": "https://x.example", "MODERATION_AZURE_KEY": "hunter2"}
_ROW = re.compile(r"^\| `(MODERATION_[A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)


def _error(environ: dict[str, str], *, need_analyzer: bool = True) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ, need_analyzer=need_analyzer)
    return str(caught.value)


def test_defaults_need_only_the_azure_endpoint_and_key() -> None:
    """With an endpoint and a key every other setting has a sane default."""
    settings = Settings.from_env(COMPLETE)
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


def test_a_bad_value_does_not_hide_what_the_analyzer_lacks() -> None:
    """A bad number and no endpoint or key: the one error names all three, each with its reason."""
    message = _error({"MODERATION_MAX_IN_FLIGHT": "0"})
    expected = [
        "MODERATION_MAX_IN_FLIGHT: must be at least 1, got '0'",
        "MODERATION_AZURE_ENDPOINT: required when MODERATION_ANALYZER=azure",
        "MODERATION_AZURE_KEY: required when MODERATION_AZURE_AUTH=key",
    ]
    assert expected == message.removeprefix("invalid configuration: ").split("; ")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("MODERATION_INPUT_TOPIC", "", "must not be empty"),
        ("MODERATION_ANALYZER", "vision", "must be one of 'azure' or 'model', got 'vision'"),
        (
            "MODERATION_AZURE_ENDPOINT",
            "ftp://x",
            "must start with https:// (or http:// for a local emulator)",
        ),
        ("MODERATION_VISUAL_FEATURES", " , ", "must name at least one"),
        ("MODERATION_VISUAL_FEATURES", "tags,colors", "must be one of 'tags', 'caption', 'denseCaptions', "),
        ("MODERATION_QUOTA_CALLS_PER_S", "0", "must be at least 0.001"),
        ("MODERATION_MAX_MESSAGE_BYTES", "1.5", "must be a whole number, got '1.5'"),
        ("MODERATION_DRAIN_TIMEOUT_S", "soon", "must be a number, got 'soon'"),
        ("MODERATION_LOG_LEVEL", "info", "must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("MODERATION_RESULT_RETENTION_MS", "-2", "must be at least -1"),
    ],
)
def test_each_rule_names_the_variable_and_the_reason(name: str, value: str, reason: str) -> None:
    """Ranges, choices, the endpoint scheme and the feature CSV each report ``VARIABLE: reason``."""
    message = _error(COMPLETE | {name: value})
    assert f"{name}: {reason}" in message


def test_values_are_read_as_written_in_the_environment() -> None:
    """Blanks around values are dropped, features are a CSV, an empty path means none, http:// is allowed."""
    env = {
        "MODERATION_AZURE_ENDPOINT": " http://127.0.0.1:8500 ",
        "MODERATION_AZURE_KEY": " k ",
        "MODERATION_ANALYZER": "azure ",
        "MODERATION_VISUAL_FEATURES": "tags, caption,",
        "MODERATION_POLICY_FILE": "",
        "MODERATION_DRIFT_STATE_FILE": "/var/lib/drift.json",
        "MODERATION_MAX_IN_FLIGHT": " 8",
    }
    settings = Settings.from_env(env)
    expected = ("http://127.0.0.1:8500", "k", ("tags", "caption"), None, Path("/var/lib/drift.json"), 8)
    assert expected == (
        settings.azure_endpoint,
        settings.azure_key.get_secret_value(),
        settings.visual_features,
        settings.policy_file,
        settings.drift_state_file,
        settings.max_in_flight,
    )


def test_azure_analyzer_requires_endpoint_and_key() -> None:
    """The default analyzer cannot start without its endpoint; commands that never call it can."""
    with pytest.raises(ConfigurationError, match="MODERATION_AZURE_ENDPOINT"):
        Settings.from_env({})
    assert "images.rejected" == Settings.from_env({}, need_analyzer=False).rejected_topic


def test_the_offline_model_and_entra_auth_need_no_key() -> None:
    """``model`` needs neither endpoint nor key; ``entra`` auth needs the endpoint but no key."""
    model = Settings.from_env({"MODERATION_ANALYZER": "model"})
    entra = Settings.from_env({"MODERATION_AZURE_AUTH": "entra", "MODERATION_AZURE_ENDPOINT": "https://x"})
    assert ("model", "entra") == (model.analyzer, entra.azure_auth)
    assert "MODERATION_AZURE_KEY" not in _error({"MODERATION_AZURE_AUTH": "entra"})


def test_the_key_never_shows_in_reprs() -> None:
    """A SecretStr prints masked inside the settings' repr; get_secret_value() hands the value to the SDK."""
    settings = Settings.from_env(COMPLETE)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert "hunter2" not in str(settings.azure_key)
    assert "hunter2" == settings.azure_key.get_secret_value()


def test_the_key_is_masked_in_the_printed_configuration() -> None:
    """``as_environment`` and ``as_json`` show a set key as *** and an unset one as empty."""
    settings = Settings.from_env(COMPLETE)
    unset = Settings.from_env({}, need_analyzer=False)
    assert ("***", "***", "") == (
        settings.as_environment()["MODERATION_AZURE_KEY"],
        settings.as_json()["MODERATION_AZURE_KEY"],
        unset.as_environment()["MODERATION_AZURE_KEY"],
    )


def test_the_key_never_shows_in_an_error(tmp_path: Path) -> None:
    """Neither a rejected configuration around the key nor an unknown name in an env file prints a value."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("MODERATION_AZURE_KEYS=hunter3\n", encoding="utf-8")
    around_the_key = _error(COMPLETE | {"MODERATION_MAX_IN_FLIGHT": "x"})
    in_the_file = _error(COMPLETE | {"MODERATION_ENV_FILE": str(env_file)})
    assert ("hunter2" in around_the_key, "hunter3" in in_the_file) == (False, False)
    assert f"MODERATION_AZURE_KEYS in MODERATION_ENV_FILE {env_file}: not a setting" in in_the_file


def test_an_env_file_is_read_first_and_the_environment_wins(tmp_path: Path) -> None:
    """Values from MODERATION_ENV_FILE fill what the environment leaves unset; the environment overrides."""
    env_file = tmp_path / "worker.env"
    env_file.write_text(
        "# the worker's settings\nMODERATION_AZURE_ENDPOINT=https://file.example\n"
        'MODERATION_AZURE_KEY="from file"\nMODERATION_GROUP_ID=file-group\n',
        encoding="utf-8",
    )
    settings = Settings.from_env({"MODERATION_ENV_FILE": str(env_file), "MODERATION_GROUP_ID": "env-group"})
    assert ("https://file.example", "from file", "env-group") == (
        settings.azure_endpoint,
        settings.azure_key.get_secret_value(),
        settings.group_id,
    )


def test_a_missing_env_file_is_a_configuration_error(tmp_path: Path) -> None:
    """MODERATION_ENV_FILE naming no file is reported, not silently skipped."""
    missing = tmp_path / "absent.env"
    expected = f"invalid configuration: MODERATION_ENV_FILE: no such file {missing}"
    assert expected == _error({"MODERATION_ENV_FILE": str(missing)}, need_analyzer=False)


def test_defaults_ignore_the_process_environment_and_validate_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``defaults`` reads no environment variable; a bad override is a ConfigurationError too."""
    monkeypatch.setenv("MODERATION_GROUP_ID", "from-the-process")
    assert "moderation-worker" == Settings.defaults().group_id
    assert 3 == Settings.defaults(max_in_flight=3).max_in_flight
    with pytest.raises(ConfigurationError, match="MODERATION_MAX_IN_FLIGHT: must be at least 1"):
        Settings.defaults(max_in_flight=0)


def test_settings_are_frozen() -> None:
    """Read once, never changed: assigning a field raises."""
    settings = Settings.defaults()
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_in_flight = 1


def test_configuration_doc_lists_every_variable() -> None:
    """docs/configuration.md names exactly the variables the code reads."""
    documented = set(re.findall(r"`(MODERATION_[A-Z_]+)`", DOC.read_text()))
    read = {doc.variable for doc in Settings.documented()}
    assert all(name.startswith(PREFIX) for name in read)
    assert read == documented


def test_configuration_doc_gives_every_default_the_code_has() -> None:
    """Each setting's row in docs/configuration.md starts its default cell with the code's default
    (``-`` where the default is empty)."""
    rows = {name: cell.strip() for name, cell in _ROW.findall(DOC.read_text())}
    wrong = {
        doc.variable: rows.get(doc.variable)
        for doc in Settings.documented()
        if not (rows.get(doc.variable) or "?").startswith(f"`{doc.default}`" if doc.default else "-")
    }
    assert {} == wrong


SCRAM = {
    "MODERATION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "MODERATION_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "MODERATION_KAFKA_SASL_USERNAME": "worker",
    "MODERATION_KAFKA_SASL_PASSWORD": "s3cret-pw",
}


def test_kafka_security_defaults_to_plaintext_with_zstd_and_a_minute_of_waiting() -> None:
    """Without MODERATION_KAFKA_* variables: PLAINTEXT, no SASL, no TLS files, zstd output, 60 s start-up."""
    settings = Settings.from_env({}, need_analyzer=False)
    security = settings.kafka_security()
    assert ("PLAINTEXT", None, None, "zstd", 60.0) == (
        security.security_protocol,
        security.sasl_mechanism,
        security.ssl_ca_file,
        settings.kafka_compression_type,
        settings.kafka_startup_timeout_s,
    )


def test_kafka_variables_build_the_kafka_security_description(tmp_path: Path) -> None:
    """Each MODERATION_KAFKA_* variable lands in its KafkaSecurity field; an empty one means unset."""
    env = SCRAM | {
        "MODERATION_KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem"),
        "MODERATION_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "MODERATION_KAFKA_SSL_KEY_PASSWORD": "",
        "MODERATION_KAFKA_SASL_OAUTH_SCOPE": " ",
    }
    security = Settings.from_env(env, need_analyzer=False).kafka_security()
    assert ("SASL_SSL", "SCRAM-SHA-512", "worker", "s3cret-pw", tmp_path / "ca.pem", False, None, None) == (
        security.security_protocol,
        security.sasl_mechanism,
        security.sasl_username,
        security.sasl_password.get_secret_value() if security.sasl_password else None,
        security.ssl_ca_file,
        security.ssl_check_hostname,
        security.ssl_key_password,
        security.sasl_oauth_scope,
    )


def test_inconsistent_kafka_security_is_a_configuration_error_with_the_other_problems() -> None:
    """SASL_SSL without a mechanism is reported by from_env, together with an unrelated bad variable."""
    message = _error(
        {"MODERATION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MODERATION_MAX_IN_FLIGHT": "0"},
        need_analyzer=False,
    )
    expected = [
        "MODERATION_MAX_IN_FLIGHT: must be at least 1, got '0'",
        "Kafka security settings are inconsistent: MODERATION_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs"
        " MODERATION_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)",
    ]
    assert expected == message.removeprefix("invalid configuration: ").split("; ")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        (
            "MODERATION_KAFKA_SECURITY_PROTOCOL",
            "TLS",
            "must be one of 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or",
        ),
        ("MODERATION_KAFKA_SASL_MECHANISM", "GSSAPI", "must be one of 'PLAIN', 'SCRAM-SHA-256'"),
        ("MODERATION_KAFKA_COMPRESSION_TYPE", "brotli", "must be one of 'none', 'gzip', 'snappy', 'lz4' or"),
        ("MODERATION_KAFKA_SSL_CHECK_HOSTNAME", "maybe", "must be true or false, got 'maybe'"),
        ("MODERATION_KAFKA_STARTUP_TIMEOUT_S", "-1", "must be at least 0.0"),
    ],
)
def test_each_kafka_rule_names_the_variable_and_the_reason(name: str, value: str, reason: str) -> None:
    """A bad MODERATION_KAFKA_* value is named with its reason."""
    assert f"{name}: {reason}" in _error({name: value}, need_analyzer=False)


def test_the_kafka_passwords_are_masked_in_the_printed_configuration_and_errors() -> None:
    """``as_environment`` shows the SASL password as ***; an error around it never shows its value."""
    settings = Settings.from_env(SCRAM, need_analyzer=False)
    around = _error(SCRAM | {"MODERATION_KAFKA_SSL_KEY_PASSWORD": "key-pw"}, need_analyzer=False)
    assert ("***", "SCRAM-SHA-512", "true") == (
        settings.as_environment()["MODERATION_KAFKA_SASL_PASSWORD"],
        settings.as_environment()["MODERATION_KAFKA_SASL_MECHANISM"],
        settings.as_environment()["MODERATION_KAFKA_SSL_CHECK_HOSTNAME"],
    )
    assert ("s3cret-pw" in repr(settings), "s3cret-pw" in around, "key-pw" in around) == (False, False, False)
    assert "MODERATION_KAFKA_SSL_KEY_PASSWORD is set but there is no MODERATION_KAFKA_SSL_KEY_FILE" in around
