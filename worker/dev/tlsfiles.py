"""Throwaway TLS identities and an https file server on the loopback, so the demo's image URLs are https.

A certificate is either self-signed for one host name (``make_self_signed``) or issued by a throwaway
certificate authority (``make_certificate_authority`` + ``issue_certificate``), as a managed Kafka's
cluster CA issues its brokers' and clients' certificates. All are made at run time by the ``openssl`` command
line tool (no Python dependency) and trusted only by clients given them explicitly: they are never installed
in a trust store and their keys never leave the folder they were written to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from aiohttp import web

from worker.content.addresses import AddressPolicy
from worker.content.fetch import GuardedFetcher, static_resolver

OPENSSL_TIMEOUT_S = 30.0
KEY_PASSWORD_ENV = "TLSFILES_KEY_PASSWORD"  # noqa: S105 - the name of a variable, not a password


class TlsUnavailableError(Exception):
    """No certificate could be made: ``openssl`` is missing or failed (the message says which)."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """A PEM certificate for ``host`` and its unencrypted private key."""

    host: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate and nothing else, with host name checks on."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.cert_file))


def openssl_command(openssl: str, host: str, cert_file: Path, key_file: Path, valid_days: int) -> list[str]:
    """The ``openssl req`` call for a self-signed P-256 certificate whose only name is ``host``.

    ``CA:FALSE``: the certificate can identify this one server but never sign another certificate, so
    trusting it cannot vouch for anything else.
    """
    return [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key_file),
        "-out",
        str(cert_file),
        "-days",
        str(valid_days),
        "-subj",
        f"/CN={host}",
        "-addext",
        f"subjectAltName=DNS:{host}",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]


async def make_self_signed(
    host: str, directory: Path, *, openssl: str = "openssl", valid_days: int = 1
) -> Certificate:
    """Write ``cert.pem`` and ``key.pem`` for ``host`` into ``directory`` (created, owner-only).

    Raises ``TlsUnavailableError`` when ``openssl`` is not on PATH, fails, or takes over 30 s.
    """
    executable = _openssl_executable(openssl)
    await asyncio.to_thread(_private_directory, directory)
    certificate = Certificate(host, directory / "cert.pem", directory / "key.pem")
    await _run_openssl(
        openssl_command(executable, host, certificate.cert_file, certificate.key_file, valid_days)
    )
    return certificate


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A PEM CA certificate and its unencrypted key; it signs leaf certificates only (``pathlen:0``)."""

    name: str
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts certificates this authority issued, and nothing else."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.cert_file))


async def make_certificate_authority(
    directory: Path,
    *,
    name: str = "moderation-worker throwaway CA",
    openssl: str = "openssl",
    valid_days: int = 1,
) -> CertificateAuthority:
    """Write ``ca.pem`` and ``ca-key.pem`` (a P-256 CA named ``name``) into ``directory`` (owner-only).

    Raises ``TlsUnavailableError`` as ``make_self_signed`` does.
    """
    executable = _openssl_executable(openssl)
    await asyncio.to_thread(_private_directory, directory)
    authority = CertificateAuthority(name, directory / "ca.pem", directory / "ca-key.pem")
    command = [
        *_new_key_request(executable, authority.key_file, authority.cert_file, valid_days, name),
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-noenc",
    ]
    await _run_openssl(command)
    return authority


