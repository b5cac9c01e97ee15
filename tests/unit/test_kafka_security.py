"""KafkaSecurity: the validated description of a client's connection security, and the options it builds."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from tests.fixtures.tls import TlsFiles
from worker.errors import ConfigurationError
from worker.kafka.security import connection_options, open_connection_options
from worker.kafka_settings import (
    KafkaSecurity,
    MaskedSecret,
    SaslMechanism,
    SecurityProtocol,
    secret,
    setting,
)

SASL_SSL = SecurityProtocol.SASL_SSL


def problems_of(**fields: object) -> str:
    """The message of the ConfigurationError that constructing KafkaSecurity(**fields) raises."""
    with pytest.raises(ConfigurationError) as raised:
        KafkaSecurity(**fields)  # type: ignore[arg-type]
    return str(raised.value)


def test_default_is_plaintext_without_sasl_or_tls() -> None:
    """The default describes today's embedded broker: PLAINTEXT, no SASL, no TLS context."""
    options = connection_options(KafkaSecurity())
    kwargs = options.client_kwargs()
    assert "PLAINTEXT" == kwargs["security_protocol"]
    assert kwargs["ssl_context"] is None
    assert (None, None, None) == (
        kwargs["sasl_plain_username"],
        kwargs["sasl_plain_password"],
        kwargs["sasl_oauth_token_provider"],
    )


def test_field_names_map_to_the_documented_settings() -> None:
    """Each field is one MODERATION_KAFKA_* variable: the settings model embeds them one-to-one."""
    expected = {
        "MODERATION_KAFKA_SECURITY_PROTOCOL",
        "MODERATION_KAFKA_SASL_MECHANISM",
        "MODERATION_KAFKA_SASL_USERNAME",
        "MODERATION_KAFKA_SASL_PASSWORD",
        "MODERATION_KAFKA_SASL_OAUTH_SCOPE",
        "MODERATION_KAFKA_SSL_CA_FILE",
        "MODERATION_KAFKA_SSL_CERT_FILE",
        "MODERATION_KAFKA_SSL_KEY_FILE",
        "MODERATION_KAFKA_SSL_KEY_PASSWORD",
        "MODERATION_KAFKA_SSL_CHECK_HOSTNAME",
    }
    assert expected == {setting(name) for name in KafkaSecurity.__dataclass_fields__}


def test_enum_values_are_the_java_and_librdkafka_names() -> None:
    """Protocol and mechanism values are spelled as in ``security.protocol`` and ``sasl.mechanism``."""
    assert ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] == [str(value) for value in SecurityProtocol]
    assert ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] == [
        str(value) for value in SaslMechanism
    ]


def test_sasl_protocol_without_a_mechanism_is_refused_with_the_choices() -> None:
    """SASL_SSL alone says nothing about how to authenticate: the error lists the mechanisms."""
    message = problems_of(security_protocol=SASL_SSL)
    assert "MODERATION_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs MODERATION_KAFKA_SASL_MECHANISM" in message
    assert "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER" in message


@pytest.mark.parametrize("mechanism", [SaslMechanism.PLAIN, SaslMechanism.SCRAM_SHA_512])
def test_password_mechanisms_need_both_username_and_password(mechanism: SaslMechanism) -> None:
    """PLAIN and SCRAM without credentials name both missing settings in one error."""
    message = problems_of(security_protocol=SASL_SSL, sasl_mechanism=mechanism, sasl_password=secret(""))
    assert f"SASL_MECHANISM={mechanism} needs MODERATION_KAFKA_SASL_USERNAME" in message
    assert f"SASL_MECHANISM={mechanism} needs MODERATION_KAFKA_SASL_PASSWORD" in message


def test_sasl_settings_without_a_sasl_protocol_are_refused() -> None:
    """A mechanism or username under SSL would be silently ignored by aiokafka: refuse it instead."""
    message = problems_of(
        security_protocol=SecurityProtocol.SSL, sasl_mechanism=SaslMechanism.PLAIN, sasl_username="u"
    )
    assert "MODERATION_KAFKA_SASL_MECHANISM is set but MODERATION_KAFKA_SECURITY_PROTOCOL=SSL" in message
    assert "MODERATION_KAFKA_SASL_USERNAME is set" in message


