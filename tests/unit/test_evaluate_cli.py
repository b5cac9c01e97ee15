"""The `evaluate` command line: its options, its documented exit code 6, and bad input as exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import main
from worker.cli.base import EXIT_TARGETS_MISSED, EXIT_USAGE

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_evaluate_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate --help` exits 0 and documents each option of docs/evaluate.md."""
    code = main(["evaluate", "--help"])
    out = capsys.readouterr().out
    options = [
        "--set", "--policy", "--analyzer", "--endpoint", "--cache-dir", "--report",
        "--target-reject-precision", "--target-approve-miss-rate", "--suggest-policy", "--quota-per-s",
    ]  # fmt: skip
    assert (0, []) == (code, [option for option in options if option not in out])


def test_exit_code_6_is_in_the_documented_table() -> None:
    """docs/configuration.md has a row for code 6 naming the evaluate command."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| {EXIT_TARGETS_MISSED} |")]
    assert (1, True) == (len(rows), rows[0].endswith("| `evaluate` |"))


def test_a_bad_labeled_set_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row with an unknown label stops before any analyzer is built: exit 2, one line with file:line."""
    labels = tmp_path / "set.csv"
    labels.write_text("image,expected\na.jpg,maybe\n")
    code = main(["evaluate", "--set", str(labels), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert (EXIT_USAGE, True) == (code, f"{labels}:2: expected 'maybe'" in err)


def test_azure_without_a_key_exits_2_naming_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--analyzer azure` with no MODERATION_AZURE_KEY: exit 2, the message names the variable."""
    monkeypatch.delenv("MODERATION_AZURE_KEY", raising=False)
    labels = tmp_path / "set.jsonl"
    labels.write_text('{"image": "https://img.example/a.jpg", "expected": "approved"}\n')
    argv = ["evaluate", "--set", str(labels), "--analyzer", "azure", "--endpoint", "https://x.example/"]
    code = main([*argv, "--cache-dir", str(tmp_path / "cache")])
    assert (EXIT_USAGE, True) == (code, "MODERATION_AZURE_KEY" in capsys.readouterr().err)
