"""Where a signup's server CPU goes beside the argon2 hash, measured with the hash made trivial.

    .venv/bin/python bench/overhead.py [--signups 400] [--rounds 3] [--workers 2] [--profile] [--json]

``bench/verify.py`` measures the overhead through the hash (server CPU per signup over the CPU of a
bare hash). Here the server runs ``bench/verify.py``'s signups with argon2 at its cheapest
(``[argon2] memory_kib = 8, time_cost = 1``, allowed only by ``bench/overhead_probe.py`` in the
server's throwaway site directory), so that what it spends per signup is the overhead itself. Per
round it prints each server process's CPU per signup from /proc (supervisor, each worker with its
threads by name, the embedded Redis) and Redis's own account of its commands (``INFO
commandstats``); the figures are medians over the rounds. ``--profile`` then profiles one worker's
event loop by its thread's CPU clock (``cProfile``, started and stopped by SIGUSR2) over one more
round, with ``SLOWLOG`` at 0 µs naming each script's time in Redis, and prints the top functions.
``--real-argon2`` keeps the default profile, for the same split with the hash in it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis
from report import print_figures
from verify import SignupServer, _embedded_redis_pids

from idverify.store.scripts import SCRIPT_NAMES, chain_source, script_source
from idverify.testing import RedisProcess

HERE = Path(__file__).resolve().parent
TRIVIAL_ARGON2 = "\n[argon2]\nmemory_kib = 8\ntime_cost = 1\n"
# The chains a signup runs (Scripts.run_chain), as tests/unit/flows/test_round_trips.py names them.
CHAINS = (
    ("reserve_request", "refuse_counted", "consent_start", "rate_limit"),
    ("hget_each", "send_budget", "phone_send"),
    ("phone_guess", "submit"),
    ("fields_unchanged", "phone_guess", "submit"),
)
SCRIPT_OF_SHA = {
    **{hashlib.sha1(script_source(name).encode()).hexdigest(): name for name in SCRIPT_NAMES},  # noqa: S324 - Redis names scripts by SHA-1
    **{hashlib.sha1(chain_source(names).encode()).hexdigest(): "+".join(names) for names in CHAINS},  # noqa: S324
}
TOP = 30


def _usage(stat: Path) -> tuple[float, float, int]:
    """(user seconds, system seconds, minor page faults) of a process or thread so far."""
    fields = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])


def cpu_by_thread(roles: dict[str, int]) -> defaultdict[str, float]:
    """CPU seconds so far of each role's process (``cpu/<role>``) and threads (``cpu/<role>/<thread>``).

    Beside them their system part (``sys/...``) and their minor page faults (``faults/...``).
    """
    usage: defaultdict[str, float] = defaultdict(float)

    def add(name: str, stat: Path) -> None:
        user, system, faults = _usage(stat)
        usage[f"cpu/{name}"] += user + system
        usage[f"sys/{name}"] += system
        usage[f"faults/{name}"] += faults

    for role, pid in roles.items():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            add(role, Path(f"/proc/{pid}/stat"))
            if role.startswith("worker"):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    add(f"{role}/{(task / 'comm').read_text().strip()}", task / "stat")
    return usage


def roles_of(server: SignupServer) -> dict[str, int]:
    """The server's processes by role: supervisor, worker-1.., redis."""
    supervisor, *workers = server.process.server_pids()
    roles = {"supervisor": supervisor, **{f"worker-{i}": pid for i, pid in enumerate(sorted(workers), 1)}}
    for redis_pid in _embedded_redis_pids(server.process):  # one: the supervisor's embedded store
        roles["redis"] = redis_pid
    return roles


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis's (calls, µs) per command so far."""
    return {
        name.removeprefix("cmdstat_"): (int(stats["calls"]), int(stats["usec"]))
        for name, stats in client.info("commandstats").items()
    }


def one_round(
    server: SignupServer, client: redis.Redis, signups: range, concurrency: int
) -> dict[str, float]:
    """One round's figures per signup: ms of CPU per process and thread, Redis calls and µs."""
    roles = roles_of(server)
    cpu_before, commands_before = cpu_by_thread(roles), command_stats(client)
    server.drive(signups, concurrency)
    cpu_after, commands_after = cpu_by_thread(roles), command_stats(client)
    n = len(signups)
    figures = {
        name.replace("cpu/", "cpu_ms/").replace("sys/", "sys_ms/"): (1 if name.startswith("faults") else 1000)
        * (cpu_after[name] - cpu_before[name])
        / n
        for name in cpu_after
    }
    figures["cpu_ms/total"] = sum(figures[f"cpu_ms/{role}"] for role in roles)
    for name, (calls, usec) in commands_after.items():
        calls_before, usec_before = commands_before.get(name, (0, 0))
        if calls > calls_before:
            figures[f"redis_calls/{name}"] = (calls - calls_before) / n
            figures[f"redis_us/{name}"] = (usec - usec_before) / n
    return figures


