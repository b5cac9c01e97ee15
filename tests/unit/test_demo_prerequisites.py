"""The demo's prerequisite check: every missing piece is named with its fix, before anything starts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace

import pytest

from worker.dev.demo.prerequisites import MODULES, Probes, check, java_major_version

JAVA_17 = 'openjdk version "17.0.9" 2023-10-17\nOpenJDK Runtime Environment (build 17.0.9+9)'


def _which(present: Collection[str]) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in present else None


GOOD = Probes(
    which=_which({"java", "mvn", "openssl"}),
    java_version_text=lambda _java: JAVA_17,
    module_found=lambda _name: True,
    port_free=lambda _port: True,
    kafka_jars_cached=lambda: False,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (JAVA_17, 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_java_major_version_reads_old_and_new_numbering(text: str, expected: int | None) -> None:
    """``1.8`` is Java 8; from 9 on the first number is the major version."""
    assert expected == java_major_version(text)


def test_a_complete_machine_has_no_problems() -> None:
    """Java 17, Maven, openssl, the extras and free ports: nothing to report."""
    assert [] == check(GOOD, {"--kafka-port": 9092})


def test_missing_java_is_reported_with_how_to_install_it() -> None:
    """No java on PATH."""
    probes = replace(GOOD, which=_which({"mvn", "openssl"}))
    assert ["Java 17+ is not on PATH: install a JDK (e.g. apt-get install default-jdk)"] == check(probes, {})


def test_an_old_java_is_reported_with_its_version() -> None:
    """Java 11 cannot run Kafka 4."""
    probes = replace(GOOD, java_version_text=lambda _java: 'openjdk version "11.0.2"')
    assert ["/usr/bin/java is Java 11; Apache Kafka needs Java 17+"] == check(probes, {})


def test_maven_is_needed_only_while_the_jars_are_not_cached() -> None:
    """Without mvn: a problem on a first run, none once the jars are in the cache."""
    without_mvn = replace(GOOD, which=_which({"java", "openssl"}))
    first_run = check(without_mvn, {})
    cached = check(replace(without_mvn, kafka_jars_cached=lambda: True), {})
    assert ([True], []) == (
        [problem.startswith("Maven (mvn) is not on PATH") for problem in first_run],
        cached,
    )


def test_missing_openssl_and_extras_are_each_named() -> None:
    """The certificate needs openssl; missing modules name their extras once, sorted."""
    probes = replace(GOOD, which=_which({"java", "mvn"}), module_found=lambda _name: False)
    expected = [
        "the openssl command is not on PATH: install it (it makes the demo's https certificate)",
        "the demo,model extra is not installed: pip install -e '.[demo,model]' (make demo does it)",
    ]
    assert expected == check(probes, {})
    assert {"demo", "model"} == set(MODULES.values())


def test_only_fixed_ports_that_are_taken_are_reported() -> None:
    """Port 0 means any free port and is never checked; a taken fixed port names its option."""
    probes = replace(GOOD, port_free=lambda port: port != 9092)
    problems = check(probes, {"--kafka-port": 9092, "--metrics-port": 0, "--emulator-port": 8500})
    assert [
        "port 9092 (--kafka-port) is in use: free it or pass --kafka-port 0 for any free port"
    ] == problems
