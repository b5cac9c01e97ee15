"""``moderation-worker demo``: the whole job in one command, on this machine, with no network.

Starts the embedded Kafka broker, an https file server holding the bundled sample images, and the vision
emulator in model mode (it fetches each submitted URL and tags the real pixels with the offline model);
creates the topics, publishes one ``image-submitted.v1`` per sample as a producer would, runs the worker
in-process with the demo policy, shows progress, prints a summary and stops everything it started, also on
Ctrl-C or SIGTERM. See docs/demo.md.

Exit codes: 0 every sample was routed; 1 a prerequisite is missing or a component failed; 2 bad options;
3 the worker stopped on a fatal error; 4 not every sample was routed in time; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from worker.dev.broker import (
    BrokerError,
    EmbeddedKafka,
    choose_free_ports,
    default_cache_root,
    port_is_free,
)
from worker.dev.demo import prerequisites
from worker.dev.demo.report import (
    ROUTES,
    Console,
    Outcome,
    RecordingTagSource,
    progress_line,
    route_counts,
    summary_table,
)
from worker.dev.demo.review import serve_review_console
from worker.dev.demo.traffic import (
    DemoSample,
    publish_submissions,
    repeated,
    scrape_results,
    watch_outputs,
    write_demo_samples,
)
from worker.dev.emulator.image_fetch import HttpImageFetcher
from worker.dev.emulator.server import Emulator, EmulatorConfig
from worker.dev.tlsfiles import HttpsFileServer, TlsUnavailableError, make_self_signed
from worker.errors import ConfigurationError
from worker.kafka.topics import create_topics
from worker.observability.logs import JsonLineFormatter
from worker.runner import EXIT_OK, run_worker
from worker.settings import Settings

EXIT_DONE, EXIT_FAILED, EXIT_WORKER_FATAL, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 3, 4, 130
#: RFC 6761 reserves ``.test``: this name never resolves on the internet. Only the emulator's fetcher knows
#: it, mapping it to the loopback file server, and the certificate is made for exactly this name.
IMAGE_HOST = "demo-images.test"

#: What can stop the demo before the worker runs: reported in one line each, exit code 1.
STARTUP_ERRORS = (BrokerError, TlsUnavailableError, ConfigurationError, KafkaError, OSError)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The command's options (their defaults are the command line's); a port of 0 means any free port."""

    work_dir: Path
    kafka_port: int
    emulator_port: int
    samples_port: int
    metrics_port: int
    timeout_s: float
    repeat: int
    review: bool = False
    review_port: int = 0

    def fixed_ports(self) -> dict[str, int]:
        """Each port option by name, for the prerequisite check."""
        return {
            "--kafka-port": self.kafka_port,
            "--emulator-port": self.emulator_port,
            "--samples-port": self.samples_port,
            "--metrics-port": self.metrics_port,
            "--review-port": self.review_port,
        }


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Demo:
    """One run: ``await Demo(options, console).run()`` returns the exit code; everything it starts is
    entered on one ``AsyncExitStack``, so it is stopped in reverse order however the run ends."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self._options = options
        self._console = console
        self._started = time.monotonic()

    def _step(self, text: str) -> None:
        self._console.line(f"[{time.monotonic() - self._started:5.1f} s] {text}")

    async def run(self) -> int:
        """Start everything, publish, run the worker until all samples are routed, report, stop."""
        work = self._options.work_dir
        work.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            self._log_to_file(stack, work / "demo.log")
            self._step(f"work folder {work} (log: demo.log)")
            certificate = await make_self_signed(IMAGE_HOST, _fresh_dir(work / "tls"))
            images = await asyncio.to_thread(write_demo_samples, _fresh_dir(work / "samples"))
            samples = repeated(images, self._options.repeat)
            broker = EmbeddedKafka(
                _fresh_dir(work / "kafka"),
                port=self._options.kafka_port,
                cache_dir=default_cache_root(os.environ),
            )
            if not prerequisites.kafka_jars_cached():
                self._step("first run: Maven fetches the Kafka jars into the cache (a minute or two, once)")
            self._step(f"starting Apache Kafka {broker.version} (embedded, KRaft)...")
            await stack.enter_async_context(broker)
            self._step(f"broker ready at {broker.bootstrap_servers}")
            files = await stack.enter_async_context(
                HttpsFileServer(work / "samples", certificate, port=self._options.samples_port)
            )
            self._step(f"https image server: {files.url_for('')} -> {files.bind_host}:{files.port}")
            emulator, tag_source = await self._start_emulator(stack, certificate.client_context(), files)
            settings = self._settings(broker.bootstrap_servers, emulator, stack)
            await create_topics(settings)
            self._step(f"topics created ({settings.topic_partitions} partitions each)")
            await publish_submissions(settings, samples, files.url_for)
            self._step(f"published {len(samples)} submissions to {settings.input_topic}")
            code, outcomes = await self._run_worker(settings, samples)
            self._report(settings, samples, outcomes, tag_source)
            if self._options.review and code == EXIT_DONE:
                await serve_review_console(
                    settings, files, certificate, work, port=self._options.review_port, say=self._step
                )
            self._step("stopping emulator, image server and broker...")
        self._console.line(f"everything stopped; wall time {time.monotonic() - self._started:.1f} s")
        return code

    def _log_to_file(self, stack: AsyncExitStack, path: Path) -> None:
        handler = logging.FileHandler(path, mode="w", encoding="utf-8")
        handler.setFormatter(JsonLineFormatter())
        root = logging.getLogger()
        root.addHandler(handler)
        previous_level = root.level
        root.setLevel(logging.INFO)
        logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every request at INFO

        def restore() -> None:
            root.removeHandler(handler)
            root.setLevel(previous_level)
            handler.close()

        stack.callback(restore)

    async def _start_emulator(
        self, stack: AsyncExitStack, trust: ssl.SSLContext, files: HttpsFileServer
    ) -> tuple[Emulator, RecordingTagSource]:
        from worker.analysis.offline import ImageModel  # noqa: PLC0415 - needs the model extra
        from worker.dev.emulator.model_tags import ModelTagSource  # noqa: PLC0415 - needs the model extra

        model = await asyncio.to_thread(ImageModel)  # about 0.3 s of blocking load, off the event loop
        tag_source = RecordingTagSource(ModelTagSource(model))
        fetcher = await stack.enter_async_context(
            HttpImageFetcher(
                ssl_context=trust,
                static_hosts={IMAGE_HOST: files.bind_host},
                static_hosts_only=True,
            )
        )
        config = EmulatorConfig(
            key=secrets.token_urlsafe(16),
            tag_source=tag_source,
            fetcher=fetcher,
            model_version=model.version,
            route_prefix="",
        )
        emulator = await stack.enter_async_context(Emulator(config, port=self._options.emulator_port))
        self._step(f"vision emulator (model mode, {model.version}) at {emulator.endpoint}")
        return emulator, tag_source

    def _settings(self, bootstrap: str, emulator: Emulator, stack: AsyncExitStack) -> Settings:
        policy_file = stack.enter_context(resources.as_file(resources.files("worker") / "policies/demo.json"))
        metrics_port = self._options.metrics_port or choose_free_ports(1)[0]
        return Settings.defaults(
            bootstrap_servers=bootstrap,
            group_id="moderation-demo",
            analyzer="azure",
            azure_endpoint=emulator.endpoint,
            azure_key=emulator.state.config.key,
            policy_file=policy_file,
            metrics_host="127.0.0.1",
            metrics_port=metrics_port,
            topic_partitions=3,
            drain_timeout_s=5.0,
            log_level="INFO",
        )

    async def _run_worker(
        self, settings: Settings, samples: Sequence[DemoSample]
    ) -> tuple[int, dict[str, Outcome]]:
        expected_ids = [sample.image_id for sample in samples]
        outcomes: dict[str, Outcome] = {}
        stop = asyncio.Event()
        metrics_url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        self._step(f"worker starting (policy demo.json, metrics at {metrics_url})")
        started = time.monotonic()

        def show(force: bool = False) -> None:
            counts = route_counts(outcomes.values())
            self._console.progress(
                progress_line(counts, len(expected_ids), time.monotonic() - started), force=force
            )

        async with asyncio.TaskGroup() as group:
            worker = group.create_task(run_worker(settings, stop=stop, registry=CollectorRegistry()))
            watcher = group.create_task(watch_outputs(settings, set(expected_ids), outcomes, show))
            await asyncio.wait(
                {worker, watcher}, timeout=self._options.timeout_s, return_when="FIRST_COMPLETED"
            )
            show(force=True)
            self._console.end_progress()
            if watcher.done():
                self._console.line(await scrape_results(metrics_url))
            stop.set()
            watcher.cancel()
        elapsed_s = time.monotonic() - started
        code = worker.result()
        if code != EXIT_OK:
            self._step(f"the worker stopped with exit code {code} (see demo.log)")
            return EXIT_WORKER_FATAL, outcomes
        if not set(expected_ids) <= outcomes.keys():
            missing = len(set(expected_ids) - outcomes.keys())
            self._step(f"{missing} submissions were not routed within {self._options.timeout_s:.0f} s")
            return EXIT_INCOMPLETE, outcomes
        self._step(f"worker routed {len(expected_ids)} submissions in {elapsed_s:.1f} s and stopped cleanly")
        return EXIT_DONE, outcomes

    def _report(
        self,
        settings: Settings,
        samples: Sequence[DemoSample],
        outcomes: Mapping[str, Outcome],
        tag_source: RecordingTagSource,
    ) -> None:
        tags_by_id = {s.image_id: tag_source.tags_by_sha256.get(s.sha256, []) for s in samples}
        self._console.line()
        self._console.line(summary_table([s.image_id for s in samples], outcomes, tags_by_id))
        counts = route_counts(outcomes.values())
        self._console.line()
        self._console.line(
            f"{len(samples)} images: " + ", ".join(f"{counts[route]} {route}" for route in ROUTES)
        )
        surprises = [
            s.image_id
            for s in samples
            if s.expected is not None and s.image_id in outcomes and outcomes[s.image_id].route != s.expected
        ]
        if surprises:
            self._console.line(f"differs from the sample set's expected decision: {', '.join(surprises)}")
        else:
            self._console.line("every decision matches the sample set's expectation (docs/model.md)")
        gone = "closed now" if port_is_free(settings.metrics_port) else "STILL OPEN"
        self._console.line(
            f"metrics were served at http://{settings.metrics_host}:{settings.metrics_port}/metrics "
            f"while the worker ran ({gone})"
        )


async def _main_async(options: DemoOptions, console: Console) -> int:
    """Run the demo; SIGINT/SIGTERM cancel it, which unwinds the exit stack (everything is stopped)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # asyncio.run runs us in a task
    interrupted = asyncio.Event()

    def interrupt() -> None:
        if not interrupted.is_set():
            interrupted.set()
            console.line("interrupted: stopping everything the demo started...")
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    try:
        return await Demo(options, console).run()
    except asyncio.CancelledError:
        if not interrupted.is_set():
            raise
        task.uncancel()
        console.line("stopped after an interrupt")
        return EXIT_INTERRUPTED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _loopback_bypasses_proxies(environ: MutableMapping[str, str]) -> None:
    """The SDK honours proxy variables; loopback calls to the emulator must never go through a proxy."""
    for name in ("NO_PROXY", "no_proxy"):
        entries = [entry for entry in environ.get(name, "").split(",") if entry]
        environ[name] = ",".join([*entries, "127.0.0.1", "localhost"])


def _leaves(error: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups, or the error itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def run_demo(options: DemoOptions) -> int:
    """Check the machine, then run the demo in this process; the exit codes are in the module docstring."""
    console = Console(sys.stdout, is_tty=sys.stdout.isatty(), columns=shutil.get_terminal_size().columns)
    problems = prerequisites.check(prerequisites.machine_probes(), options.fixed_ports())
    if problems:
        console.line("moderation-worker demo cannot run on this machine yet:")
        for problem in problems:
            console.line(f"  - {problem}")
        return EXIT_FAILED
    _loopback_bypasses_proxies(os.environ)
    try:
        return asyncio.run(_main_async(options, console))
    except (*STARTUP_ERRORS, ExceptionGroup) as error:
        leaves = _leaves(error)
        if not all(isinstance(leaf, STARTUP_ERRORS) for leaf in leaves):
            raise
        for leaf in leaves:
            console.line(f"moderation-worker demo: {type(leaf).__name__}: {leaf}")
        return EXIT_FAILED
