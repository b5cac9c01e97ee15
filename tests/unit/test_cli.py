"""The command line: help for every command, the version, `config`, and exit codes with one clear message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from worker import __version__
from worker.cli import main
from worker.settings import Settings

COMMANDS = {
    "run": "Run the worker until SIGTERM or SIGINT.",
    "config": "Print the effective configuration, secrets masked.",
    "topics create": "Create the worker's topics that are missing (idempotent).",
    "hold": "Turn the reviewers' hold on or off (while on, approvals go to needs-review).",
    "pause": "Stop intake on every replica (incidents): in-flight records finish, nothing new is consumed.",
    "resume": "Restart intake on every replica after `pause`.",
    "policy apply": (
        "Validate a policy file as the worker does at start, then switch every replica to it (within 2 s)."
    ),
    "policy rollback": (
        "Return every replica to the policy the current one replaced (their own files if it replaced those)."
    ),
    "policy status": (
        "Show the applied policy and what each replica runs (its own report on the control topic)."
    ),
    "review": (
        "Serve the review console over the needs-review, audit and escalation topics until SIGTERM or SIGINT."
    ),
    "evaluate": (
        "Measure a policy on labeled images: confusion matrix, error rates, sweeps, suggested thresholds."
    ),
    "calibrate": (
        "Measure how often reviewers overturned the machine, per rule, tag and band; propose threshold moves."
    ),
    "replay": "Re-decide the kept analyses under a new policy and report what would change.",
    "bank add": "Add IMAGE (a file, or an https URL fetched behind the SSRF guard) to a bank.",
    "demo": "Run the whole pipeline on this machine with sample images, then stop.",
    "dev broker": "Run a single-node Apache Kafka (KRaft) until SIGTERM or Ctrl-C.",
    "dev emulator": "Serve the Image Analysis 4.0 API from fixtures until SIGTERM or Ctrl-C.",
}
COMPLETE = {"MODERATION_AZURE_ENDPOINT": "https://res.example", "MODERATION_AZURE_KEY": "hunter2"}


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal wide enough that click puts each command's description on its row."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MODERATION_* variable from the machine running the tests."""
    for name in [name for name in os.environ if name.upper().startswith("MODERATION_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _command_rows(help_text: str) -> dict[str, str]:
    """The rows under ``Commands:``, name to description, a description wrapped onto more lines joined."""
    rows: dict[str, str] = {}
    name = ""
    for line in help_text.split("Commands:\n", 1)[1].splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # a new row: name, 2+ spaces, description
            name, _, summary = line.strip().partition("  ")
            rows[name] = summary.strip()
        elif line.strip():
            rows[name] += " " + line.strip()
    return rows


def test_help_lists_every_command_with_its_one_line_description(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`moderation-worker --help` exits 0 with one row per command: its full name and first docstring line."""
    code, out, _ = _run(["--help"], capsys)
    rows = _command_rows(out)
    missing = [name for name, summary in COMMANDS.items() if rows.get(name) != summary]
    assert (0, []) == (code, missing)


def test_help_lists_no_command_this_specification_leaves_out(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row under `Commands:` is a command named above, so a new command cannot go unspecified."""
    _, out, _ = _run(["--help"], capsys)
    assert sorted(COMMANDS) == sorted(_command_rows(out))


@pytest.mark.parametrize(
    "words",
    [
        ["run"],
        ["config"],
        ["topics"],
        ["topics", "create"],
        ["hold"],
        ["pause"],
        ["resume"],
        ["policy"],
        ["policy", "apply"],
        ["policy", "rollback"],
        ["policy", "status"],
        ["review"],
        ["evaluate"],
        ["calibrate"],
        ["replay"],
        ["bank"],
        ["bank", "add"],
        ["demo"],
        ["dev"],
        ["dev", "broker"],
        ["dev", "emulator"],
    ],
)
def test_every_command_and_group_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` on each command prints its usage line and exits 0 without running it."""
    code, out, _ = _run([*words, "--help"], capsys)
    assert (0, True) == (code, out.startswith(f"Usage: moderation-worker {' '.join(words)} "))


def test_run_help_lists_every_setting_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` shows each MODERATION_* variable with its default, generated from the settings model."""
    code, out, _ = _run(["run", "--help"], capsys)
    lines = {line.strip() for line in out.splitlines()}
    missing = [
        doc.variable
        for doc in Settings.documented()
        if f"{doc.variable}  [default: {doc.default or '-'}]" not in lines
    ]
    assert (0, []) == (code, missing)


def test_subcommand_options_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    """The options of every command that takes any are in its help."""
    expected = {
        ("topics", "create"): ["--bootstrap-servers", "--partitions", "--replication"],
        ("hold",): ["--reason", "--by", "{on|off}"],
        ("pause",): ["--reason", "--by"],
        ("resume",): ["--reason", "--by"],
        ("policy", "apply"): ["--reason", "--by", "FILE"],
        ("policy", "rollback"): ["--reason", "--by"],
        ("policy", "status"): ["--format"],
        ("review",): ["--create-topics"],
        ("evaluate",): ["--set", "--policy", "--analyzer", "--endpoint", "--cache-dir", "--report",
                        "--target-reject-precision", "--target-approve-miss-rate", "--suggest-policy",
                        "--quota-per-s"],
        ("calibrate",): ["--file", "--topic", "--policy", "--band-width", "--min-evidence",
                         "--target-precision", "--json"],
        ("replay",): ["--policy", "--since", "--until", "--examples", "--topic", "--json"],
        ("bank", "add"): ["--bank", "--action", "--pdq-threshold", "IMAGE"],
        ("dev", "broker"): ["--data-dir", "--port", "--version"],
        ("dev", "emulator"): ["--host", "--port", "--key", "--fixtures", "--latency-ms", "--rate-limit",
                              "--rate-window-s", "--route-prefix", "--model", "--fetch-timeout-s"],
        ("demo",): ["--kafka-port", "--emulator-port", "--samples-port", "--metrics-port", "--work-dir",
                    "--timeout-s", "--repeat"],
    }  # fmt: skip
    missing = {}
    for words, options in expected.items():
        _, out, _ = _run([*words, "--help"], capsys)
        missing[words] = [option for option in options if option not in out]
    assert {words: [] for words in expected} == missing


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the program name and version and exits 0."""
    assert (0, f"moderation-worker {__version__}\n", "") == _run(["--version"], capsys)


def test_config_prints_the_effective_settings_with_the_key_masked(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config` prints one KEY=value line per setting, environment over defaults; the key shows as ***."""
    for name, value in (COMPLETE | {"MODERATION_GROUP_ID": "blue"}).items():
        clean_env.setenv(name, value)
    code, out, _ = _run(["config"], capsys)
    lines = out.splitlines()
    assert (0, len(Settings.documented())) == (code, len(lines))
    assert {"MODERATION_AZURE_KEY=***", "MODERATION_GROUP_ID=blue", "MODERATION_MAX_IN_FLIGHT=64"} <= set(
        lines
    )
    assert "hunter2" not in out


def test_config_as_json_masks_the_key(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config --format json` prints one object keyed by variable, typed values, the key as ***."""
    for name, value in COMPLETE.items():
        clean_env.setenv(name, value)
    code, out, _ = _run(["config", "--format", "json"], capsys)
    document = json.loads(out)
    expected = (0, "***", ["tags"], 20.0, None)
    assert expected == (
        code,
        document["MODERATION_AZURE_KEY"],
        document["MODERATION_VISUAL_FEATURES"],
        document["MODERATION_QUOTA_CALLS_PER_S"],
        document["MODERATION_POLICY_FILE"],
    )
    assert "hunter2" not in out


@pytest.mark.parametrize("command", [["config"], ["run"]])
def test_bad_configuration_exits_2_naming_every_problem(
    command: list[str], clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two bad variables and no endpoint: exit 2, one stderr line naming all three, no traceback, no key."""
    clean_env.setenv("MODERATION_AZURE_KEY", "hunter2")
    clean_env.setenv("MODERATION_QUOTA_CALLS_PER_S", "fast")
    clean_env.setenv("MODERATION_LOG_LEVEL", "loud")
    code, out, err = _run(command, capsys)
    expected = (
        "moderation-worker: configuration error: invalid configuration: "
        "MODERATION_QUOTA_CALLS_PER_S: must be a number, got 'fast'; "
        "MODERATION_LOG_LEVEL: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR', got 'loud'; "
        "MODERATION_AZURE_ENDPOINT: required when MODERATION_ANALYZER=azure\n"
    )
    assert (2, "", expected) == (code, out, err)


def test_an_option_overriding_a_setting_is_validated_like_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`topics create --partitions 0` exits 2 naming the variable the option overrides, Kafka untouched."""
    code, _, err = _run(["topics", "create", "--partitions", "0"], capsys)
    expected = (
        "moderation-worker: configuration error: invalid configuration: "
        "MODERATION_TOPIC_PARTITIONS: must be at least 1, got '0'\n"
    )
    assert (2, expected) == (code, err)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["run", "--fast"], "No such option"),
        (["hold", "maybe"], "'maybe' is not one of 'on', 'off'"),
        (["demo", "--repeat", "0"], "0 is not in the range x>=1"),
        (["dev", "broker", "--port", "70000"], "70000 is not in the range 0<=x<=65535"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown command or option, or a bad option value: exit 2, the usage and the reason on stderr."""
    code, out, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert (2, "", True, True) == (
        code,
        out,
        lines[0].startswith("Usage: moderation-worker"),
        reason in lines[-1],
    )


def test_no_command_shows_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Bare `moderation-worker` prints the usage with the command list and exits 2."""
    code, out, err = _run([], capsys)
    text = out + err
    assert (2, True, True) == (code, text.startswith("Usage: moderation-worker"), "topics create" in text)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("command", [["topics", "create"], ["hold", "on", "--reason", "test"]])
def test_an_unreachable_cluster_exits_5_with_one_line_naming_the_cause(
    command: list[str], clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening at the bootstrap address and no start-up wait: exit 5 and one line on stderr that
    names the broker and the cause, no traceback."""
    port = _closed_port()
    clean_env.setenv("MODERATION_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    clean_env.setenv("MODERATION_KAFKA_STARTUP_TIMEOUT_S", "0")
    code, out, err = _run(command, capsys)
    lines = [line for line in err.splitlines() if line.startswith("moderation-worker")]
    assert (5, "", 1) == (code, out, len(lines))
    expected = f"moderation-worker: cannot use Kafka: Kafka broker 127.0.0.1:{port}: connection refused"
    assert lines[0].startswith(expected)
    assert "Traceback" not in err


@pytest.mark.parametrize("module", ["worker", "worker.cli"])
def test_python_dash_m_runs_the_command_line(module: str) -> None:
    """`python -m worker` and `python -m worker.cli` are the same command line as `moderation-worker`."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (0, f"moderation-worker {__version__}\n") == (done.returncode, done.stdout)


def test_dev_broker_never_loads_the_azure_sdk(tmp_path: Path) -> None:
    """`dev broker` (here failing at once: no Java on PATH, exit 1) imports no azure module on its way."""
    script = (
        "import sys\nfrom worker.cli import main\n"
        f"code = main(['dev', 'broker', '--data-dir', {str(tmp_path / 'd')!r}])\n"
        "print(code, sorted(name for name in sys.modules if name.split('.')[0] == 'azure'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": str(tmp_path)},
    )
    assert "1 []\n" == done.stdout, done.stderr
    assert "Java 17+ ('java') is not on PATH" in done.stderr
