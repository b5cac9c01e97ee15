"""The embedded broker's pure parts: properties, ports, cluster ids, the jar cache and its marker."""

from __future__ import annotations

import base64
import hashlib
import socket
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.dev.broker import (
    BrokerError,
    BrokerUnavailableError,
    EmbeddedKafka,
    choose_free_ports,
    default_cache_root,
    port_is_free,
    tail_lines,
)
from worker.dev.broker_config import (
    BrokerPorts,
    BrokerTls,
    java_command,
    listener_properties,
    new_cluster_id,
    plan_ports,
    render_server_properties,
)
from worker.dev.broker_security import ScramUser, scram_credential
from worker.dev.maven import (
    MARKER_NAME,
    JarResolutionError,
    is_complete,
    libs_dir,
    recipe_fingerprint,
    render_marker,
    render_pom,
    resolve_kafka_jars,
)


def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_server_properties_describe_one_kraft_node_on_the_chosen_loopback_ports() -> None:
    """The node is broker and controller, listens on both ports on 127.0.0.1 and keeps logs in log_dir."""
    properties = parse_properties(render_server_properties(BrokerPorts(19092, 19093), Path("/data/kraft")))

    expected = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@127.0.0.1:19093",
        "listeners": "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:19092",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": "/data/kraft",
    }
    assert expected == {key: properties.get(key) for key in expected}


def test_server_properties_let_every_internal_topic_live_on_a_single_replica() -> None:
    """Offsets, transactions and share state need one replica, or groups and transactions never work."""
    properties = parse_properties(render_server_properties(BrokerPorts(1, 2), Path("/d")))

    single_replica_keys = [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ]
    assert ["1"] * len(single_replica_keys) == [properties.get(key) for key in single_replica_keys]


def test_plan_ports_replaces_only_the_zero_ports_with_free_ones() -> None:
    """A fixed port is kept; each 0 takes the next free port in order."""
    expected = [BrokerPorts(5001, 5002), BrokerPorts(9092, 5001), BrokerPorts(5001, 9093)]

    actual = [
        plan_ports(0, 0, iter([5001, 5002])),
        plan_ports(9092, 0, iter([5001])),
        plan_ports(0, 9093, iter([5001])),
    ]

    assert expected == actual


def test_plan_ports_rejects_one_port_for_both_listeners() -> None:
    """Clients and the controller cannot share a port."""
    with pytest.raises(ValueError, match="must differ"):
        plan_ports(9092, 9092, iter([]))


def test_chosen_free_ports_are_distinct_and_bindable() -> None:
    """Ports chosen together never repeat and nothing listens on them."""
    ports = choose_free_ports(4)

    assert len(set(ports)) == len(ports)
    assert all(port_is_free(port) for port in ports)


def test_a_port_with_a_listener_is_not_free() -> None:
    """port_is_free sees a listening socket, so a busy port fails before the JVM starts."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])

        assert not port_is_free(port)


def test_cluster_id_is_16_bytes_in_unpadded_url_safe_base64() -> None:
    """Kafka's Uuid text form: 22 characters."""
    expected = "AAECAwQFBgcICQoLDA0ODw"

    assert expected == new_cluster_id(lambda size: bytes(range(size)))


def test_cluster_id_never_starts_with_a_dash() -> None:
    """An id starting with '-' would be read as an option by the storage tool, so another is drawn."""
    draws = iter([b"\xf8" + bytes(15), bytes(16)])  # 0xf8 encodes to a leading '-'
    expected = "AAAAAAAAAAAAAAAAAAAAAA"

    assert expected == new_cluster_id(lambda _size: next(draws))


def test_java_command_bounds_the_heap_and_puts_every_jar_on_the_class_path() -> None:
    """The heap limit and the jar wildcard come before the main class and its arguments."""
    command = java_command("java", Path("/cache/libs"), "kafka.Kafka", ["server.properties"], heap_max_mb=256)

    expected_head, expected_tail = (
        ["java", "-Xmx256m"],
        ["-cp", "/cache/libs/*", "kafka.Kafka", "server.properties"],
    )
    assert expected_head == command[:2]
    assert expected_tail == command[-4:]


