"""The wheel ships the labeled sample set, so `evaluate --set .../samples/labels.jsonl` works installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "worker" / "evaluation" / "samples"


def test_the_wheel_holds_every_sample_image_and_the_labels(tmp_path: Path) -> None:
    """Every file of worker/evaluation/samples is in the wheel at the same path."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("worker", "schemas"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(tmp_path),
        ".",
    ]
    built = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300, check=False)
    assert 0 == built.returncode, built.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("moderation_worker-*.whl"))).namelist())
    expected = {path.relative_to(ROOT).as_posix() for path in SAMPLES.iterdir()}
    assert (49, set()) == (len(expected), expected - names)
