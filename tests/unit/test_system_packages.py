"""``.ci/system-packages``: what each make target needs from Debian is present, installed as root, or named.

The script runs with a PATH holding only a sandbox folder: ``bash``, ``env`` and stand-ins for the tools, so
any tool can be made missing without uninstalling anything. ``apt-get`` there is a recorder that "installs"
a package by adding its tools' stand-ins; ``id`` and the service tools (``systemctl``, ``invoke-rc.d``,
``update-rc.d``) are stand-ins too, so nothing on the machine is installed, started, stopped or disabled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / ".ci" / "system-packages"
TEST_TOOLS = ("prometheus", "promtool", "java", "mvn", "openssl", "node", "npm")
#: what the recorder's "install" adds for each Debian package
PACKAGE_TOOLS = {
    "prometheus": ("prometheus", "promtool"),
    "default-jre-headless": ("java",),
    "maven": ("mvn",),
    "openssl": ("openssl",),
    "nodejs": ("node",),
    "npm": ("npm",),
}
SERVICE_TOOLS = ("systemctl", "invoke-rc.d", "update-rc.d")


@dataclass
class Sandbox:
    """A PATH of one folder; ``calls`` reads what the recorders were asked to do, in order."""

    bin: Path
    log: Path

    def tool(self, name: str, body: str = "exit 0") -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def run(self, *arguments: str, python: str = "python3.11") -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "PYTHON": python, "HOME": str(self.bin.parent)}
        return subprocess.run(
            [str(SCRIPT), *arguments], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def _apt_get(sandbox: Sandbox, *, installs: bool) -> str:
    """A recorder: one line per call (``DEBIAN_FRONTEND|arguments``); ``install`` adds the packages' tools."""
    lines = [f'printf "%s|%s\\n" "${{DEBIAN_FRONTEND:-}}" "$*" >> {sandbox.log}']
    if installs:
        lines.append('[ "$1" = install ] || exit 0')
        lines.append('for package in "$@"; do case $package in')
        for package, tools in PACKAGE_TOOLS.items():
            made = " ".join(f"{sandbox.bin}/{tool}" for tool in tools)
            lines.append(
                f'  {package}) for t in {made}; do printf "#!/bin/sh\\n" > $t; /bin/chmod 755 $t; done ;;'
            )
        lines.append(f"  python3.11-venv) : > {sandbox.bin}/venv-installed ;;")
        lines.append("esac; done")
    return "\n".join(lines)


def make_sandbox(
    root: Path,
    *,
    present: Collection[str] = TEST_TOOLS,
    uid: int = 0,
    apt: str = "installs",
    venv: bool = True,
) -> Sandbox:
    """``present``: the tools found on PATH; ``apt``: "installs", "installs nothing" or "absent"."""
    sandbox = Sandbox(root / "bin", root / "calls.log")
    sandbox.bin.mkdir()
    for name in ("bash", "env"):
        real = shutil.which(name)
        assert real is not None
        os.symlink(real, sandbox.bin / name)
    for tool in present:
        sandbox.tool(tool)
    sandbox.tool("id", f'[ "$1" = -u ] && echo {uid}')
    if venv:
        (sandbox.bin / "venv-installed").touch()
    # The interpreter's venv module works once python3.11-venv is "installed".
    sandbox.tool("python3.11", f"[ -e {sandbox.bin}/venv-installed ]")
    if apt != "absent":
        sandbox.tool("apt-get", _apt_get(sandbox, installs=apt == "installs"))
    for name in SERVICE_TOOLS:
        sandbox.tool(name, f'echo "{name} $*" >> {sandbox.log}')
    return sandbox


def expected_service_calls() -> list[str]:
    """How this machine stops and disables the service the prometheus package starts."""
    if Path("/run/systemd/system").is_dir():
        return ["systemctl disable --now prometheus.service"]
    if os.access("/etc/init.d/prometheus", os.X_OK):
        return ["invoke-rc.d prometheus stop", "update-rc.d prometheus disable"]
    return []


def test_nothing_is_printed_or_installed_when_every_tool_is_present(tmp_path: Path) -> None:
    """The common case costs nothing: exit 0, silent, apt-get untouched."""
    sandbox = make_sandbox(tmp_path)

    done = sandbox.run("venv", "broker", "demo", "test")

    assert (0, "", "", []) == (done.returncode, done.stdout, done.stderr, sandbox.calls())


def test_as_root_a_missing_tool_is_installed_with_one_update_and_the_system_prometheus_is_stopped(
    tmp_path: Path,
) -> None:
    """Only the missing package, noninteractively, without recommends; then the service it started is
    stopped and disabled, and the script checks the tools are there now."""
    sandbox = make_sandbox(tmp_path, present={"java", "mvn", "openssl", "node", "npm"})

    done = sandbox.run("test")

    expected = [
        "noninteractive|update -qq",
        "noninteractive|install -y -qq --no-install-recommends prometheus",
        *expected_service_calls(),
    ]
    assert (0, expected) == (done.returncode, sandbox.calls())


