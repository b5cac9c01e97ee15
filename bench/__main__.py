"""``python -m bench [NAME ...]``: run the throughput benchmarks (all, or the named ones) on one broker.

Starts one embedded Kafka broker for the whole run (or uses ``$MODERATION_BENCH_BOOTSTRAP_SERVERS``), runs
each benchmark in turn, prints its result line as it finishes and a table at the end. Exit code 0 when every
target was met, 1 when one was missed, 2 for an unknown benchmark name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench import (
    group_share,
    known_content_banks,
    known_content_cpu,
    known_content_repeats,
    latency,
    latency_hiding,
    memory,
    metrics_cost,
    overhead,
    quota,
    sdk_path,
)
from bench.common import BenchContext, BenchResult, machine_description
from worker.dev.broker import EmbeddedKafka, default_cache_root

BOOTSTRAP_ENV = "MODERATION_BENCH_BOOTSTRAP_SERVERS"

Benchmark = Callable[[BenchContext], Awaitable[BenchResult | list[BenchResult]]]
BENCHMARKS: dict[str, Benchmark] = {
    overhead.NAME: overhead.run,
    sdk_path.NAME: sdk_path.run,
    quota.NAME: quota.run,
    latency_hiding.NAME: latency_hiding.run,
    latency.NAME: latency.run,
    memory.NAME: memory.run,
    group_share.NAME: group_share.run,
    metrics_cost.NAME: metrics_cost.run,
    known_content_banks.NAME: known_content_banks.run,
    known_content_cpu.NAME: known_content_cpu.run,
    known_content_repeats.NAME: known_content_repeats.run,
}


def render_table(results: Sequence[BenchResult]) -> str:
    """The final summary: one row per result, ratio next to target, and the baseline it is relative to."""
    rows = [("benchmark", "ratio", "target", "met", "measured", "baseline")]
    rows += [
        (r.name, f"{r.ratio:.3f}", r.target, "yes" if r.met else "NO", r.measured, r.baseline)
        for r in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


async def _run(names: Sequence[str], workdir: Path) -> list[BenchResult]:
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        return await _run_all(names, BenchContext(external, workdir))
    async with EmbeddedKafka(workdir / "kafka", cache_dir=default_cache_root(os.environ)) as broker:
        return await _run_all(names, BenchContext(broker.bootstrap_servers, workdir))


async def _run_all(names: Sequence[str], ctx: BenchContext) -> list[BenchResult]:
    results: list[BenchResult] = []
    for name in names:
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        outcome = await BENCHMARKS[name](ctx)
        for result in outcome if isinstance(outcome, list) else [outcome]:
            print(result.line(), flush=True)
            for key, value in result.figures.items():
                print(f"    {key}: {value}", flush=True)
            results.append(result)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return results


def main(argv: Sequence[str]) -> int:
    """Run the named benchmarks (all by default); see the module docstring for exit codes."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    if unknown := [name for name in names if name not in BENCHMARKS]:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    # The in-process worker's INFO logs would drown the result lines, and aiokafka logs its retries while
    # fresh topics get their leaders as errors; a real failure ends the benchmark with an exception.
    logging.getLogger("worker").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    print("machine: " + ", ".join(f"{key}={value}" for key, value in machine_description().items()))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moderation-bench-") as scratch:
        results = asyncio.run(_run(names, Path(scratch)))
    print()
    print(render_table(results))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0 if all(result.met for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
