"""The container, compose, Kubernetes and AsyncAPI files agree with the code they deploy and describe.

No Docker engine runs here, so these files are proven by reading them: every file, port, variable, probe path,
metric and command they name exists in the code, and the structural promises of docs/deploy.md hold.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client import CollectorRegistry

from worker.cli import cli
from worker.dev.tlsfiles import make_certificate_authority
from worker.observability import ops_server
from worker.observability.metrics import Metrics
from worker.review.settings import ReviewSettings
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
SCHEMAS = ROOT / "schemas"
DEFAULTS = Settings.defaults()
METRICS_PORT = DEFAULTS.metrics_port
PROBE_PATHS = {"liveness": "/healthz", "readiness": "/readyz"}

_ENV_NAME = re.compile(r"\bMODERATION_[A-Z0-9_]+\b")
_METRIC_NAME = re.compile(r"\bmoderation_[a-z0-9_]+\b")


def _deploy_files() -> list[Path]:
    return sorted(path for path in DOCKER.rglob("*") if path.is_file())


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _k8s() -> dict[str, dict[str, Any]]:
    """Every manifest under docker/k8s by kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in by_kind, f"two {document['kind']} manifests"
            by_kind[document["kind"]] = document
    return by_kind


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = _yaml(DOCKER / "compose.yaml")
    return compose


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return dict(pairs)


def _setting_names() -> set[str]:
    return {doc.variable for doc in Settings.documented()}


def _exported_metric_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry, version="test")
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_deploy_files_exist() -> None:
    """The files docs/deploy.md promises are all there."""
    expected = {
        "Dockerfile",
        "compose.yaml",
        "prometheus.yml",
        "emulator.env",
        "azure.env.example",
        "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/moderation.yaml",
        "k8s/namespace.yaml",
        "k8s/configmap.yaml",
        "k8s/secret.yaml",
        "k8s/deployment.yaml",
        "k8s/poddisruptionbudget.yaml",
        "k8s/service.yaml",
        "k8s/servicemonitor.yaml",
        "k8s/scaledobject.yaml",
        "k8s/secure-kafka/deployment-patch.yaml",
        "k8s/secure-kafka/kafka-secrets.yaml",
    }
    assert expected == {str(path.relative_to(DOCKER)) for path in _deploy_files()}


def test_every_environment_variable_named_in_docker_is_a_setting() -> None:
    """A MODERATION_* name the worker does not read would be a setting silently ignored."""
    named = {name for path in _deploy_files() for name in _ENV_NAME.findall(path.read_text())}
    assert named, "the deploy files configure the worker through MODERATION_* variables"
    unknown = named - _setting_names()
    assert set() == unknown


@pytest.mark.parametrize("env_file", ["emulator.env", "azure.env.example"])
def test_compose_worker_environment_parses_into_complete_settings(env_file: str) -> None:
    """The worker's compose environment, with either analyzer env file, is a valid, complete configuration."""
    worker = _compose()["services"]["worker"]
    environ = _env_file(DOCKER / env_file) | {
        name: str(value) for name, value in worker["environment"].items()
    }
    settings = Settings.from_env(environ)
    assert (environ["MODERATION_ANALYZER"], environ["MODERATION_AZURE_ENDPOINT"]) == (
        settings.analyzer,
        settings.azure_endpoint,
    )


def test_kubernetes_configmap_and_secret_parse_into_complete_settings() -> None:
    """What the Deployment's envFrom gives the container is a valid, complete configuration."""
    manifests = _k8s()
    environ = dict(manifests["ConfigMap"]["data"]) | dict(manifests["Secret"]["stringData"])
    settings = Settings.from_env(environ)
    assert DEFAULTS.metrics_port == settings.metrics_port


