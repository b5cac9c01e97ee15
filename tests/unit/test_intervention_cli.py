"""The intervention commands' surface: help, and the checks they make before touching Kafka."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import orjson
import pytest

from worker.cli import main

COMMANDS = {
    "pause": "Stop intake on every replica (incidents): in-flight records finish, nothing new is consumed.",
    "resume": "Restart intake on every replica after `pause`.",
    "policy apply": "Validate a policy file as the worker does at start, then switch every replica to it "
    "(within 2 s).",
    "policy rollback": "Return every replica to the policy the current one replaced (their own files if it "
    "replaced those).",
    "policy status": "Show the applied policy and what each replica runs (its own report on the control "
    "topic).",
}


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MODERATION_* variable from the machine; the bootstrap address is a closed port, no start-up wait."""
    for name in [name for name in os.environ if name.upper().startswith("MODERATION_")]:
        monkeypatch.delenv(name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    monkeypatch.setenv("MODERATION_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("MODERATION_KAFKA_STARTUP_TIMEOUT_S", "0")
    monkeypatch.setenv("COLUMNS", "200")
    return monkeypatch


def test_help_lists_the_intervention_commands(unreachable: None, capsys: pytest.CaptureFixture[str]) -> None:
    """`moderation-worker --help` has a row per intervention command with its one-line description."""
    assert 0 == main(["--help"])
    rows = {line.strip() for line in capsys.readouterr().out.splitlines()}
    missing = [
        name
        for name, summary in COMMANDS.items()
        if not any(r.startswith(name) and r.endswith(summary) for r in rows)
    ]
    assert [] == missing


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (b"{not json", "cannot read policy file"),
        (orjson.dumps({"schema": "policy.v1", "mode": "sometimes"}), "invalid policy"),
        (
            orjson.dumps(
                {
                    "schema": "policy.v1",
                    "mode": "blocklist",
                    "blocklist": {"gun": {"review_at": 0.9, "reject_at": 0.5}},
                }
            ),
            "review_at",
        ),
    ],
)
def test_a_bad_policy_is_refused_with_exit_2_before_kafka_is_contacted(
    policy: bytes, problem: str, unreachable: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unreadable, schema-invalid or inconsistent: one line naming the problem, exit 2 (not 5: the
    unreachable cluster is never tried)."""
    path = tmp_path / "policy.json"
    path.write_bytes(policy)
    code = main(["policy", "apply", str(path)])
    err = capsys.readouterr().err
    assert (2, 1) == (code, len(err.splitlines()))
    assert err.startswith("moderation-worker: configuration error: ")
    assert problem in err


@pytest.mark.parametrize("command", [["pause"], ["resume"], ["policy", "status"], ["policy", "rollback"]])
def test_an_unreachable_cluster_exits_5_with_one_line(
    command: list[str], unreachable: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands that need the cluster exit 5 with one line when it cannot be reached."""
    code = main(command)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("moderation-worker")]
    assert (5, 1) == (code, len(lines))
    assert lines[0].startswith("moderation-worker: cannot use Kafka: ")