async def issue_certificate(
    authority: CertificateAuthority,
    host: str,
    directory: Path,
    *,
    stem: str | None = None,
    key_password: str | None = None,
    openssl: str = "openssl",
    valid_days: int = 1,
) -> Certificate:
    """A leaf certificate for ``host`` (a DNS name or an IP address) signed by ``authority``.

    Written to ``<stem>.pem`` and ``<stem>-key.pem`` in ``directory`` (``stem`` defaults to ``host``), so one
    folder can hold a broker's and a client's. ``key_password`` encrypts the key (AES-256), as a client key
    handed out by a cluster operator often is. The certificate serves as a TLS server or client identity.
    """
    executable = _openssl_executable(openssl)
    await asyncio.to_thread(_private_directory, directory)
    name = stem or host
    certificate = Certificate(host, directory / f"{name}.pem", directory / f"{name}-key.pem")
    command = [
        *_new_key_request(executable, certificate.key_file, certificate.cert_file, valid_days, host),
        "-CA",
        str(authority.cert_file),
        "-CAkey",
        str(authority.key_file),
        "-addext",
        f"subjectAltName={_subject_alt_name(host)}",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    if key_password is None:
        await _run_openssl([*command, "-noenc"])
    else:
        # Read from the environment, so the password never shows in the process list.
        await _run_openssl(
            [*command, "-passout", f"env:{KEY_PASSWORD_ENV}"], env={KEY_PASSWORD_ENV: key_password}
        )
    return certificate


def _subject_alt_name(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"


def _new_key_request(openssl: str, key_file: Path, cert_file: Path, valid_days: int, name: str) -> list[str]:
    """``openssl req -x509`` with a new P-256 key; the caller adds ``-noenc`` or a ``-passout``."""
    return [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        str(key_file),
        "-out",
        str(cert_file),
        "-days",
        str(valid_days),
        "-subj",
        f"/CN={name}",
    ]


def _openssl_executable(openssl: str) -> str:
    executable = shutil.which(openssl)
    if executable is None:
        raise TlsUnavailableError(
            f"the {openssl!r} command is not on PATH; it makes the throwaway certificates"
        )
    return executable


async def _run_openssl(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run one ``openssl`` command; ``TlsUnavailableError`` when it fails or takes over 30 s."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        async with asyncio.timeout(OPENSSL_TIMEOUT_S):
            output, _ = await process.communicate()
    except TimeoutError as exc:
        raise TlsUnavailableError(f"openssl took over {OPENSSL_TIMEOUT_S:.0f} s") from exc
    finally:
        if process.returncode is None:  # timed out or cancelled: leave no child behind
            process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip()[-500:]
        raise TlsUnavailableError(f"openssl exited with code {process.returncode}: {tail}")


def local_guarded_fetcher(
    certificate: Certificate, bind_host: str, *, max_bytes: int, timeout_s: float, max_redirects: int = 0
) -> GuardedFetcher:
    """The worker's SSRF-guarded fetcher reaching a local https server by its certificate's name: that one
    name resolves to ``bind_host``, that one loopback address is the exception to the public-only rule, and
    only ``certificate`` is trusted."""
    return GuardedFetcher(
        policy=AddressPolicy(exceptions=frozenset({ipaddress.ip_address(bind_host)})),
        resolve=static_resolver({certificate.host: [bind_host]}),
        ssl_context=certificate.client_context(),
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        max_redirects=max_redirects,
    )


def _private_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the key is unencrypted: only its owner may read the folder


class HttpsFileServer:
    """Serves the files of ``directory`` over https on ``bind_host:port`` (0: a free port) while entered.

    URLs name the certificate's host (``url_for``); clients must resolve that name to ``bind_host``
    themselves (``worker.dev.emulator.image_fetch.StaticHostsResolver``). Unknown files answer 404, as a
    store does.
    """

    def __init__(
        self, directory: Path, certificate: Certificate, *, bind_host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._directory = directory
        self._certificate = certificate
        self._bind_host = bind_host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The port it listens on; only while running."""
        if self._runner is None:
            raise RuntimeError("the file server is not running")
        return self._port

    @property
    def bind_host(self) -> str:
        """The address it listens on."""
        return self._bind_host

    def url_for(self, name: str) -> str:
        """``https://<certificate host>:<port>/<name>``, the URL a producer puts in a submission."""
        return f"https://{self._certificate.host}:{self.port}/{quote(name)}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_static("/", self._directory, show_index=False, follow_symlinks=False)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(
            runner, self._bind_host, self._requested_port, ssl_context=self._certificate.server_context()
        )
        try:
            await site.start()
        except OSError:  # the port is taken: release the runner before saying so
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
