"""``moderation-worker demo`` as a user runs it: a child process that starts everything and stops it all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

import pytest

from worker.dev.demo.samples import GENERATED, PHOTOS

pytestmark = pytest.mark.integration

SAMPLE_IDS = sorted(f"demo-{Path(name).stem}" for name in [*(p.filename for p in PHOTOS), *GENERATED])
DECISIONS = ("approved", "needs_review", "rejected")
#: a summary row: the id, then its route, then the rest
ROW = re.compile(r"^(demo-\S+)\s+(approved|needs_review|rejected|dead_letter|\(not routed\))\s")
PORT_LINES = {
    "broker": re.compile(r"broker ready at 127\.0\.0\.1:(\d+)"),
    "images": re.compile(r"-> 127\.0\.0\.1:(\d+)"),
    "emulator": re.compile(r"at http://127\.0\.0\.1:(\d+)\n"),
    "metrics": re.compile(r"metrics at http://127\.0\.0\.1:(\d+)/metrics"),
}


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (the broker's names its data folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in command:
            found.append(int(entry.name))
    return found


def _ports(output: str) -> dict[str, int]:
    """The port each component announced, by component."""
    found = {name: pattern.search(output) for name, pattern in PORT_LINES.items()}
    return {name: int(match.group(1)) for name, match in found.items() if match is not None}


def _summary_rows(output: str) -> dict[str, str]:
    """Each summary row's id -> its route."""
    matches = (ROW.match(line) for line in output.splitlines())
    return {match.group(1): match.group(2) for match in matches if match is not None}


async def _start_demo(work_dir: Path, output: Path, *extra: str) -> asyncio.subprocess.Process:
    """The demo as a child process, its stdout and stderr in ``output`` (a file: never an unread pipe)."""
    env = dict(os.environ) | {"PYTHONUNBUFFERED": "1"}
    with output.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker.cli", "demo", "--work-dir", str(work_dir), *extra,
            stdout=sink, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, env=env,
        )  # fmt: skip


async def _finish(process: asyncio.subprocess.Process, timeout_s: float) -> int:
    try:
        return await asyncio.wait_for(process.wait(), timeout=timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_demo_routes_every_sample_reports_each_and_leaves_nothing_running(tmp_path: Path) -> None:
    """Exit 0 within 90 s; the summary has one row per sample id, each with a decision, all three
    decisions occur; afterwards no port it announced is listening and no process names its folder."""
    work_dir, output = tmp_path / "demo", tmp_path / "demo.out"
    process = await _start_demo(work_dir, output)
    exit_code = await _finish(process, timeout_s=90)
    text = output.read_text(encoding="utf-8")

    rows = _summary_rows(text)
    assert (0, SAMPLE_IDS) == (exit_code, sorted(rows)), text
    assert set(DECISIONS) == set(Counter(rows.values())), text
    ports = _ports(text)
    assert set(PORT_LINES) == set(ports), text
    assert [] == [name for name, port in ports.items() if _listening(port)]
    assert [] == _processes_naming(str(work_dir))
    assert "closed now" in text


async def test_sigterm_mid_run_stops_worker_broker_and_servers(tmp_path: Path) -> None:
    """SIGTERM while the worker runs (a long --repeat): exit 130, and every announced port is closed and no
    process names the demo's folder afterwards."""
    work_dir, output = tmp_path / "demo", tmp_path / "demo.out"
    process = await _start_demo(work_dir, output, "--repeat", "200")
    try:
        async with asyncio.timeout(90):
            while "worker starting" not in output.read_text(encoding="utf-8"):
                assert process.returncode is None, output.read_text(encoding="utf-8")
                await asyncio.sleep(0.1)  # polling a file: the child's output offers no notification
        ports = _ports(output.read_text(encoding="utf-8"))
        process.send_signal(signal.SIGTERM)
        exit_code = await _finish(process, timeout_s=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.read_text(encoding="utf-8")

    assert (130, set(PORT_LINES)) == (exit_code, set(ports)), text
    assert [] == [name for name, port in ports.items() if _listening(port)]
    assert [] == _processes_naming(str(work_dir))