def slowlog_by_script(client: redis.Redis, signups: int) -> dict[str, list[float]]:
    """Each command's (calls, µs) per signup from the slow log, scripts named by their SHA-1."""
    totals: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for entry in client.slowlog_get(1_000_000):
        command = entry["command"]
        words = command.split() if isinstance(command, (bytes, str)) else command
        words = [w.decode(errors="replace") if isinstance(w, bytes) else w for w in words]
        name = words[0].upper()
        if name in {"EVALSHA", "EVALSHA_RO"} and len(words) > 1:
            name = SCRIPT_OF_SHA.get(words[1], words[1][:8])
        totals[name][0] += 1 / signups
        totals[name][1] += entry["duration"] / signups
    return {name: [round(calls, 2), round(us, 1)] for name, (calls, us) in sorted(totals.items())}


def profile_round(
    server: SignupServer,
    client: redis.Redis,
    signups: range,
    concurrency: int,
    site: Path,
    *,
    keep: Path | None,
) -> dict[str, Any]:
    """One round with worker-1's event loop profiled by CPU and Redis's slow log at 0 µs."""
    worker = roles_of(server)["worker-1"]
    client.config_set("slowlog-max-len", 1_000_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    os.kill(worker, signal.SIGUSR2)
    server.drive(signups, concurrency)
    os.kill(worker, signal.SIGUSR2)
    client.config_set("slowlog-log-slower-than", 10_000)
    scripts = slowlog_by_script(client, len(signups))
    dump = site / "cpu-profile" / f"{worker}.prof"
    for _ in range(100):
        if dump.exists():
            break
        time.sleep(0.1)
    if keep is not None:
        shutil.copyfile(dump, keep)
    stats = pstats.Stats(str(dump), stream=io.StringIO())
    total = sum(timing[2] for timing in stats.stats.values())  # type: ignore[attr-defined]
    rows = stats.stats.items()  # type: ignore[attr-defined]

    def label(key: tuple[str, int, str]) -> str:
        path, line, function = key
        return f"{Path(path).name}:{line}:{function}" if line else function

    by_own = sorted(rows, key=lambda item: -item[1][2])[:TOP]
    by_inclusive = sorted(rows, key=lambda item: -item[1][3])[:TOP]
    return {
        # Worker-1's loop over the round's signups, of which it served about its share.
        "profile_worker_1_loop_cpu_s": round(total, 3),
        "profile_own_top": [[label(k), round(100 * v[2] / total, 1), v[1]] for k, v in by_own],
        "profile_inclusive_top": [[label(k), round(100 * v[3] / total, 1)] for k, v in by_inclusive],
        "redis_slowlog_per_signup": scripts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signups", type=int, default=400, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="one more round with worker-1 profiled")
    parser.add_argument("--keep-profile", type=Path, help="with --profile: copy the pstats file here")
    parser.add_argument("--real-argon2", action="store_true", help="keep the default argon2 profile")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    config = "" if options.real_argon2 else TRIVIAL_ARGON2
    figures: dict[str, Any] = {
        "workers": options.workers,
        "argon2": "default" if options.real_argon2 else "m=8,t=1",
    }
    with (
        tempfile.TemporaryDirectory(prefix="idverify-bench-") as scratch,
        SignupServer(
            Path(scratch), options.workers, config, sitecustomize=HERE / "overhead_probe.py"
        ) as server,
    ):
        client = redis.Redis(
            unix_socket_path=str(RedisProcess.of_data_dir(server.process.data_dir).socket_path)
        )
        per_round = [
            one_round(
                server, client, range(r * options.signups, (r + 1) * options.signups), options.concurrency
            )
            for r in range(options.rounds)
        ]
        names = sorted({name for figures_of_round in per_round for name in figures_of_round})
        for name in names:
            figures[name] = round(statistics.median(f.get(name, 0.0) for f in per_round), 3)
        figures["cpu_ms_total_by_round"] = [round(f["cpu_ms/total"], 2) for f in per_round]
        if options.profile:
            first = options.rounds * options.signups
            figures |= profile_round(
                server,
                client,
                range(first, first + options.signups),
                options.concurrency,
                Path(scratch) / "site",
                keep=options.keep_profile,
            )
        client.close()
    print_figures(figures, as_json=options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
