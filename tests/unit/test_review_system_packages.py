"""``.ci/system-packages browser``: Debian's chromium, which the review console's browser tests drive."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_system_packages import make_sandbox


def test_the_browser_need_names_debians_chromium_package(tmp_path: Path) -> None:
    """Without chromium on PATH, a dry run says it would install the ``chromium`` package and nothing else."""
    sandbox = make_sandbox(tmp_path)

    done = sandbox.run("--dry-run", "browser")

    expected = (
        "  as root this would run: DEBIAN_FRONTEND=noninteractive apt-get update && "
        "apt-get install -y --no-install-recommends chromium\n"
    )
    assert (0, [], True) == (done.returncode, sandbox.calls(), done.stderr.endswith(expected))


def test_the_browser_need_is_quiet_when_chromium_is_present(tmp_path: Path) -> None:
    """A machine with chromium prints nothing and installs nothing."""
    sandbox = make_sandbox(tmp_path, present={"chromium"})

    done = sandbox.run("browser")

    assert (0, "", []) == (done.returncode, done.stderr, sandbox.calls())


def test_ci_asks_for_the_browser() -> None:
    """A fresh CI machine gets chromium before the suite runs."""
    run = (Path(__file__).parents[2] / ".ci" / "run").read_text()

    assert ".ci/system-packages venv test demo browser" in run
