"""Staged audit entries sequenced per second by one process, this tree's sequencer against a revision's.

    .venv/bin/python bench/audit_sequence.py [--against main] [--per-bucket 2048] [--buckets 8]
        [--rounds 3] [--profile FILE] [--json]

It starts its own redis-server, then for ``--rounds`` rounds runs two processes in turn, one with
this tree's ``idverify`` and one with ``--against``'s (``git archive`` into a temporary folder,
put first on the path). Each stages ``--per-bucket`` entries of ``bench/audit_rate.py``'s shape
into each of ``--buckets`` bucket streams of a fresh tenant (not timed), then runs one pass of
``audit.sequencer.StageSequencer`` over them, as the server's loop does, and reports the pass's
entries per second, and per 1,000 entries the process's CPU, Redis's ``evalsha`` time and its
time in every command (``INFO commandstats``) and Redis's CPU (``INFO cpu``: the server runs
nothing else meanwhile). The pass must take every staged entry: ``--per-bucket`` is at most the
pass limit. Rounds alternate which side runs first. It prints each side's median and range, the
ratio of the entries/s medians, the median and range of each round's ratio, and of each round's
ratio of CPU an entry (the process's and Redis's together).

``--url URL --tenant T`` runs one pass of the ``idverify`` on the path (``PYTHONPATH``; ``git
archive REV idverify | tar -x -C DIR`` for a revision's) on a server already running; with
``--callgrind PID``, that server running under ``valgrind --tool=callgrind`` (pid PID), it
reports the instructions the server ran for the pass an entry (``callgrind_control -z`` before
it, ``-e Ir`` after): the same on a loaded machine as on an idle one, where the times are not.

``--profile FILE`` runs one pass of this tree under cProfile instead and writes its stats to
FILE (``python -m pstats FILE``). With ``--json`` it prints one JSON object and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from idverify.audit.sequencer import PASS_LIMIT
from idverify.store.audit_stages import stage_sequencer
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.store.topology import close_client
from idverify.testing import RedisProcess, free_port, redis_server_binary

STAGE_CALL = 256
"""Entries staged a script call while filling the buckets (not measured)."""


def staged_pairs(bucket: int, first: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``bench/audit_rate.py``'s entry: a signup's usual shape, distinct per bucket and number."""
    return [
        (
            {"principal": "rate/registrar/c1", "request_id": f"r{bucket}-{n}", "trace_id": ""},
            {"type": "verification.completed", "outcome": "verified", "account": f"a{n}", "method": "sms"},
        )
        for n in range(first, first + count)
    ]