async def test_the_secure_kafka_patch_reads_the_password_from_a_secret_and_the_ca_from_a_mount(
    tmp_path: Path,
) -> None:
    """docker/k8s/secure-kafka: the patch targets the worker container, takes the password from the
    Secret that kafka-secrets.yaml declares (never a literal), mounts the CA Secret where
    MODERATION_KAFKA_SSL_CA_FILE points; with those in place the environment is a valid SASL_SSL one."""
    secure = K8S / "secure-kafka"
    patch = _yaml(secure / "deployment-patch.yaml")["spec"]["template"]["spec"]
    documents = yaml.safe_load_all((secure / "kafka-secrets.yaml").read_text())
    secrets = {document["metadata"]["name"]: document for document in documents}
    [container] = patch["containers"]
    [mount] = container["volumeMounts"]
    [volume] = patch["volumes"]
    [item] = volume["secret"]["items"]
    env = {entry["name"]: entry for entry in container["env"]}
    reference = env["MODERATION_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    deployment = _k8s()["Deployment"]["spec"]["template"]["spec"]

    assert [container["name"]] == [c["name"] for c in deployment["containers"]]
    assert "value" not in env["MODERATION_KAFKA_SASL_PASSWORD"]
    assert reference["key"] in secrets[reference["name"]]["stringData"]
    assert (mount["name"], True) == (volume["name"], mount["readOnly"])
    assert item["key"] in secrets[volume["secret"]["secretName"]]["stringData"]
    assert f"{mount['mountPath']}/{item['path']}" == env["MODERATION_KAFKA_SSL_CA_FILE"]["value"]

    authority = await make_certificate_authority(tmp_path / "ca")  # what the mount holds in the pod
    manifests = _k8s()
    environ = dict(manifests["ConfigMap"]["data"]) | dict(manifests["Secret"]["stringData"])
    environ |= {name: entry["value"] for name, entry in env.items() if "value" in entry}
    environ |= {
        "MODERATION_KAFKA_SASL_PASSWORD": secrets[reference["name"]]["stringData"][reference["key"]],
        "MODERATION_KAFKA_SSL_CA_FILE": str(authority.cert_file),
    }
    security = Settings.from_env(environ).kafka_security()
    assert ("SASL_SSL", "SCRAM-SHA-512", authority.cert_file) == (
        security.security_protocol,
        security.sasl_mechanism,
        security.ssl_ca_file,
    )


def test_every_file_referenced_from_docker_exists() -> None:
    """COPY sources, compose mounts, env files and the build context point at real paths."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    copied = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    referenced = [ROOT / source for source in copied]
    services = _compose()["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                referenced.append(DOCKER / source)
        if "build" in service:
            referenced.append(DOCKER / service["build"]["context"] / service["build"]["dockerfile"])
    referenced.append(DOCKER / "emulator.env")
    missing = [str(path) for path in referenced if not path.exists()]
    assert missing == []
    assert {"pyproject.toml", "README.md", "worker", "schemas"} <= set(copied)


def test_dockerfile_is_multi_stage_non_root_with_exec_form_entrypoint_and_healthcheck() -> None:
    """Slim base, build and runtime stages, a non-root user, SIGTERM to the worker, /healthz probed."""
    lines = [line.strip() for line in (DOCKER / "Dockerfile").read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert any("python:3.11-slim" in line for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    expected_entrypoint = f'ENTRYPOINT ["{next(iter(scripts))}"]'
    assert expected_entrypoint in lines
    assert 'CMD ["run"]' in lines
    assert "STOPSIGNAL SIGTERM" in lines
    healthcheck = " ".join(
        lines[lines.index(next(line for line in lines if line.startswith("HEALTHCHECK"))) :]
    )
    assert '"/healthz"' in healthcheck.replace("'/healthz'", '"/healthz"')
    assert f"EXPOSE {METRICS_PORT}" in lines


def test_commands_run_by_compose_are_cli_subcommands_with_known_options() -> None:
    """Each container command is a `moderation-worker` subcommand, and each --option is one it parses."""
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if "build" not in service or command is None:
            continue
        words = [word for word in command if not word.startswith("-")]
        target: click.Command = cli
        while isinstance(target, click.Group) and words:
            found = target.get_command(click.Context(target), words.pop(0))
            assert found is not None, f"{name}: {command} is not a subcommand"
            target = found
        assert not isinstance(target, click.Group), f"{name}: {command} names a group, not a command"
        parsed = {option for param in target.params for option in param.opts}
        options = [word for word in command if word.startswith("--")]
        unknown = [option for option in options if option not in parsed]
        assert unknown == [], f"{name}: options not parsed by {target.name}"


def test_compose_has_kraft_kafka_topic_creation_two_workers_and_observability() -> None:
    """The services issue #6 asks for, wired as docs/deploy.md describes."""
    services = _compose()["services"]
    assert {"kafka", "topics", "emulator", "worker", "prometheus", "grafana"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    topics = services["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker = services["worker"]
    expected_replicas = 2
    assert expected_replicas == worker["deploy"]["replicas"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert [str(METRICS_PORT)] == worker["expose"]
    grace_s = int(str(worker["stop_grace_period"]).removesuffix("s"))
    assert grace_s > float(worker["environment"]["MODERATION_DRAIN_TIMEOUT_S"])
    assert grace_s > DEFAULTS.drain_timeout_s
    prometheus_mounts = {volume.split(":")[1] for volume in services["prometheus"]["volumes"]}
    assert "/etc/prometheus/rules/moderation-rules.yml" in prometheus_mounts
    grafana_mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in services["grafana"]["volumes"]}
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana_mounts["../dashboards"] == "/var/lib/grafana/dashboards"


def test_prometheus_scrapes_the_metrics_port_and_loads_the_mounted_rules() -> None:
    """The scrape job targets the worker's metrics port; the rule file path is the one compose mounts."""
    config = _yaml(DOCKER / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "moderation-worker"
    assert job["dns_sd_configs"][0]["port"] == METRICS_PORT
    assert config["rule_files"] == ["/etc/prometheus/rules/moderation-rules.yml"]
    provider = _yaml(DOCKER / "grafana/provisioning/dashboards/moderation.yaml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def _compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


def _compose_structure_problems(compose: dict[str, Any]) -> list[str]:
    """What `docker compose config` would refuse, checked by hand: keys, references between services."""
    problems = [f"unknown top-level key {key}" for key in compose if key not in _COMPOSE_TOP_LEVEL]
    services: dict[str, Any] = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        depends_on = service.get("depends_on", {})
        problems += [f"{name}: depends on unknown {other}" for other in depends_on if other not in services]
        for condition in depends_on.values() if isinstance(depends_on, dict) else []:
            if condition["condition"] not in _COMPOSE_CONDITIONS:
                problems.append(f"{name}: bad condition {condition}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")) and source not in named_volumes:
                problems.append(f"{name}: undeclared volume {source}")
        for key in ("command", "entrypoint"):
            if key in service and not isinstance(service[key], list):
                problems.append(f"{name}: {key} must be exec form (a list) so signals reach the process")
    return problems


_COMPOSE_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
_COMPOSE_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def test_compose_file_is_valid() -> None:
    """`docker compose config` accepts the file when the plugin is installed (it needs no daemon); without
    the plugin the same promises are checked by hand: known keys, existing services and volumes, exec form."""
    compose = {key: value for key, value in _compose().items() if not key.startswith("x-")}
    assert _compose_structure_problems(compose) == []
    if _compose_plugin_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_deployment_probes_ports_grace_period_and_security_context() -> None:
    """Liveness on /healthz, readiness on /readyz, grace above the drain deadline, non-root, read-only."""
    manifests = _k8s()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    assert PROBE_PATHS["liveness"] == container["livenessProbe"]["httpGet"]["path"]
    assert PROBE_PATHS["readiness"] == container["readinessProbe"]["httpGet"]["path"]
    drain_s = float(manifests["ConfigMap"]["data"]["MODERATION_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain_s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    env_sources = {next(iter(source.values()))["name"] for source in container["envFrom"]}
    expected_sources = {manifests["ConfigMap"]["metadata"]["name"], manifests["Secret"]["metadata"]["name"]}
    assert expected_sources == env_sources


def test_probe_paths_are_served_by_the_ops_server() -> None:
    """The paths the container and the pod probe are routes of worker.observability.ops_server."""
    source = Path(ops_server.__file__).read_text()
    for path in PROBE_PATHS.values():
        assert f'"{path}"' in source
    assert '"/metrics"' in source


def test_service_monitor_pdb_and_scaled_object_point_at_the_deployment() -> None:
    """Selectors match the pod labels, ports match by name, KEDA scales this Deployment on its own group."""
    manifests = _k8s()
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget",):
        assert manifests[kind]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = manifests["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [port["port"] for port in service["spec"]["ports"]] == [METRICS_PORT]
    monitor = manifests["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {port["name"] for port in service["spec"]["ports"]} >= {
        endpoint["port"] for endpoint in monitor["endpoints"]
    }
    assert [endpoint["path"] for endpoint in monitor["endpoints"]] == ["/metrics"]
    scaled = manifests["ScaledObject"]["spec"]
    assert manifests["Deployment"]["metadata"]["name"] == scaled["scaleTargetRef"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    config = manifests["ConfigMap"]["data"]
    assert (config["MODERATION_INPUT_TOPIC"], config["MODERATION_GROUP_ID"]) == (
        trigger["metadata"]["topic"],
        trigger["metadata"]["consumerGroup"],
    )
    assert config["MODERATION_BOOTSTRAP_SERVERS"] == trigger["metadata"]["bootstrapServers"]


def test_keda_never_scales_past_the_input_partition_count() -> None:
    """A replica beyond the partition count would idle: maxReplicaCount is the created partition count."""
    scaled = _k8s()["ScaledObject"]["spec"]
    submitted = _yaml(SCHEMAS / "asyncapi.yaml")["channels"]["submitted"]["bindings"]["kafka"]
    assert DEFAULTS.topic_partitions == scaled["maxReplicaCount"]
    assert DEFAULTS.topic_partitions == submitted["partitions"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


def test_metric_names_in_deploy_files_and_docs_are_exported() -> None:
    """Every moderation_* metric the deploy files or docs/deploy.md name is one the metrics module exports."""
    texts = [path.read_text() for path in _deploy_files()] + [(ROOT / "docs" / "deploy.md").read_text()]
    named = {name for text in texts for name in _METRIC_NAME.findall(text)}
    named -= {"moderation_worker"}  # the distribution name, e.g. moderation_worker-*.whl
    assert named, "docs/deploy.md explains scaling with the worker's metrics"
    assert set() == named - _exported_metric_names()


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve_pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_document_has_the_3_0_structure() -> None:
    """AsyncAPI 3.0.0 with info, channels keyed by address, operations that send or receive on a channel."""
    document = _yaml(SCHEMAS / "asyncapi.yaml")
    assert document["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(document["info"])
    for channel in document["channels"].values():
        assert isinstance(channel["address"], str)
        assert channel["messages"]
    for operation in document["operations"].values():
        assert operation["action"] in {"send", "receive"}
        assert operation["channel"]["$ref"].startswith("#/channels/")
    for message in document["components"]["messages"].values():
        assert message["payload"]["schemaFormat"].startswith("application/schema+json")


def test_asyncapi_describes_every_topic_and_the_worker_operations() -> None:
    """One channel per default topic; the worker receives submissions and sends results and dead letters, the
    review console sends review decisions."""
    document = _yaml(SCHEMAS / "asyncapi.yaml")
    review_decisions = ReviewSettings.model_fields["decisions_topic"].default
    expected_topics = {
        review_decisions,
        DEFAULTS.input_topic,
        DEFAULTS.approved_topic,
        DEFAULTS.review_topic,
        DEFAULTS.rejected_topic,
        DEFAULTS.dead_letter_topic,
        DEFAULTS.control_topic,
    }
    assert expected_topics == {channel["address"] for channel in document["channels"].values()}
    by_action: dict[str, set[str]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        channel = _resolve_pointer(document, operation["channel"]["$ref"])
        by_action[operation["action"]].add(channel["address"])
    expected_sent = {
        review_decisions,
        DEFAULTS.approved_topic,
        DEFAULTS.review_topic,
        DEFAULTS.rejected_topic,
        DEFAULTS.dead_letter_topic,
    }
    assert expected_sent == by_action["send"]
    assert {DEFAULTS.input_topic, DEFAULTS.control_topic} == by_action["receive"]


def test_asyncapi_refs_resolve_and_reference_every_schema_in_schemas() -> None:
    """Internal refs point at existing nodes; file refs are exactly the JSON Schemas in schemas/."""
    document = _yaml(SCHEMAS / "asyncapi.yaml")
    refs = list(_refs(document))
    internal = [ref for ref in refs if ref.startswith("#/")]
    external = {ref for ref in refs if not ref.startswith("#")}
    for ref in internal:
        assert _resolve_pointer(document, ref) is not None
    assert all(ref.startswith("./") for ref in external)
    assert all((SCHEMAS / ref).is_file() for ref in external)
    expected = {path.name for path in SCHEMAS.glob("*.json")}
    assert expected == {Path(ref).name for ref in external}