def test_packages_missing_for_several_needs_are_installed_in_one_apt_get_run_each_once(
    tmp_path: Path,
) -> None:
    """java and mvn are needed by both demo and test, yet their packages are asked for once."""
    sandbox = make_sandbox(tmp_path, present={"openssl", "node", "npm"}, venv=False)

    done = sandbox.run("venv", "demo", "test")

    install = "install -y -qq --no-install-recommends python3.11-venv default-jre-headless maven prometheus"
    assert (0, ["noninteractive|update -qq", f"noninteractive|{install}"]) == (
        done.returncode,
        [call for call in sandbox.calls() if "|" in call],
    )


def test_without_root_the_script_stops_with_the_exact_command_to_run(tmp_path: Path) -> None:
    """No attempt to install: exit 1 and one message naming each missing tool and the sudo command."""
    sandbox = make_sandbox(tmp_path, present={"java", "mvn", "node", "npm"}, uid=1000)

    done = sandbox.run("test")

    expected = (
        f"{SCRIPT}: missing prometheus (prometheus), promtool (prometheus), openssl (openssl)\n"
        "  install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "prometheus openssl\n"
    )
    assert (1, expected, []) == (done.returncode, done.stderr, sandbox.calls())


def test_no_install_makes_root_get_the_command_instead_of_an_installation(tmp_path: Path) -> None:
    """``--no-install``: the check alone, for machines where make must not run apt-get."""
    sandbox = make_sandbox(tmp_path, present={"prometheus", "promtool", "java", "openssl"})

    done = sandbox.run("--no-install", "demo")

    expected = "  install them with:  apt-get update && apt-get install -y --no-install-recommends maven\n"
    assert (1, [], True) == (done.returncode, sandbox.calls(), done.stderr.endswith(expected))


def test_dry_run_reports_what_would_run_and_changes_nothing(tmp_path: Path) -> None:
    """``--dry-run`` exits 0 and names the apt-get command a root run would use."""
    sandbox = make_sandbox(tmp_path, present={"java", "mvn", "openssl", "node", "npm"})

    done = sandbox.run("--dry-run", "test")

    expected = (
        "  as root this would run: DEBIAN_FRONTEND=noninteractive apt-get update && "
        "apt-get install -y --no-install-recommends prometheus\n"
    )
    assert (0, [], True) == (done.returncode, sandbox.calls(), done.stderr.endswith(expected))


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ("python3.11", "python3.11 -m venv (python3.11-venv)"),
        ("python3.12", "python3.12 (python3.12), python3.12 -m venv (python3.12-venv)"),
    ],
)
def test_an_interpreter_without_venv_or_no_interpreter_names_the_debian_packages(
    tmp_path: Path, python: str, expected: str
) -> None:
    """``make install`` needs ``$PYTHON -m venv``; Debian ships it apart from the interpreter."""
    sandbox = make_sandbox(tmp_path, uid=1000, venv=False)

    done = sandbox.run("venv", python=python)

    assert (1, f"{SCRIPT}: missing {expected}") == (done.returncode, done.stderr.splitlines()[0])


def test_without_apt_get_the_script_says_to_use_the_systems_package_manager(tmp_path: Path) -> None:
    """Not Debian: exit 1 with the missing tools and their Debian package names as a hint."""
    present = {"java", "mvn", "prometheus", "promtool", "node", "npm"}
    sandbox = make_sandbox(tmp_path, present=present, apt="absent")

    done = sandbox.run("test")

    expected = [
        f"{SCRIPT}: missing openssl (openssl)",
        "  this is not a Debian-like system: install the equivalent packages, then run make again",
    ]
    assert (1, expected) == (done.returncode, done.stderr.splitlines())


def test_a_tool_still_missing_after_apt_get_is_an_error(tmp_path: Path) -> None:
    """apt-get succeeding is not taken on trust: the tools are looked for again."""
    sandbox = make_sandbox(
        tmp_path, present={"java", "mvn", "prometheus", "promtool", "node", "npm"}, apt="installs nothing"
    )

    done = sandbox.run("demo")

    assert (1, True) == (done.returncode, "still missing after apt-get install" in done.stderr)


def test_an_unknown_need_is_a_usage_error(tmp_path: Path) -> None:
    """Exit 2 and the usage line, before anything is looked at."""
    sandbox = make_sandbox(tmp_path)

    done = sandbox.run("tests")

    assert (2, True, []) == (done.returncode, done.stderr.startswith("usage:"), sandbox.calls())


def test_the_test_need_installs_node_and_npm_for_the_storage_emulator(tmp_path: Path) -> None:
    """Azurite is installed with npm by the blob tests: Debian's nodejs and npm come with the test need."""
    sandbox = make_sandbox(tmp_path, present={"prometheus", "promtool", "java", "mvn", "openssl"})

    done = sandbox.run("test")

    install = "noninteractive|install -y -qq --no-install-recommends nodejs npm"
    expected = ["noninteractive|update -qq", install]
    assert (0, expected) == (done.returncode, sandbox.calls())