def test_oauthbearer_refuses_a_password_and_plain_refuses_a_scope() -> None:
    """OAUTHBEARER gets tokens, not passwords; the OAuth scope means nothing to PLAIN."""
    oauth = problems_of(
        security_protocol=SASL_SSL, sasl_mechanism=SaslMechanism.OAUTHBEARER, sasl_password=secret("p")
    )
    plain = problems_of(
        security_protocol=SASL_SSL,
        sasl_mechanism=SaslMechanism.PLAIN,
        sasl_username="u",
        sasl_password=secret("p"),
        sasl_oauth_scope="https://x/.default",
    )
    assert "MODERATION_KAFKA_SASL_PASSWORD is not used by OAUTHBEARER" in oauth
    assert "MODERATION_KAFKA_SASL_OAUTH_SCOPE is only used by OAUTHBEARER, not PLAIN" in plain


def test_a_certificate_needs_its_key_and_a_key_its_certificate() -> None:
    """Mutual TLS needs both halves of the client identity; a key password needs a key."""
    cert_only = problems_of(security_protocol=SecurityProtocol.SSL, ssl_cert_file=Path("c.pem"))
    key_only = problems_of(
        security_protocol=SecurityProtocol.SSL, ssl_key_file=Path("k.pem"), ssl_key_password=secret("x")
    )
    password_only = problems_of(security_protocol=SecurityProtocol.SSL, ssl_key_password=secret("x"))
    assert (
        "MODERATION_KAFKA_SSL_CERT_FILE needs its private key in MODERATION_KAFKA_SSL_KEY_FILE" in cert_only
    )
    assert "MODERATION_KAFKA_SSL_KEY_FILE needs its certificate in MODERATION_KAFKA_SSL_CERT_FILE" in key_only
    assert "MODERATION_KAFKA_SSL_KEY_PASSWORD is set but there is no MODERATION_KAFKA_SSL_KEY_FILE" in (
        password_only
    )


def test_tls_files_without_a_tls_protocol_are_refused() -> None:
    """A CA file under PLAINTEXT would never be read: the operator meant SSL."""
    message = problems_of(ssl_ca_file=Path("ca.pem"))
    assert "MODERATION_KAFKA_SSL_CA_FILE is set but MODERATION_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in message


def test_passwords_never_print() -> None:
    """repr and str of the description and of the options mask every secret."""
    security = KafkaSecurity(
        SASL_SSL, SaslMechanism.SCRAM_SHA_512, "bob", secret("hunter2"), ssl_check_hostname=False
    )
    options = connection_options(security)
    for text in (repr(security), str(security), repr(options), str(MaskedSecret("hunter2"))):
        assert "hunter2" not in text
    assert "hunter2" == options.client_kwargs()["sasl_plain_password"]


def test_sasl_ssl_scram_options_carry_mechanism_credentials_and_a_verifying_context() -> None:
    """SASL_SSL + SCRAM: the aiokafka options name the mechanism and credentials; TLS verifies the host."""
    kwargs = connection_options(
        KafkaSecurity(SASL_SSL, SaslMechanism.SCRAM_SHA_512, "bob", secret("bob-secret"))
    ).client_kwargs()
    context = kwargs["ssl_context"]
    assert ("SASL_SSL", "SCRAM-SHA-512", "bob") == (
        kwargs["security_protocol"],
        kwargs["sasl_mechanism"],
        kwargs["sasl_plain_username"],
    )
    assert context is not None
    assert (True, ssl.CERT_REQUIRED) == (context.check_hostname, context.verify_mode)


def test_event_hubs_connection_string_is_plain_sasl_with_a_fixed_username() -> None:
    """Event Hubs' recipe needs no special code: PLAIN, user ``$ConnectionString``, the string as password."""
    connection_string = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"
    kwargs = connection_options(
        KafkaSecurity(SASL_SSL, SaslMechanism.PLAIN, "$ConnectionString", secret(connection_string))
    ).client_kwargs()
    assert ("PLAIN", "$ConnectionString", connection_string) == (
        kwargs["sasl_mechanism"],
        kwargs["sasl_plain_username"],
        kwargs["sasl_plain_password"],
    )