def test_pom_depends_on_the_requested_kafka_and_on_log4j2_through_slf4j_2() -> None:
    """The class path is kafka_2.13 of the requested version plus a logging binding that writes a log."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(render_pom("4.2.0"))

    artifacts = {
        dependency.findtext("m:artifactId", namespaces=namespace): dependency.findtext(
            "m:version", namespaces=namespace
        )
        for dependency in root.iterfind("m:dependencies/m:dependency", namespace)
    }
    expected_version, expected_artifacts = (
        "4.2.0",
        {"kafka_2.13", "slf4j-api", "log4j-slf4j2-impl", "log4j-core"},
    )
    assert expected_version == artifacts["kafka_2.13"]
    assert expected_artifacts == set(artifacts)
    assert str(artifacts["slf4j-api"]).startswith("2.")


def test_each_kafka_version_has_its_own_recipe_and_folder() -> None:
    """Changing the version changes the fingerprint, so a cache of another version is never taken."""
    assert recipe_fingerprint(render_pom("4.1.1")) != recipe_fingerprint(render_pom("4.2.0"))
    assert Path("/c/kafka/4.2.0/libs") == libs_dir(Path("/c"), "4.2.0")


def write_jars(libs: Path, jars: dict[str, bytes]) -> None:
    libs.mkdir(parents=True)
    for name, content in jars.items():
        (libs / name).write_bytes(content)


def test_marker_with_every_listed_jar_at_its_size_means_complete(tmp_path: Path) -> None:
    """The cache is complete when the marker's recipe matches and every jar is present at its size."""
    libs = tmp_path / "libs"
    write_jars(libs, {"a.jar": b"aa", "b.jar": b"bbb"})
    (libs / MARKER_NAME).write_text(render_marker("recipe-1", {"a.jar": 2, "b.jar": 3}))

    assert is_complete(libs, "recipe-1")


@pytest.mark.parametrize(
    ("marker", "fingerprint"),
    [
        (render_marker("recipe-1", {"a.jar": 2, "missing.jar": 1}), "recipe-1"),
        (render_marker("recipe-1", {"a.jar": 5}), "recipe-1"),
        (render_marker("recipe-0", {"a.jar": 2}), "recipe-1"),
        (render_marker("recipe-1", {}), "recipe-1"),
        ("{not json", "recipe-1"),
        (None, "recipe-1"),
    ],
    ids=["jar-missing", "size-differs", "other-recipe", "no-jars", "garbled", "no-marker"],
)
def test_cache_is_incomplete_unless_the_marker_proves_it(
    tmp_path: Path, marker: str | None, fingerprint: str
) -> None:
    """A missing or truncated jar, another recipe, an empty list or a bad marker force a new resolution."""
    libs = tmp_path / "libs"
    write_jars(libs, {"a.jar": b"aa"})
    if marker is not None:
        (libs / MARKER_NAME).write_text(marker)

    assert not is_complete(libs, fingerprint)


FAKE_MVN = """#!/bin/sh
# Stands in for Maven: counts its runs and "resolves" two jars into -DoutputDirectory.
echo run >> "{runs}"
for argument in "$@"; do
    case "$argument" in -DoutputDirectory=*) out="${{argument#-DoutputDirectory=}}";; esac
done
{body}
"""


