"""Embedded single-node Apache Kafka (KRaft) for development and tests, run from jars from Maven Central.

``EmbeddedKafka`` is an async context manager that can be stopped (SIGTERM), killed (SIGKILL) and restarted on
the same data folder and ports; ``secure=True`` adds a SASL_SSL (SCRAM-SHA-512) and a mutual-TLS listener
(``worker.dev.broker_security`` makes their files and user). What the broker is configured with (ports,
``server.properties``, JVM line) is ``worker.dev.broker_config``; ``moderation-worker dev broker`` runs
``worker.dev.broker_command``.

Errors::

    BrokerError
    ├── BrokerUnavailableError  Java, Maven or the jars are missing: no broker can run on this machine
    ├── BrokerStartError        the process ran but exited, or did not answer a metadata request in time
    └── BrokerStopError         the process ignored SIGTERM past the deadline and was killed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from worker.dev.broker_config import (
    DEFAULT_KAFKA_VERSION,
    HOST,
    BrokerPorts,
    BrokerTls,
    java_command,
    new_cluster_id,
    plan_ports,
    render_log4j2_config,
    render_server_properties,
)
from worker.dev.broker_security import (
    CREDENTIALS_FILE,
    SecureBrokerFiles,
    client_environments,
    prepare_secure_files,
    scram_credential,
)
from worker.dev.maven import JarResolutionError, resolve_kafka_jars
from worker.dev.tlsfiles import TlsUnavailableError

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "MODERATION_CACHE_DIR"
POLL_INTERVAL_S = 0.1
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"


class BrokerError(Exception):
    """Base of every error of the embedded broker."""


class BrokerUnavailableError(BrokerError):
    """Java, Maven or the broker jars are missing, so no broker can be started on this machine."""


class BrokerStartError(BrokerError):
    """The broker process exited or stayed silent past the deadline; ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- broker log tail ---\n{log_tail}")
        self.log_tail = log_tail


class BrokerStopError(BrokerError):
    """The broker did not exit within the deadline after SIGTERM; it was killed."""


def choose_free_ports(count: int) -> list[int]:
    """Ports free on the loopback now, all distinct (each socket stays bound until all are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``HOST:port``; TIME_WAIT connections of a killed broker do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def default_cache_root(environ: Mapping[str, str]) -> Path:
    """``$MODERATION_CACHE_DIR`` if set, else ``<repo>/.cache`` (or ``./.cache`` outside a checkout)."""
    if environ.get(CACHE_DIR_ENV):
        return Path(environ[CACHE_DIR_ENV])
    repo = Path(__file__).resolve().parents[2]
    return (repo if (repo / "pyproject.toml").is_file() else Path.cwd()) / ".cache"


def tail_lines(path: Path, count: int = 40, max_bytes: int = 32_768) -> str:
    """The last ``count`` lines of ``path`` (from its last ``max_bytes``), or a note that it is missing."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - max_bytes))
            text = file.read().decode(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-count:])


async def answers_metadata(bootstrap_servers: str, timeout_s: float) -> bool:
    """True when a metadata request is answered within ``timeout_s`` and lists at least one live broker."""
    host, _, port = bootstrap_servers.rpartition(":")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            # A plain connect first: while the port is closed it fails fast and quietly (aiokafka logs).
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await writer.wait_closed()
            await admin.start()
            cluster = await admin.describe_cluster()
    except (OSError, TimeoutError, KafkaError):
        return False
    finally:
        await admin.close()
    return bool(cluster["brokers"])