def test_turning_hostname_checks_off_keeps_certificate_verification(tls_files: TlsFiles) -> None:
    """``ssl_check_hostname=false`` skips the name check only: the chain must still lead to the CA."""
    security = KafkaSecurity(SecurityProtocol.SSL, ssl_ca_file=tls_files.ca, ssl_check_hostname=False)
    context = security.ssl_context()
    assert context is not None
    assert (False, ssl.CERT_REQUIRED) == (context.check_hostname, context.verify_mode)


def test_missing_files_are_named(tmp_path: Path) -> None:
    """A CA file that does not exist is refused with its setting and path."""
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConfigurationError) as raised:
        KafkaSecurity(SecurityProtocol.SSL, ssl_ca_file=missing).ssl_context()
    assert f"MODERATION_KAFKA_SSL_CA_FILE: {missing} does not exist or is not a file" == str(raised.value)


def test_a_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    """A CA file holding no PEM certificate fails at start-up, not at the first connection."""
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError) as raised:
        KafkaSecurity(SecurityProtocol.SSL, ssl_ca_file=garbage).ssl_context()
    assert str(raised.value).startswith(f"MODERATION_KAFKA_SSL_CA_FILE: {garbage} holds no readable PEM")


def test_an_encrypted_client_key_loads_with_its_password(tls_files: TlsFiles) -> None:
    """Mutual TLS with an encrypted key: the context loads the identity given the right password."""
    security = KafkaSecurity(
        SecurityProtocol.SSL,
        ssl_ca_file=tls_files.ca,
        ssl_cert_file=tls_files.client.cert_file,
        ssl_key_file=tls_files.client.key_file,
        ssl_key_password=secret(tls_files.client_key_password),
    )
    assert security.ssl_context() is not None


def test_a_wrong_key_password_is_refused_without_showing_it(tls_files: TlsFiles) -> None:
    """A wrong key password is a ConfigurationError naming the settings and never the password."""
    security = KafkaSecurity(
        SecurityProtocol.SSL,
        ssl_ca_file=tls_files.ca,
        ssl_cert_file=tls_files.client.cert_file,
        ssl_key_file=tls_files.client.key_file,
        ssl_key_password=secret("not-the-password"),
    )
    with pytest.raises(ConfigurationError) as raised:
        security.ssl_context()
    message = str(raised.value)
    assert "cannot load the client certificate" in message
    assert "MODERATION_KAFKA_SSL_KEY_PASSWORD" in message
    assert "not-the-password" not in message
    assert raised.value.__cause__ is None


def test_oauthbearer_options_need_a_token_provider() -> None:
    """The plain builder cannot invent tokens: OAUTHBEARER without a provider is a ConfigurationError."""
    security = KafkaSecurity(SASL_SSL, SaslMechanism.OAUTHBEARER)
    with pytest.raises(ConfigurationError):
        connection_options(security)


async def test_oauthbearer_for_a_host_outside_event_hubs_needs_a_scope() -> None:
    """No scope can be derived for a non-Event Hubs host; the error names the scope setting."""
    security = KafkaSecurity(SASL_SSL, SaslMechanism.OAUTHBEARER)
    with pytest.raises(ConfigurationError) as raised:
        async with open_connection_options(security, "kafka.example.com:9093"):
            pass
    assert "MODERATION_KAFKA_SASL_OAUTH_SCOPE" in str(raised.value)


async def test_open_connection_options_without_oauth_has_no_token_provider() -> None:
    """For password mechanisms the context manager yields the plain options and owns nothing."""
    security = KafkaSecurity(SASL_SSL, SaslMechanism.PLAIN, "u", secret("p"))
    async with open_connection_options(security, "broker:9093") as options:
        assert options.token_provider is None
        assert "PLAIN" == options.client_kwargs()["sasl_mechanism"]


def test_docs_list_every_security_setting_with_its_field() -> None:
    """docs/kafka.md's settings table has one row per field, naming its variable, and no other row."""
    page = (Path(__file__).parents[2] / "docs" / "kafka.md").read_text()
    rows = re.findall(r"^\| `(MODERATION_KAFKA_\w+)` \| `(\w+)` \|", page, flags=re.MULTILINE)
    assert {(setting(name), name) for name in KafkaSecurity.__dataclass_fields__} == set(rows)
