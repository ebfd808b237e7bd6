"""How long ``scripts/serve`` takes from launch to SERVING when nothing changed, against its floor.

    .venv/bin/python bench/serve_start.py [--runs 5] [--reset-stamp requirements/dev.txt] [--json]

Each round starts ``scripts/serve`` and then, as the floor, ``.venv/bin/idverify serve --dev``
itself (what the script ends in), both on the same warm data directory (the IP table cache is
built once before the rounds), and times each from launch until the gRPC health service answers
SERVING. The ratio script/floor is what the script adds: ~1.0 when it skips pip.

``--reset-stamp LOCK`` writes LOCK's stamp into ``.venv/.idverify-lock`` before every start of
the script: with ``requirements/dev.txt`` each start meets the venv as ``scripts/test`` leaves it,
which is how a developer's checkout usually is.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idverify.testing import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import print_figures, side_by_side

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 120.0


def lock_stamp(lock: Path) -> str:
    """The stamp scripts/_venv.sh's lock_stamp writes for LOCK (with pyproject.toml)."""
    data = lock.read_bytes() + (REPO / "pyproject.toml").read_bytes()
    return hashlib.sha256(data).hexdigest()


def time_to_serving(command: list[str], log: Path) -> float:
    """Seconds from launching ``command`` until its server answers SERVING; then stops it."""
    target = command[command.index("--listen") + 1]
    with log.open("ab") as output:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        try:
            with grpc.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"{command[0]} exited with {process.returncode}; see {log}")
                    if time.monotonic() - started > START_TIMEOUT_SECONDS:
                        raise RuntimeError(f"{command[0]} not SERVING after {START_TIMEOUT_SECONDS} s")
                    try:
                        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    except grpc.RpcError:
                        time.sleep(0.02)
                        continue
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.monotonic() - started
                    time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def measure(runs: int, reset_stamp: Path | None) -> dict[str, object]:
    """Alternating rounds of the script and the floor on one warm data directory."""
    with tempfile.TemporaryDirectory(prefix="idverify-serve-start-") as scratch:
        data_dir = Path(scratch) / "data"
        log = Path(scratch) / "serve.log"

        def command(script: bool) -> list[str]:
            head = (
                [str(REPO / "scripts" / "serve")]
                if script
                else [str(REPO / ".venv/bin/idverify"), "serve", "--dev"]
            )
            return [
                *head,
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(data_dir),
                "--workers",
                "1",
            ]

        def script_start() -> float:
            if reset_stamp is not None:
                (REPO / ".venv" / ".idverify-lock").write_text(
                    lock_stamp(reset_stamp) + "\n", encoding="ascii"
                )
            return time_to_serving(command(script=True), log)

        time_to_serving(command(script=False), log)  # the first start makes the data directory

        def start(_turn: int, name: str) -> float:
            return script_start() if name == "script" else time_to_serving(command(script=False), log)

        figures = side_by_side(runs, ("script", "floor"), start)
        script, floor = figures["script"], figures["floor"]
    ratios = [s / f for s, f in zip(script, floor, strict=True)]
    return {
        "runs": runs,
        "reset_stamp": str(reset_stamp) if reset_stamp else "",
        "load_average": os.getloadavg(),
        "script_seconds": [round(value, 2) for value in script],
        "floor_seconds": [round(value, 2) for value in floor],
        "script_median_seconds": round(statistics.median(script), 2),
        "floor_median_seconds": round(statistics.median(floor), 2),
        "ratio_median": round(statistics.median(ratios), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="rounds (each: the script, then the floor)")
    parser.add_argument(
        "--reset-stamp",
        type=Path,
        default=None,
        metavar="LOCK",
        help="write this lock's stamp into .venv before each start of the script",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print_figures(measure(args.runs, args.reset_stamp), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
