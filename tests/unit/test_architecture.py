"""The layout rules, read from the source: imports point down, the domain is pure, the docs match the tree.

Layers (docs/architecture.md): 0 the domain at the top level of ``worker/``, 1 ``moderation``, 2 the
capability subpackages, 3 ``runner`` and ``assembly``, 4 ``worker/dev``, 5 the command line. A module may
import its own layer or below.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker"
DOMAIN = frozenset(
    {
        "worker",
        "worker.domain",
        "worker.errors",
        "worker.clock",
        "worker.contracts",
        "worker.records",
        "worker.policy",
        "worker.policy_file",
        "worker.settings",
        "worker.setting_values",
        "worker.kafka_settings",
        "worker.redact",
        "worker.urlguard",
        "worker.sampling",
        "worker.intervention",
        "worker.policies",
    }
)
CAPABILITIES = (
    "worker.kafka",
    "worker.analysis",
    "worker.observability",
    "worker.content",
    "worker.evaluation",
    "worker.review",
)
COMMAND_LINE = ("worker.cli", "worker.__main__")
#: what the pure domain must never import
IO_LIBRARIES = ("aiokafka", "aiohttp", "azure")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield _module_name(path), path


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _own(name: str) -> str | None:
    """The worker module or package ``name`` refers to, or None for a third-party import."""
    if name != "worker" and not name.startswith("worker."):
        return None
    while name not in KNOWN and "." in name:  # ``from worker.x import Name`` also yields worker.x.Name
        name = name.rsplit(".", 1)[0]
    return name


KNOWN = frozenset(name for name, _ in _modules())


def layer(module: str) -> int:
    """The layer of a worker module (0 = the pure domain)."""
    if module in DOMAIN or module.startswith("worker.policies"):
        return 0
    if module == "worker.moderation":
        return 1
    if module.startswith(CAPABILITIES):
        return 2
    if module in ("worker.runner", "worker.assembly"):
        return 3
    if module.startswith("worker.dev"):
        return 4
    if module.startswith(COMMAND_LINE):
        return 5
    raise AssertionError(f"{module} belongs to no layer: place it in docs/architecture.md and in this test")


def _capability(module: str) -> str | None:
    return next((package for package in CAPABILITIES if module.startswith(package)), None)


@pytest.mark.parametrize(("module", "path"), list(_modules()), ids=[name for name, _ in _modules()])
def test_imports_point_down(module: str, path: Path) -> None:
    """No module imports a module of a higher layer."""
    upward = sorted(
        imported
        for name in _imports(path)
        if (imported := _own(name)) is not None and layer(imported) > layer(module)
    )
    assert [] == upward


@pytest.mark.parametrize("module", sorted(name for name in KNOWN if layer(name) == 0))
def test_the_domain_imports_no_kafka_http_or_azure_code(module: str) -> None:
    """The domain is pure: aiokafka, aiohttp and the Azure SDK appear only from layer 1 up."""
    path = next(path for name, path in _modules() if name == module)
    foreign = sorted(name for name in _imports(path) if name.split(".")[0] in IO_LIBRARIES)
    assert [] == foreign


def test_capability_subpackages_do_not_import_each_other_in_a_circle() -> None:
    """Between the capability subpackages the imports form no cycle."""
    edges: dict[str, set[str]] = {package: set() for package in CAPABILITIES}
    for module, path in _modules():
        source = _capability(module)
        if source is None:
            continue
        for name in _imports(path):
            target = _capability(_own(name) or "")
            if target is not None and target != source:
                edges[source].add(target)
    for package in CAPABILITIES:
        reachable, frontier = set(), set(edges[package])
        while frontier:
            reachable |= frontier
            frontier = {nxt for node in frontier for nxt in edges[node]} - reachable
        assert package not in reachable, f"{package} reaches itself through {sorted(edges[package])}"


_MODULE_PATH = re.compile(r"`(worker/[\w/]+\.py)`")


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md"])
def test_every_module_the_docs_name_exists(document: str) -> None:
    """README's "How it works" and docs/architecture.md name only modules that exist."""
    text = (ROOT / document).read_text()
    missing = sorted({path for path in _MODULE_PATH.findall(text) if not (ROOT / path).is_file()})
    assert [] == missing


def test_architecture_describes_every_subpackage_and_module() -> None:
    """docs/architecture.md names every subpackage and every module of the production path."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    unnamed = sorted(
        name
        for name, path in _modules()
        if layer(name) not in (4, 5) and path.name != "__init__.py" and f"{path.stem}.py" not in text
    )
    assert [] == unnamed


def test_no_module_is_over_400_lines() -> None:
    """One concept per module: none of the package's modules grows past 400 lines."""
    long = sorted(
        (name, lines) for name, path in _modules() if (lines := len(path.read_text().splitlines())) > 400
    )
    assert [] == long
