"""What a secure embedded broker needs: a throwaway CA and certificates, a SCRAM user, and client settings.

``prepare_secure_files`` writes, into one owner-only folder, a certificate authority, the broker's
certificate for ``127.0.0.1`` (its PEM key store: key then certificate, as Kafka's ``ssl.keystore.type=PEM``
reads it), a client certificate for the mutual-TLS listener, and the SCRAM-SHA-512 user (a random password
kept in ``scram-user.json``, so a broker restarted on the same data folder keeps accepting it; the storage
holds the user only as a salted hash). ``scram_credential`` is the ``kafka-storage format --add-scram``
argument: salt and salted password, so the password never appears on a command line.
``client_environments`` is the ``MODERATION_*`` settings a worker uses to connect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from worker.dev.tlsfiles import (
    Certificate,
    CertificateAuthority,
    issue_certificate,
    make_certificate_authority,
)

#: the SCRAM user the secure broker is formatted with
SCRAM_USERNAME = "moderation-worker"
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: Kafka's minimum for SCRAM-SHA-512 is 4096; more only slows every client's login
SCRAM_ITERATIONS = 4096
CREDENTIALS_FILE = "scram-user.json"


@dataclass(frozen=True, slots=True)
class ScramUser:
    """A SCRAM user of the broker; ``password`` is a throwaway for this data folder."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"ScramUser(username={self.username!r}, password='***')"


@dataclass(frozen=True, slots=True)
class SecureBrokerFiles:
    """The TLS files and SCRAM user of one secure broker; every path is inside ``directory``."""

    directory: Path
    authority: CertificateAuthority
    broker: Certificate
    keystore_file: Path
    client: Certificate
    user: ScramUser


def scram_credential(user: ScramUser, *, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """``SCRAM-SHA-512=[name=...,iterations=...,salt="...",saltedpassword="..."]`` for ``--add-scram``.

    The salted password is RFC 5802's ``Hi(password, salt, iterations)``: PBKDF2 with HMAC-SHA-512, as
    Kafka's own ``ScramFormatter`` computes it from a plain password. Both values are base64.
    """
    salted = hashlib.pbkdf2_hmac("sha512", user.password.encode(), salt, iterations)
    encoded_salt, encoded_salted = (base64.b64encode(value).decode() for value in (salt, salted))
    return (
        f'{SCRAM_MECHANISM}=[name={user.username},iterations={iterations},salt="{encoded_salt}",'
        f'saltedpassword="{encoded_salted}"]'
    )


def load_or_create_user(directory: Path) -> ScramUser:
    """The user saved in ``directory/scram-user.json``, or a new one with a random password saved there."""
    path = directory / CREDENTIALS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return ScramUser(str(saved["username"]), str(saved["password"]))
    user = ScramUser(SCRAM_USERNAME, secrets.token_urlsafe(18))
    # Created owner-only before the password is written into it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump({"username": user.username, "password": user.password}, file)
    return user


async def prepare_secure_files(directory: Path, host: str) -> SecureBrokerFiles:
    """Make a CA, the broker's certificate for ``host``, a client certificate; load or create the user.

    Raises ``worker.dev.tlsfiles.TlsUnavailableError`` when ``openssl`` is missing or fails.
    """
    authority = await make_certificate_authority(directory, name="moderation-worker dev broker CA")
    broker = await issue_certificate(authority, host, directory, stem="broker")
    client = await issue_certificate(authority, SCRAM_USERNAME, directory, stem="client")
    keystore = directory / "broker-keystore.pem"
    keystore.write_bytes(broker.key_file.read_bytes() + broker.cert_file.read_bytes())
    keystore.chmod(0o600)
    return SecureBrokerFiles(directory, authority, broker, keystore, client, load_or_create_user(directory))


def client_environments(files: SecureBrokerFiles, *, sasl_ssl: str, mtls: str) -> dict[str, dict[str, str]]:
    """The worker's settings for each secure listener: ``{"sasl_ssl": {...}, "mtls": {...}}``.

    ``sasl_ssl`` and ``mtls`` are the listeners' ``host:port``. The SASL password is in the clear: these
    are for a developer's shell or an env file of a throwaway broker, never for a log.
    """
    ca = str(files.authority.cert_file)
    return {
        "sasl_ssl": {
            "MODERATION_BOOTSTRAP_SERVERS": sasl_ssl,
            "MODERATION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "MODERATION_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "MODERATION_KAFKA_SASL_USERNAME": files.user.username,
            "MODERATION_KAFKA_SASL_PASSWORD": files.user.password,
            "MODERATION_KAFKA_SSL_CA_FILE": ca,
        },
        "mtls": {
            "MODERATION_BOOTSTRAP_SERVERS": mtls,
            "MODERATION_KAFKA_SECURITY_PROTOCOL": "SSL",
            "MODERATION_KAFKA_SSL_CA_FILE": ca,
            "MODERATION_KAFKA_SSL_CERT_FILE": str(files.client.cert_file),
            "MODERATION_KAFKA_SSL_KEY_FILE": str(files.client.key_file),
        },
    }
