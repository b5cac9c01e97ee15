"""The wheel stands alone: it carries every module, the JSON Schemas and the bundled policies, and an
installed copy validates messages without the checkout.

The wheel is built (``pip wheel --no-deps``, as docker/Dockerfile does) from a copy of exactly what the
Dockerfile's build stage copies, then unpacked into a fresh folder and imported from there by a separate
interpreter that can still find the third-party dependencies in this virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "schemas" / "examples" / "image-submitted.v1.json"

# Run by the unpacked copy: every path it reports must lie under the folder given as argv[1].
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
from worker.contracts import Contracts, InvalidSubmission, default_schemas_dir
from worker.policy_file import load_default_policy

contracts = Contracts.load()
accepted = contracts.decode_submission(sys.stdin.buffer.read())
try:
    contracts.decode_submission(b'{"id": "img-1"}')
    refused = None
except InvalidSubmission as exc:
    refused = str(exc.reason)
print(json.dumps({
    "package": worker.__file__,
    "schemas": str(default_schemas_dir()),
    "accepted": accepted.id,
    "refused": refused,
    "policy": load_default_policy(contracts=contracts).mode,
}))
"""


def _build_stage_sources() -> list[str]:
    """The repository paths the Dockerfile's build stage copies (``COPY src... dest``, not ``--from``)."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    build_stage = dockerfile.split(" AS runtime")[0]
    return [
        source
        for line in build_stage.splitlines()
        if line.startswith("COPY") and "--from=" not in line
        for source in line.split()[1:-1]
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the Dockerfile's build context, so the checkout is not written to."""
    source = tmp_path_factory.mktemp("source")
    for name in _build_stage_sources():
        copy = ["cp", "-R", str(ROOT / name), str(source / name)]
        subprocess.run(copy, check=True, timeout=60)
    output = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(output), "."]
    built = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300, check=False)
    assert 0 == built.returncode, built.stderr
    return next(output.glob("moderation_worker-*.whl"))


def test_the_wheel_holds_every_module_schema_and_bundled_policy_of_the_checkout(wheel: Path) -> None:
    """Nothing under worker/ is left behind (the package list in pyproject.toml is complete), and the
    schemas are the top-level schemas/ folder mapped to ``worker/schemas/``."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "worker").rglob("*")
        if path.suffix in {".py", ".json", ".typed"} and "__pycache__" not in path.parts
    }
    expected |= {f"worker/schemas/{path.name}" for path in (ROOT / "schemas").glob("*.json")}

    assert set() == expected - names


def test_an_unpacked_wheel_validates_an_example_with_its_own_schemas(wheel: Path, tmp_path: Path) -> None:
    """The example submission is accepted and a document without ``image`` is refused as schema_invalid,
    by code and schemas imported from the unpacked wheel, never from the checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)

    probe = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(site)],
        input=EXAMPLE.read_bytes(),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert 0 == probe.returncode, probe.stderr.decode()
    report = json.loads(probe.stdout)
    expected = {
        "package": str(site / "worker" / "__init__.py"),
        "schemas": str(site / "worker" / "schemas"),
        "accepted": json.loads(EXAMPLE.read_bytes())["id"],
        "refused": "schema_invalid",
        "policy": "blocklist",
    }
    assert expected == report
