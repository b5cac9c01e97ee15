"""Apache Kafka broker jars, resolved from Maven Central with ``mvn`` into a project cache folder.

The first resolution runs Maven; it leaves a marker file listing every jar, so later starts find a complete
cache, never call Maven and need no network.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

# Kafka 4.x ships its broker logging on log4j2; without slf4j-api 2.x the 1.7 API Kafka pulls in binds to NOP
# and the broker log would be empty, which leaves nothing to show when a start fails.
SLF4J_VERSION = "2.0.16"
LOG4J_VERSION = "2.24.3"
# Pinned so a resolution does not depend on whichever plugin version Maven would pick on the day.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MARKER_NAME = ".resolved.json"
RESOLVE_TIMEOUT_S = 900.0


class JarResolutionError(Exception):
    """Maven is missing or could not resolve the broker jars; the message says which, with Maven's output."""


def render_pom(kafka_version: str) -> str:
    """The throwaway Maven project whose runtime dependencies are the broker's class path."""
    dependencies = [
        ("org.apache.kafka", "kafka_2.13", kafka_version),
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ]
    rendered = "\n".join(
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>"
        for group, artifact, version in dependencies
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.moderation</groupId>\n"
        "  <artifactId>embedded-kafka</artifactId>\n"
        "  <version>1</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{rendered}\n  </dependencies>\n"
        "</project>\n"
    )


def recipe_fingerprint(pom: str) -> str:
    """A short hash of the resolution recipe; a cache made from another recipe is stale."""
    return hashlib.sha256(f"{DEPENDENCY_PLUGIN}\n{pom}".encode()).hexdigest()[:16]


def libs_dir(cache_root: Path, kafka_version: str) -> Path:
    """Where the jars of ``kafka_version`` live: ``<cache_root>/kafka/<version>/libs``."""
    return cache_root / "kafka" / kafka_version / "libs"


def render_marker(fingerprint: str, jar_sizes: Mapping[str, int]) -> str:
    """The marker's content: the recipe fingerprint and the byte size of every jar, by file name."""
    return json.dumps({"recipe": fingerprint, "jars": dict(sorted(jar_sizes.items()))}, indent=1) + "\n"


def is_complete(libs: Path, fingerprint: str) -> bool:
    """True when ``libs`` holds a marker for ``fingerprint`` and every jar it lists, at its recorded size."""
    try:
        marker = json.loads((libs / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("recipe") != fingerprint:
        return False
    jars = marker.get("jars")
    if not isinstance(jars, dict) or not jars:
        return False
    return all(_size_of(libs / name) == size for name, size in jars.items())


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


async def resolve_kafka_jars(kafka_version: str, cache_root: Path, *, mvn: str = "mvn") -> Path:
    """Return the folder of broker jars for ``kafka_version``; Maven runs only when the cache is incomplete.

    Maven writes into a private temporary folder that is renamed into place with its marker, so a process
    that is killed mid-way, or two processes resolving at once, never leave a cache that looks complete.
    Raises ``JarResolutionError`` when ``mvn`` is missing, fails or exceeds ``RESOLVE_TIMEOUT_S``.
    """
    pom = render_pom(kafka_version)
    fingerprint = recipe_fingerprint(pom)
    target = libs_dir(cache_root, kafka_version)
    if is_complete(target, fingerprint):
        return target
    executable = shutil.which(mvn)
    if executable is None:
        raise JarResolutionError(
            f"Maven ({mvn!r}) is not on PATH; install Maven 3.6+ to resolve the Kafka {kafka_version} jars "
            f"from Maven Central into {target}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="resolve-", dir=target.parent))
    try:
        logger.info("resolving Apache Kafka %s jars from Maven Central into %s", kafka_version, target)
        (work / "pom.xml").write_text(pom, encoding="utf-8")
        await _run_maven(executable, work)
        jars = {path.name: path.stat().st_size for path in (work / "libs").glob("*.jar")}
        if not jars:
            raise JarResolutionError(f"Maven resolved no jars for Kafka {kafka_version} (recipe in {work})")
        (work / "libs" / MARKER_NAME).write_text(render_marker(fingerprint, jars), encoding="utf-8")
        _install(work / "libs", target, fingerprint)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


async def _run_maven(executable: str, work: Path) -> None:
    command = [
        executable,
        "-B",
        "-q",
        "-f",
        str(work / "pom.xml"),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={work / 'libs'}",
        "-DincludeScope=runtime",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=work
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=RESOLVE_TIMEOUT_S)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise JarResolutionError(f"Maven did not finish within {RESOLVE_TIMEOUT_S:.0f} s") from exc
    if process.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").splitlines()[-30:])
        raise JarResolutionError(f"Maven failed with exit code {process.returncode}:\n{tail}")


def _install(resolved: Path, target: Path, fingerprint: str) -> None:
    """Move ``resolved`` to ``target``; a complete ``target`` from a concurrent resolution wins."""
    if target.exists() and not is_complete(target, fingerprint):
        shutil.rmtree(target)
    try:
        os.rename(resolved, target)
    except OSError as exc:
        # Another process renamed its copy into place between our check and our rename.
        if not is_complete(target, fingerprint):
            raise JarResolutionError(f"could not move the resolved jars into {target}: {exc}") from exc
