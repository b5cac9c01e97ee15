"""``python -m tests.chaos [--short] [--seed N] [--report PATH] [--work-dir DIR]``: the chaos run.

Starts its own embedded broker (it gets SIGKILLed) and an in-process vision emulator, runs the plan's
scenarios one after the other, prints the table and writes the JSON report. Exit code 0 when every target
was met, 1 when one was missed, 2 for bad options. Replica logs, the broker's data and the report stay in
the work folder (a new temporary one unless ``--work-dir``) as evidence.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.chaos.plan import ChaosPlan, build_plan
from tests.chaos.report import render, to_json
from tests.chaos.scenario import ScenarioResult, run_scenario
from tests.fixtures.emulator import TEST_KEY
from tests.pipeline_harness import SCRIPTS
from worker.dev.broker import EmbeddedKafka, default_cache_root
from worker.dev.emulator.fixtures import parse_fixtures
from worker.dev.emulator.server import Emulator, EmulatorConfig

DEFAULT_SEED = 2026
#: added to every analyzer answer, so replicas hold work in flight when they are killed
EMULATOR_LATENCY_MS = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI size: ~2,000 submissions, fewer faults")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="decides submissions and faults")
    parser.add_argument("--report", type=Path, default=None, help="JSON report (default: in the work folder)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="logs and broker data (default: new temp)"
    )
    return parser


async def run(plan: ChaosPlan, work_dir: Path) -> list[ScenarioResult]:
    """Every scenario of ``plan``, in order, on one broker and one emulator started here."""
    config = EmulatorConfig(
        key=TEST_KEY, fixtures=parse_fixtures(SCRIPTS), route_prefix="", latency_ms=EMULATOR_LATENCY_MS
    )
    results = []
    async with (
        EmbeddedKafka(work_dir / "broker", cache_dir=default_cache_root(os.environ)) as broker,
        Emulator(config, host="127.0.0.1", port=0) as emulator,
    ):
        for scenario in plan.scenarios:
            _say(
                f"scenario {scenario.name}: {len(scenario.work.submissions.records)} submissions, "
                f"{len(scenario.faults)} faults"
            )
            result = await run_scenario(
                scenario,
                broker=broker,
                emulator=emulator,
                work_dir=work_dir,
                replicas=plan.replicas,
                partitions=plan.partitions,
            )
            verdict = "passed" if result.passed else "FAILED"
            _say(f"scenario {scenario.name}: {verdict} in {result.elapsed_s:.0f} s")
            results.append(result)
    return results


def _say(line: str) -> None:
    sys.stderr.write(f"[chaos {time.strftime('%H:%M:%S')}] {line}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chaos plan the options ask for; 0 when every target was met, else 1."""
    args = _parser().parse_args(argv)
    # The run's own clients retry through the broker outage by design; their warnings would bury the table.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    plan = build_plan(args.seed, short=args.short)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="moderation-chaos-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    report = args.report or work_dir / "report.json"
    _say(f"plan {plan.fingerprint()} (seed {plan.seed}); logs in {work_dir}")
    results = asyncio.run(run(plan, work_dir))
    report.write_bytes(
        to_json(plan, results, machine={"cpus": os.cpu_count() or 0, "work_dir": str(work_dir)})
    )
    sys.stdout.write(render(plan, results) + f"\nreport: {report}\n")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
