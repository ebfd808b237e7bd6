"""What a power loss takes from Redis under each AOF fsync policy, measured through a lossy disk.

    .venv/bin/python bench/power_loss.py [--seconds 3] [--runs 3] [--json]

Needs FUSE (``/dev/fuse``, ``fusermount3``; Debian: ``apt-get install fuse3``). Redis keeps its
AOF on ``bench/lossy_fs.py``, which holds every write not yet ``fsync``-ed in memory as a page
cache would. A client writes numbered keys one at a time and counts those Redis acknowledged;
then the power is cut: Redis is frozen, the unsynced writes are dropped, Redis is killed. A fresh
Redis started on what reached the backing directory says which acknowledged writes survived.

A ``kill -9`` alone cannot show this: the page cache outlives the process (docs/RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from report import print_figures

from idverify.store.embedded import RedisProcess, free_port, redis_server_binary

HERE = Path(__file__).resolve().parent


def one_cut(appendfsync: str, seconds: float) -> dict[str, float]:
    """Writes for ``seconds``, cuts the power, and counts what survived."""
    with tempfile.TemporaryDirectory(prefix="idverify-power-") as scratch:
        backing, mountpoint = Path(scratch) / "disk", Path(scratch) / "mnt"
        backing.mkdir()
        mountpoint.mkdir()
        disk = subprocess.Popen(
            [sys.executable, str(HERE / "lossy_fs.py"), str(backing), str(mountpoint)],
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(lambda: os.path.ismount(mountpoint))
            store = RedisProcess(
                mountpoint,
                port=free_port(),
                appendfsync=appendfsync,
                binary=redis_server_binary(prefer_system=True),
            )
            store.start()
            assert store.process is not None  # noqa: S101
            client = redis.Redis(port=store.port)
            acknowledged = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                client.set(f"k{acknowledged + 1}", "x")
                acknowledged += 1
            os.kill(store.process.pid, signal.SIGSTOP)  # the instant of the cut
            disk.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            os.kill(store.process.pid, signal.SIGKILL)
            store.process.wait()
            client.close()
        finally:
            subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
            disk.wait(timeout=10)
        survivor = RedisProcess(backing, port=free_port(), binary=redis_server_binary(prefer_system=True))
        with survivor:
            kept = redis.Redis(port=survivor.port)
            survived = sum(1 for n in range(1, acknowledged + 1) if kept.exists(f"k{n}"))
            kept.close()
    rate = acknowledged / seconds
    lost = acknowledged - survived
    return {"acknowledged": acknowledged, "lost": lost, "lost_ms": round(lost / rate * 1000, 1)}


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = "the lossy filesystem did not mount"
            raise RuntimeError(msg)
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    figures: dict[str, object] = {}
    for policy in ("always", "everysec"):
        cuts = [one_cut(policy, options.seconds) for _ in range(options.runs)]
        figures[policy] = {
            "cuts": cuts,
            "max_lost": max(c["lost"] for c in cuts),
            "median_lost_ms": statistics.median(c["lost_ms"] for c in cuts),
        }
    print_figures(figures, as_json=options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