def fake_mvn(tmp_path: Path, body: str) -> tuple[Path, Path]:
    runs = tmp_path / "mvn-runs"
    script = tmp_path / "fake-mvn"
    script.write_text(FAKE_MVN.format(runs=runs, body=body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, runs


async def test_second_resolution_uses_the_cache_without_running_maven(tmp_path: Path) -> None:
    """Maven runs once; afterwards the marker alone answers, so a start needs neither Maven nor network."""
    mvn, runs = fake_mvn(
        tmp_path, 'mkdir -p "$out" && printf kafka > "$out/kafka.jar" && printf s > "$out/s.jar"'
    )
    cache = tmp_path / "cache"

    first = await resolve_kafka_jars("4.2.0", cache, mvn=str(mvn))
    second = await resolve_kafka_jars("4.2.0", cache, mvn=str(tmp_path / "no-such-mvn"))

    expected_jars, expected_runs = ["kafka.jar", "s.jar"], ["run"]
    assert libs_dir(cache, "4.2.0") == first == second
    assert expected_jars == sorted(path.name for path in second.glob("*.jar"))
    assert expected_runs == runs.read_text().split()


async def test_failed_resolution_reports_maven_output_and_leaves_no_cache(tmp_path: Path) -> None:
    """A Maven failure raises with Maven's own words and leaves nothing that could pass for a cache."""
    mvn, _ = fake_mvn(tmp_path, 'echo "Could not resolve org.apache.kafka:kafka_2.13:9.9.9"; exit 1')
    cache = tmp_path / "cache"

    with pytest.raises(JarResolutionError, match=r"Could not resolve org\.apache\.kafka:kafka_2\.13:9\.9\.9"):
        await resolve_kafka_jars("9.9.9", cache, mvn=str(mvn))

    expected_leftovers: list[Path] = []
    assert expected_leftovers == list((cache / "kafka" / "9.9.9").iterdir())


async def test_missing_maven_is_reported_by_name(tmp_path: Path) -> None:
    """Without Maven on PATH and without a cache, resolution says that Maven is missing."""
    with pytest.raises(JarResolutionError, match=r"Maven .* is not on PATH"):
        await resolve_kafka_jars("4.2.0", tmp_path, mvn="no-such-mvn")


@pytest.mark.parametrize(
    "make_broker",
    [
        lambda tmp: EmbeddedKafka(tmp / "d", java=str(tmp / "no-such-java"), cache_dir=tmp / "cache"),
        lambda tmp: EmbeddedKafka(tmp / "d", mvn=str(tmp / "no-such-mvn"), cache_dir=tmp / "cache"),
    ],
    ids=["no-java", "no-maven"],
)
async def test_start_without_java_or_jars_raises_broker_unavailable(
    tmp_path: Path, make_broker: Callable[[Path], EmbeddedKafka]
) -> None:
    """A machine without Java, or without Maven and a cache, gets BrokerUnavailableError and no process."""
    broker = make_broker(tmp_path)

    with pytest.raises(BrokerUnavailableError):
        await broker.start()

    assert not broker.running


def test_bootstrap_servers_are_unknown_before_the_first_start(tmp_path: Path) -> None:
    """With port 0 the address exists only once start() has chosen the ports."""
    with pytest.raises(BrokerError, match="start"):
        _ = EmbeddedKafka(tmp_path).bootstrap_servers


def test_cache_root_follows_the_environment_else_the_repository(tmp_path: Path) -> None:
    """MODERATION_CACHE_DIR wins; otherwise jars go to .cache beside pyproject.toml."""
    assert tmp_path == default_cache_root({"MODERATION_CACHE_DIR": str(tmp_path)})
    repository_cache = default_cache_root({})
    assert repository_cache.name == ".cache"
    assert (repository_cache.parent / "pyproject.toml").is_file()


def test_tail_lines_returns_the_last_lines_or_says_the_file_is_missing(tmp_path: Path) -> None:
    """The error message of a failed start shows the end of the log, and says so when there is no log."""
    log = tmp_path / "broker.log"
    log.write_text("".join(f"line {index}\n" for index in range(100)))

    expected = "line 97\nline 98\nline 99"
    assert expected == tail_lines(log, count=3)
    assert f"({tmp_path / 'absent.log'} does not exist)" == tail_lines(tmp_path / "absent.log")


def test_a_secure_broker_adds_sasl_ssl_and_mutual_tls_listeners_on_free_ports(tmp_path: Path) -> None:
    """``secure``: four distinct ports; SASL_SSL takes SCRAM-SHA-512 only, MTLS requires client certificates,
    controller and inter-broker traffic stay PLAINTEXT, the PEM files are the key and trust stores."""
    ports = plan_ports(9092, 0, iter([9093, 9094, 9095]), secure=True)
    tls = BrokerTls(tmp_path / "keystore.pem", tmp_path / "ca.pem")
    properties = listener_properties(ports, tls)
    assert (9092, 9093, 9094, 9095) == (ports.client, ports.controller, ports.sasl_ssl, ports.mtls)
    assert {
        "advertised.listeners": "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094,MTLS://127.0.0.1:9095",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT"
        ),
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.mtls.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tmp_path / "keystore.pem"),
        "ssl.truststore.location": str(tmp_path / "ca.pem"),
    }.items() <= properties.items()


def test_the_scram_credential_is_salted_so_the_password_is_not_on_the_command_line() -> None:
    """``--add-scram`` gets RFC 5802's salted password (PBKDF2-HMAC-SHA-512) and the salt, in base64."""
    salt = bytes(range(16))
    salted = base64.b64encode(hashlib.pbkdf2_hmac("sha512", b"pw-123", salt, 4096)).decode()
    argument = scram_credential(ScramUser("alice", "pw-123"), salt=salt)
    expected = f'SCRAM-SHA-512=[name=alice,iterations=4096,salt="{base64.b64encode(salt).decode()}",'
    assert expected + f'saltedpassword="{salted}"]' == argument
    assert "pw-123" not in argument
