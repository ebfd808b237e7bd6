"""How long the ``idverify`` command takes to answer, against the interpreter's own start.

    .venv/bin/python bench/cli_start.py [--runs 7] [--checkout DIR] [--json]

Each round runs, in a process of its own: ``python -c pass`` (the floor: an interpreter that
does nothing), ``idverify --version``, ``idverify --help`` and ``idverify geo lookup 8.8.8.8``
on the bundled database; it prints the median seconds of each and its ratio to the floor's
median. ``--checkout DIR`` runs the commands from another checkout (``python -m idverify`` in
that directory imports its package), to measure an older version beside this one.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, side_by_side

COMMANDS = {
    "floor (python -c pass)": ["-c", "pass"],
    "idverify --version": ["-m", "idverify", "--version"],
    "idverify --help": ["-m", "idverify", "--help"],
    "idverify geo lookup 8.8.8.8": ["-m", "idverify", "geo", "lookup", "8.8.8.8"],
}


def seconds(arguments: list[str], checkout: Path, env: dict[str, str]) -> float:
    """Wall time of one run of the interpreter with ``arguments``; NaN when it fails.

    An older checkout may not have the command (``--version``): it has no figure then.
    """
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *arguments], cwd=checkout, env=env, capture_output=True, check=False, timeout=120
    )
    return time.perf_counter() - started if done.returncode == 0 else math.nan


def measure(runs: int, checkout: Path) -> dict[str, object]:
    """Alternating rounds of every command; medians and ratios to the floor."""
    with tempfile.TemporaryDirectory(prefix="idverify-cli-start-") as cache:
        # The old-database warning's stamp goes to a cache of the run's own.
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        for arguments in COMMANDS.values():
            seconds(arguments, checkout, env)  # warms the page cache and the stamp
        times = side_by_side(
            runs, tuple(COMMANDS), lambda _turn, name: seconds(COMMANDS[name], checkout, env)
        )
    floor = statistics.median(times["floor (python -c pass)"])
    figures: dict[str, object] = {"runs": runs, "checkout": str(checkout), "load_average": os.getloadavg()}
    for name, values in times.items():
        if any(math.isnan(value) for value in values):
            figures[f"{name}: median s"] = "failed (not in this checkout?)"
            continue
        median = statistics.median(values)
        figures[f"{name}: median s"] = round(median, 3)
        figures[f"{name}: / floor"] = round(median / floor, 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="rounds (each runs every command once)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the checkout whose idverify package runs (default: this one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print_figures(measure(args.runs, args.checkout.resolve()), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