class EmbeddedKafka:
    """One Apache Kafka node (broker and KRaft controller) in a child JVM, keeping its data in ``data_dir``.

    Port 0 means "pick a free one"; chosen ports are kept across ``restart()``. Storage is formatted only
    when ``data_dir`` is new, so a restart keeps every record the broker acknowledged. The broker logs to
    ``data_dir/broker.log`` and the JVM's own output goes to ``data_dir/broker.out``.

    ``secure=True`` also listens with SASL_SSL (SCRAM-SHA-512, ``sasl_ssl_bootstrap``) and with mutual TLS
    (``mtls_bootstrap``) on free ports, with a CA and certificates made at the first ``start()`` into
    ``data_dir/secure`` (kept across ``restart()``) and a SCRAM user added when the storage is formatted;
    ``client_environments()`` gives the worker's settings for each. ``bootstrap_servers`` stays PLAINTEXT.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int = 0,
        controller_port: int = 0,
        version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path | None = None,
        java: str = "java",
        mvn: str = "mvn",
        heap_max_mb: int = 512,
        start_timeout_s: float = 90.0,
        stop_timeout_s: float = 30.0,
        secure: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.version = version
        self._requested_ports = (port, controller_port)
        self._cache_root = cache_dir if cache_dir is not None else default_cache_root({})
        self._java = java
        self._mvn = mvn
        self._heap_max_mb = heap_max_mb
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._ports: BrokerPorts | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.secure = secure
        self._secure_files: SecureBrokerFiles | None = None

    @property
    def log_dir(self) -> Path:
        """The Kafka log directory (records, offsets, KRaft metadata) inside ``data_dir``."""
        return self.data_dir / "kraft"

    @property
    def log_file(self) -> Path:
        """The broker's own log."""
        return self.data_dir / "broker.log"

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"``; known once ``start()`` has chosen the ports."""
        if self._ports is None:
            raise BrokerError("the broker has no ports yet: call start() first")
        return f"{HOST}:{self._ports.client}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the SASL_SSL listener; a secure broker's, once started."""
        return self._secure_address("sasl_ssl")

    @property
    def mtls_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the mutual-TLS listener; a secure broker's, once started."""
        return self._secure_address("mtls")

    @property
    def secure_files(self) -> SecureBrokerFiles:
        """The CA, certificates and SCRAM user of a secure broker, once started."""
        if self._secure_files is None:
            raise BrokerError("no secure files: the broker is not secure or not started")
        return self._secure_files

    def client_environments(self) -> dict[str, dict[str, str]]:
        """``{"sasl_ssl": {MODERATION_*: value}, "mtls": {...}}``: how a worker connects to each listener."""
        return client_environments(
            self.secure_files, sasl_ssl=self.sasl_ssl_bootstrap, mtls=self.mtls_bootstrap
        )

    def _secure_address(self, listener: str) -> str:
        port = None if self._ports is None else getattr(self._ports, listener)
        if not self.secure or port is None:
            raise BrokerError(f"the broker has no {listener} listener: make it secure and start() it")
        return f"{HOST}:{port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def clean_shutdown_recorded(self) -> bool:
        """True when Kafka recorded a clean shutdown in its log directory (meaningful while stopped)."""
        return (self.log_dir / CLEAN_SHUTDOWN_MARKER).exists()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the broker and return once it answers a metadata request; a no-op while it runs.

        Raises ``BrokerUnavailableError`` when Java or the jars are missing, ``BrokerStartError`` (with the
        log tail) when the broker exits or stays silent for ``start_timeout_s``.
        """
        if self.running:
            return
        if shutil.which(self._java) is None:
            raise BrokerUnavailableError(
                f"Java 17+ ({self._java!r}) is not on PATH; Apache Kafka {self.version} needs it"
            )
        try:
            libs = await resolve_kafka_jars(self.version, self._cache_root, mvn=self._mvn)
        except JarResolutionError as exc:
            raise BrokerUnavailableError(f"cannot get the Apache Kafka {self.version} jars: {exc}") from exc
        free_ports = iter(choose_free_ports(4 if self.secure else 2))
        self._ports = self._ports or plan_ports(*self._requested_ports, free_ports, secure=self.secure)
        for port in self._ports.all():
            if not port_is_free(port):
                raise BrokerStartError(
                    f"{HOST}:{port} is already in use (another broker?); choose another port", "(not started)"
                )
        if self.secure and self._secure_files is None:
            formatted = (self.log_dir / "meta.properties").exists()
            if formatted and not (self.data_dir / "secure" / CREDENTIALS_FILE).is_file():
                message = f"{self.data_dir} was formatted without the SCRAM user: use a new data folder"
                raise BrokerStartError(message, "(not started)")
            try:
                self._secure_files = await prepare_secure_files(self.data_dir / "secure", HOST)
            except TlsUnavailableError as exc:
                raise BrokerUnavailableError(f"cannot make the secure broker's certificates: {exc}") from exc
        self._write_configuration()
        await self._format_storage_if_new(libs)
        await self._launch(libs)

    async def stop(self) -> None:
        """Send SIGTERM and wait for a clean exit; past the deadline SIGKILL and raise ``BrokerStopError``."""
        process = self._process
        if process is None or process.returncode is not None:
            self._process = None
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self._stop_timeout_s)
        except TimeoutError as exc:
            await self.kill()
            raise BrokerStopError(
                f"broker ignored SIGTERM for {self._stop_timeout_s:.0f} s and was killed"
            ) from exc
        finally:
            if process.returncode is not None:
                self._process = None

    async def kill(self) -> None:
        """Send SIGKILL, as a crash would, and wait until the process is gone."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        """Stop cleanly if running, then start again on the same data folder and ports."""
        await self.stop()
        await self.start()

    def _write_configuration(self) -> None:
        assert self._ports is not None  # start() chose them
        self.data_dir.mkdir(parents=True, exist_ok=True)
        files = self._secure_files
        tls = None if files is None else BrokerTls(files.keystore_file, files.authority.cert_file)
        (self.data_dir / "server.properties").write_text(
            render_server_properties(self._ports, self.log_dir, tls), encoding="utf-8"
        )
        (self.data_dir / "log4j2.xml").write_text(render_log4j2_config(self.log_file), encoding="utf-8")

    def _command(self, libs: Path, main_class: str, *arguments: str) -> list[str]:
        command = java_command(self._java, libs, main_class, arguments, self._heap_max_mb)
        logging_options = [
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            # Kafka logs its own shutdown from a JVM shutdown hook; log4j's hook would close the file first.
            "-Dlog4j2.shutdownHookEnabled=false",
        ]
        return [command[0], *logging_options, *command[1:]]

    async def _format_storage_if_new(self, libs: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        properties = str(self.data_dir / "server.properties")
        users = [] if self._secure_files is None else [self._secure_files.user]
        scram = [
            part for user in users for part in ("--add-scram", scram_credential(user, salt=os.urandom(16)))
        ]
        command = self._command(
            libs, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", properties, *scram
        )
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await process.communicate()
        finally:
            if process.returncode is None:  # cancelled mid-way: leave no half-run JVM behind
                process.kill()
                await process.wait()
        if process.returncode != 0:
            tail = "\n".join(output.decode(errors="replace").splitlines()[-40:])
            raise BrokerStartError(
                f"formatting {self.log_dir} failed with exit code {process.returncode}", tail
            )

    async def _launch(self, libs: Path) -> None:
        command = self._command(libs, "kafka.Kafka", str(self.data_dir / "server.properties"))
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # Linux: the broker gets SIGTERM when this process dies, so a crashed test run leaves no broker.
            command = [setpriv, "--pdeathsig", "TERM", *command]
        with (self.data_dir / "broker.out").open("ab") as output:
            # A new session keeps a terminal's Ctrl-C away from the JVM: we stop it ourselves, cleanly.
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=output, stderr=output, start_new_session=True
            )
        ready = False
        try:
            await self._wait_until_ready(self._process)
            ready = True
        finally:
            if not ready:
                await self.kill()

    async def _wait_until_ready(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout_s
        while process.returncode is None:
            if await answers_metadata(self.bootstrap_servers, timeout_s=min(5.0, self._start_timeout_s)):
                logger.info("Apache Kafka %s ready at %s", self.version, self.bootstrap_servers)
                return
            if loop.time() >= deadline:
                raise BrokerStartError(
                    f"broker did not answer a metadata request within {self._start_timeout_s:.0f} s",
                    self._log_tail(),
                )
            await asyncio.sleep(POLL_INTERVAL_S)
        raise BrokerStartError(
            f"broker exited with code {process.returncode} before it was ready", self._log_tail()
        )

    def _log_tail(self) -> str:
        return f"{tail_lines(self.log_file)}\n--- {self.data_dir / 'broker.out'} ---\n" + tail_lines(
            self.data_dir / "broker.out", count=20
        )
