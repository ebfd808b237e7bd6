"""What a few lines of Python cost a fresh process, beside the interpreter's own start.

    .venv/bin/python bench/import_cost.py --statement "import idverify.geo.regions" \
        [--statement ...] [--checkout DIR ...] [--python PY] [--runs 15] [--json]

Each round runs, each in a process of its own and in the same order: ``python -c pass`` (the
floor), then every statement in every checkout (the checkout is the working directory, so its
``idverify`` package is the one imported). It prints per variant the median seconds, the spread
(lowest to highest) and the median minus the floor's (what the statement adds to a start), of
wall time and of CPU time (user and system, the steadier figure on a loaded machine). Used to
weigh a library against the hand-written code it would replace: give the two checkouts, or the
two statements, side by side.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures


def seconds(python: str, statement: str, checkout: Path) -> tuple[float, float]:
    """Wall time and CPU time (user and system) of one process running ``statement``.

    On a loaded machine the CPU time is the steadier figure: waiting for a core is not in it.
    A failure stops the run.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([python, "-c", statement], cwd=checkout, capture_output=True, check=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def measure(python: str, statements: list[str], checkouts: list[Path], runs: int) -> dict[str, object]:
    """Alternating rounds of the floor and every variant; medians, spreads, costs over the floor."""
    variants = {
        (f"{checkout.name}: {statement}" if len(checkouts) > 1 else statement): (statement, checkout)
        for checkout in checkouts
        for statement in statements
    }
    floor_name = "floor (python -c pass)"
    times: dict[str, list[tuple[float, float]]] = {floor_name: [], **{name: [] for name in variants}}
    for statement, checkout in variants.values():
        seconds(python, statement, checkout)  # warms the page cache and the bytecode caches
    for _ in range(runs):
        times[floor_name].append(seconds(python, "pass", checkouts[0]))
        for name, (statement, checkout) in variants.items():
            times[name].append(seconds(python, statement, checkout))
    figures: dict[str, object] = {"runs": runs, "python": python, "load_average": os.getloadavg()}
    for index, kind in enumerate(("wall", "cpu")):
        floor = statistics.median(run[index] for run in times[floor_name])
        for name, runs_of_name in times.items():
            values = [run[index] for run in runs_of_name]
            median = statistics.median(values)
            figures[f"{name}: {kind} median s"] = round(median, 4)
            figures[f"{name}: {kind} spread s"] = f"{min(values):.4f}-{max(values):.4f}"
            if name != floor_name:
                figures[f"{name}: {kind} over the floor ms"] = round((median - floor) * 1000, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--statement", action="append", required=True, help="Python to run (repeatable)")
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="a checkout to run the statements in (repeatable; default: this one)",
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    parser.add_argument("--runs", type=int, default=15, help="rounds (each runs every variant once)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    checkouts = [path.resolve() for path in args.checkout or [Path(__file__).resolve().parents[1]]]
    print_figures(measure(args.python, args.statement, checkouts, args.runs), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