async def redis_usec(redis: RedisClient) -> tuple[int, int, float]:
    """Redis's time so far: in ``evalsha``, in every command but ``info``, and its CPU (user + sys)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    cpu: dict[str, Any] = await redis.info("cpu")
    commands = sum(int(v["usec"]) for k, v in stats.items() if k != "cmdstat_info")
    evalsha = int(stats.get("cmdstat_evalsha", {}).get("usec", 0))
    return evalsha, commands, (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6


def redis_instructions(callgrind: int | None, zero: bool) -> int:
    """The instructions the redis-server under callgrind (pid ``callgrind``) ran since zeroed; 0 for none."""
    if callgrind is None:
        return 0
    command = ["callgrind_control", "-z" if zero else "-e", *([] if zero else ["Ir"]), str(callgrind)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    # '-e Ir' answers a total a thread: '   Th 1  310,348,723'.
    return sum(int(line.split()[2].replace(",", "")) for line in done.stdout.splitlines() if " Th " in line)


async def one_pass(
    url: str, tenant: str, buckets: int, per_bucket: int, profile: str | None, *, callgrind: int | None = None
) -> dict[str, float]:
    """Stages the entries, then times one sequencing pass over them (in this process's ``idverify``)."""
    redis = connect(url)
    try:
        stager = SyntheticStager(redis)
        for bucket in range(buckets):
            for first in range(0, per_bucket, STAGE_CALL):
                await stager.stage(
                    tenant, bucket, staged_pairs(bucket, first, min(STAGE_CALL, per_bucket - first))
                )
        sequencer = stage_sequencer(redis, Scripts(redis), buckets)
        assert sequencer is not None  # noqa: S101 - buckets >= 1
        redis_before = await redis_usec(redis)
        redis_instructions(callgrind, zero=True)
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = await sequencer.sequence(tenant)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        redis_after = await redis_usec(redis)
        instructions = redis_instructions(callgrind, zero=False)
        if profiler is not None and profile:
            profiler.dump_stats(profile)
    finally:
        await close_client(redis)
    entries = buckets * per_bucket
    if report.appended != entries:
        msg = f"the pass appended {report.appended} of {entries} staged entries"
        raise RuntimeError(msg)
    instructions_an_entry = {"redis_instructions_per_entry": instructions / entries} if callgrind else {}
    return {
        **instructions_an_entry,
        "entries_per_second": entries / wall,
        "cpu_ms_per_1000": cpu * 1e6 / entries,
        "redis_ms_per_1000": (redis_after[0] - redis_before[0]) / entries,
        "redis_commands_ms_per_1000": (redis_after[1] - redis_before[1]) / entries,
        "redis_cpu_ms_per_1000": (redis_after[2] - redis_before[2]) / entries,
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def cpu_an_entry(run: dict[str, float]) -> float:
    return run["cpu_ms_per_1000"] + run["redis_cpu_ms_per_1000"]


def spread_of(values: list[float]) -> dict[str, float]:
    """Median, least and greatest, unrounded (for ratios)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def tree_at(revision: str, directory: Path) -> Path:
    """``revision``'s ``idverify`` package extracted under ``directory`` (the folder to put on the path)."""
    archive = subprocess.run(["git", "archive", revision, "idverify"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def measure(args: argparse.Namespace) -> dict[str, Any]:
    here = Path(__file__).resolve().parent.parent
    binary = redis_server_binary(prefer_system=True)
    with (
        tempfile.TemporaryDirectory() as directory,
        RedisProcess(Path(directory) / "redis", port=free_port(), binary=binary) as server,
    ):
        trees = {"this tree": here, args.against: tree_at(args.against, Path(directory) / "against")}
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            # Each round's order the other way round from the last's: a load that rises or falls
            # through a run weighs on both sides alike.
            order = list(trees.items()) if round_ % 2 == 0 else list(reversed(trees.items()))
            for side, (name, tree) in enumerate(order):
                environment = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{here}"}
                worker = [sys.executable, __file__, "--url", server.url, "--tenant", f"seq-{round_}-{side}"]
                sizes = ["--buckets", str(args.buckets), "--per-bucket", str(args.per_bucket)]
                done = subprocess.run([*worker, *sizes], check=True, capture_output=True, env=environment)
                figures[name].append(json.loads(done.stdout))
    summary = {
        name: {figure: spread([run[figure] for run in runs]) for figure in runs[0]}
        for name, runs in figures.items()
    }
    rate = {name: summary[name]["entries_per_second"]["median"] for name in trees}
    ours, theirs = figures["this tree"], figures[args.against]
    # Each round's two passes ran back to back: their ratio is the least troubled by the load.
    paired = [a["entries_per_second"] / b["entries_per_second"] for a, b in zip(ours, theirs, strict=True)]
    # CPU spent an entry, the process's and Redis's together: what a loaded machine disturbs least.
    cost = [cpu_an_entry(a) / cpu_an_entry(b) for a, b in zip(ours, theirs, strict=True)]
    return {
        "entries_a_pass": args.buckets * args.per_bucket,
        "rounds": args.rounds,
        "sides": summary,
        "ratio": round(rate["this tree"] / rate[args.against], 3),
        "round_ratios": {k: round(v, 3) for k, v in spread_of(paired).items()},
        "cpu_cost_ratios": {k: round(v, 3) for k, v in spread_of(cost).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main", help="the git revision whose sequencer is compared")
    parser.add_argument("--per-bucket", type=int, default=2048, help="entries staged in each bucket")
    parser.add_argument("--buckets", type=int, default=8, help="bucket streams of the tenant")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--profile", help="profile one pass of this tree into this file instead")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--url", help="one pass of this process's idverify on this server, no comparison")
    parser.add_argument("--tenant", default="seq", help="the tenant of --url's pass (a fresh one each pass)")
    parser.add_argument(
        "--callgrind", type=int, help="with --url: the pid of that redis-server under callgrind"
    )
    args = parser.parse_args()
    if args.per_bucket > PASS_LIMIT:
        parser.error(f"--per-bucket is at most the pass limit, {PASS_LIMIT}")
    if args.url:
        alone = asyncio.run(
            one_pass(args.url, args.tenant, args.buckets, args.per_bucket, None, callgrind=args.callgrind)
        )
        print(json.dumps(alone))
        return
    if args.profile:
        with (
            tempfile.TemporaryDirectory() as directory,
            RedisProcess(
                Path(directory), port=free_port(), binary=redis_server_binary(prefer_system=True)
            ) as server,
        ):
            profiled = asyncio.run(
                one_pass(server.url, args.tenant, args.buckets, args.per_bucket, args.profile)
            )
        print(json.dumps(profiled))
        return
    figures = measure(args)
    if args.json:
        print(json.dumps(figures))
        return
    for name, side in figures["sides"].items():
        rate, cpu = side["entries_per_second"], side["cpu_ms_per_1000"]
        lua, commands, redis_cpu = (
            side["redis_ms_per_1000"],
            side["redis_commands_ms_per_1000"],
            side["redis_cpu_ms_per_1000"],
        )
        print(
            f"{name}: {rate['median']} entries/s ({rate['min']}-{rate['max']}), per 1,000 entries "
            f"{cpu['median']} ms CPU; Redis {lua['median']} ms evalsha, {commands['median']} ms in "
            f"all commands, {redis_cpu['median']} ms CPU"
        )
    paired, cost = figures["round_ratios"], figures["cpu_cost_ratios"]
    print(f"ratio: {figures['ratio']} (each round's: {paired['median']}, {paired['min']}-{paired['max']})")
    print(f"CPU an entry, process and Redis: {cost['median']} ({cost['min']}-{cost['max']})")


if __name__ == "__main__":
    main()
