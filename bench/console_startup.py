"""What the auditor's console adds to a server's start: launch to SERVING, console on against off.

    .venv/bin/python bench/console_startup.py [--rounds 5] [--workers 1] [--json]

Each round starts ``idverify serve --dev`` twice on one data directory (warm: keys, signing key
and IP table cache already made), once with the console off (``IDVERIFY_CONSOLE__ENABLED=off``,
the floor) and once on, in alternating order, and times launch to gRPC SERVING (a worker reports
serving only once its console listens). It prints the medians and their ratio, and the import
time of aiohttp.web in a process that already imported the server (the console's share of it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from idverify.testing import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, side_by_side


def start_seconds(directory: Path, *, console: bool, workers: int) -> float:
    """Seconds from launch to SERVING for one start."""
    server = ServerProcess(
        directory,
        extra_args=["--workers", str(workers)],
        env={"IDVERIFY_CONSOLE__ENABLED": "on" if console else "off"},
    )
    began = time.monotonic()
    server.start()
    took = time.monotonic() - began
    server.stop()
    return took


def aiohttp_import_ms() -> float:
    """Milliseconds to import aiohttp.web after idverify.server (the console's own import cost)."""
    code = (
        "import time, idverify.server; t = time.perf_counter(); import aiohttp.web; "
        "print((time.perf_counter() - t) * 1000)"
    )
    samples = [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
        for _ in range(5)
    ]
    return statistics.median(samples)


def main() -> int:
    """Runs the rounds and prints (or writes as JSON) the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        start_seconds(directory, console=False, workers=args.workers)  # the cold start: not counted
        figures = side_by_side(
            args.rounds,
            ("off", "on"),
            lambda _round, side: start_seconds(directory, console=side == "on", workers=args.workers),
            alternate=True,
        )
    off, on = figures["off"], figures["on"]
    result = {
        "rounds": args.rounds,
        "workers": args.workers,
        "off_median_s": round(statistics.median(off), 3),
        "on_median_s": round(statistics.median(on), 3),
        "ratio_on_off": round(statistics.median(on) / statistics.median(off), 3),
        "aiohttp_web_import_ms": round(aiohttp_import_ms(), 1),
        "off_s": [round(x, 3) for x in off],
        "on_s": [round(x, 3) for x in on],
    }
    print_figures(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
