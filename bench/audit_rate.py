"""Audit appends for one tenant end to end: concurrent appenders, the integrator and its tiles at once.

    .venv/bin/python bench/audit_rate.py [--seconds 20] [--appenders 3] [--batch 32] [--json]

It starts its own redis-server and a tiles directory beside it, then runs, for ``--seconds``:

- ``--appenders`` processes, each appending synthetic entries to one tenant's log through the
  prelude's real ``audit()`` (``store.synthetic_audit``), ``--batch`` entries a script call (a
  signup appends a few entries in each of its scripts), as fast as Redis answers;
- one integrator process built as the server builds it (``store.audit_logs.configured_audit_log``
  with ``audit_tiles_dir`` set: the integrator, its ``TileMirror`` writing bundles and tiles
  first, then the head's check-and-set, and the trims behind it), folding every
  ``INTEGRATION_INTERVAL_SECONDS`` as the server's loop does;

and samples the log's size (appended) and the tree head's size (integrated) four times a
second. It prints appended/s and integrated/s over the window, the lag (appended - integrated)
at the end and its maximum, whether the lag stayed bounded (its maximum over the window's second
half within one round of its first half's), the CPU each process spent per 1,000 entries, and
the integrator's fsyncs per second (files and directories). Beside them, floors from the same
run: the same appenders with no integrator (bare appends/s, on a fresh tenant), and entries
folded per second by ``CompactRange.extend`` in this process (a leaf hash and, amortised, one
node hash an entry: the integrator's hashing alone, on one core).

There is no staging per bucket nor sequencer apart from the integrator yet (issue 26): the
entries go straight into the tenant's log, and the integrator is the sequencer.

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from idverify.audit.integrator import BATCH
from idverify.audit.merkle import CompactRange, leaf_hash
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.flows.audit_setup import INTEGRATION_INTERVAL_SECONDS
from idverify.store.audit_logs import configured_audit_log
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing import RedisProcess, free_port, redis_server_binary

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

TENANT, FLOOR_TENANT = "rate", "floor"
SAMPLE_SECONDS = 0.25
_CONTEXT = multiprocessing.get_context("spawn")


def entry_pairs(appender: int, first: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A signup's usual entry shape, distinct per appender and number."""
    return [
        (
            {"principal": f"{TENANT}/registrar/c1", "request_id": f"r{appender}-{n}", "trace_id": ""},
            {"type": "verification.completed", "outcome": "verified", "account": f"a{n}", "method": "sms"},
        )
        for n in range(first, first + count)
    ]


def append_until(
    *, url: str, tenant: str, appender: int, batch: int, stop: Event, ready: Synchronized[int]
) -> None:
    """An appender process: ``batch`` entries a script call until ``stop`` is set."""

    async def run() -> None:
        redis = connect(url)
        script = SyntheticAppender(redis)
        await script.append(tenant, entry_pairs(appender, 0, batch))
        with ready.get_lock():
            ready.value += 1
        number = batch
        while not stop.is_set():
            await script.append(tenant, entry_pairs(appender, number, batch))
            number += batch
        await redis.aclose(close_connection_pool=True)

    asyncio.run(run())


def integrate_until(
    *, url: str, tiles: str, tenant: str, stop: Event, fsyncs: Synchronized[int], dir_syncs: Synchronized[int]
) -> None:
    """The integrator process: the server's log and loop, its fsyncs counted."""
    real_fsync = os.fsync

    def counted_fsync(descriptor: FileDescriptorLike) -> None:
        number = descriptor if isinstance(descriptor, int) else descriptor.fileno()
        counter = dir_syncs if stat.S_ISDIR(os.fstat(number).st_mode) else fsyncs
        with counter.get_lock():
            counter.value += 1
        real_fsync(descriptor)

    async def run() -> None:
        redis = connect(url)
        log = configured_audit_log(redis, Scripts(redis), tiles)
        assert isinstance(log, TiledAuditLog)  # noqa: S101 - audit_tiles_dir is set
        while not stop.is_set():
            await log.integrate(tenant)
            await asyncio.sleep(INTEGRATION_INTERVAL_SECONDS)
        await log.idle()
        await redis.aclose(close_connection_pool=True)

    with mock.patch.object(os, "fsync", counted_fsync):  # durable_files calls it as os.fsync
        asyncio.run(run())


@dataclass
class Sample:
    """The log's size and the tree head's, ``seconds`` into the window."""

    seconds: float
    appended: int
    integrated: int

    @property
    def lag(self) -> int:
        """Entries appended and not yet integrated."""
        return self.appended - self.integrated


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (Linux's ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(store: AuditStore, tenant: str, started: float) -> Sample:
    appended = await store.size(tenant)
    integrated = (await store.tree_state(tenant)).size
    return Sample(time.monotonic() - started, appended, integrated)


async def command_usec(redis: RedisClient) -> dict[str, int]:
    """Microseconds Redis spent in each command (``INFO commandstats``; scripts under ``evalsha``)."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["usec"]) for name, value in stats.items()}


async def start_appenders(url: str, tenant: str, count: int, batch: int, stop: Event) -> list[Any]:
    """The appender processes, once each has appended (their imports take seconds on a busy machine)."""
    ready = _CONTEXT.Value("q", 0)
    processes = [
        _CONTEXT.Process(
            target=append_until,
            kwargs={
                "url": url,
                "tenant": tenant,
                "appender": number,
                "batch": batch,
                "stop": stop,
                "ready": ready,
            },
            daemon=True,
        )
        for number in range(count)
    ]
    for process in processes:
        process.start()
    while ready.value < count:  # noqa: ASYNC110 - another process's counter
        await asyncio.sleep(0.05)
    return processes


def join(processes: list[Any]) -> None:
    for process in processes:
        process.join(timeout=30)
        if process.exitcode != 0:
            raise RuntimeError(f"a bench process ended with {process.exitcode}")


async def bare_appends(url: str, appenders: int, batch: int, seconds: float) -> float:
    """Appends/s of the same appenders with no integrator, on a tenant of its own."""
    redis = connect(url)
    store = AuditStore(redis, Scripts(redis))
    stop = _CONTEXT.Event()
    processes = await start_appenders(url, FLOOR_TENANT, appenders, batch, stop)
    first, started = await store.size(FLOOR_TENANT), time.monotonic()
    await asyncio.sleep(seconds)
    last, ended = await store.size(FLOOR_TENANT), time.monotonic()
    stop.set()
    join(processes)
    await redis.aclose(close_connection_pool=True)
    return (last - first) / (ended - started)


def folds_per_second(seconds: float = 1.0) -> float:
    """Entries ``CompactRange.extend`` folds per second in this process, rounds of ``BATCH``."""
    entries = [json.dumps(pair).encode() for pair in entry_pairs(0, 0, BATCH)]
    compact, folded, started = CompactRange(), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        compact, _ = compact.extend(leaf_hash(entry) for entry in entries)
        folded += len(entries)
    return folded / (time.monotonic() - started)


async def end_to_end(url: str, tiles: str, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    redis = connect(url)
    store = AuditStore(redis, Scripts(redis))
    stop = _CONTEXT.Event()
    fsyncs, dir_syncs = _CONTEXT.Value("q", 0), _CONTEXT.Value("q", 0)
    integrator = _CONTEXT.Process(
        target=integrate_until,
        kwargs={
            "url": url,
            "tiles": tiles,
            "tenant": TENANT,
            "stop": stop,
            "fsyncs": fsyncs,
            "dir_syncs": dir_syncs,
        },
        daemon=True,
    )
    integrator.start()
    appenders = await start_appenders(url, TENANT, args.appenders, args.batch, stop)
    await asyncio.sleep(1.0)  # the integrator's first rounds
    watched = {
        "appenders": [p.pid for p in appenders],
        "integrator": [integrator.pid],
        "redis-server": [redis_pid],
    }
    cpu_before = {name: sum(map(cpu_seconds, ps)) for name, ps in watched.items()}
    redis_before = await command_usec(redis)
    syncs_before = (fsyncs.value, dir_syncs.value)
    started = time.monotonic()
    samples = [await sample(store, TENANT, started)]
    while samples[-1].seconds < args.seconds:
        await asyncio.sleep(SAMPLE_SECONDS)
        samples.append(await sample(store, TENANT, started))
    cpu_after = {name: sum(map(cpu_seconds, ps)) for name, ps in watched.items()}
    redis_after = await command_usec(redis)
    syncs_after = (fsyncs.value, dir_syncs.value)
    first, last = samples[0], samples[-1]
    elapsed = last.seconds - first.seconds
    appended = last.appended - first.appended
    integrated = last.integrated - first.integrated
    half = len(samples) // 2
    early, late = max(s.lag for s in samples[:half]), max(s.lag for s in samples[half:])
    # The appenders stop; the integrator is timed catching up with what they left.
    stop_appending = time.monotonic()
    for process in appenders:
        process.kill()
    join_killed(appenders)
    final = await store.size(TENANT)
    while (await store.tree_state(TENANT)).size < final:  # noqa: ASYNC110 - another process's head
        await asyncio.sleep(0.05)
    catch_up = time.monotonic() - stop_appending
    stop.set()
    join([integrator])
    await redis.aclose(close_connection_pool=True)
    per_thousand = {
        name: round((cpu_after[name] - cpu_before[name]) / max(appended, 1) * 1e6, 1) for name in watched
    }
    return {
        "appended_per_s": round(appended / elapsed),
        "integrated_per_s": round(integrated / elapsed),
        "lag_end": last.lag,
        "lag_max": max(s.lag for s in samples),
        "lag_max_first_half": early,
        "lag_max_second_half": late,
        "sustained": late <= early + BATCH,
        "catch_up_after_stop_s": round(catch_up, 2),
        "cpu_ms_per_1000_entries": per_thousand,
        "redis_ms_per_1000_entries_by_command": {
            name: round((usec - redis_before.get(name, 0)) / max(appended, 1), 2)
            for name, usec in sorted(redis_after.items(), key=lambda item: -item[1])
            if usec - redis_before.get(name, 0) >= max(appended, 1) / 100
        },
        "file_fsyncs_per_s": round((syncs_after[0] - syncs_before[0]) / elapsed, 1),
        "directory_fsyncs_per_s": round((syncs_after[1] - syncs_before[1]) / elapsed, 1),
        "window_s": round(elapsed, 2),
        "lag_samples": [s.lag for s in samples],
    }


def join_killed(processes: list[Any]) -> None:
    for process in processes:
        process.join(timeout=30)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.directory) as directory:
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(directory) / "redis", port=free_port(), binary=binary) as store_process:
            if store_process.process is None:
                raise RuntimeError("redis-server did not start")
            url, redis_pid = store_process.url, store_process.process.pid
            tiles = str(Path(directory) / "tiles")
            figures: dict[str, Any] = {
                "appenders": args.appenders,
                "batch": args.batch,
                "load_average_at_start": os.getloadavg()[0],
                "floor_entries_folded_per_s": round(folds_per_second()),
                "floor_bare_appends_per_s": round(
                    await bare_appends(url, args.appenders, args.batch, args.floor_seconds)
                ),
            }
            figures.update(await end_to_end(url, tiles, redis_pid, args))
            figures["load_average_at_end"] = os.getloadavg()[0]
            return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="the end-to-end window")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="the bare appends' window")
    parser.add_argument("--appenders", type=int, default=3, help="appender processes")
    parser.add_argument("--batch", type=int, default=32, help="entries an appender's script call appends")
    parser.add_argument("--directory", default=None, help="where Redis and the tiles go (a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{figures['appenders']} appenders x {figures['batch']} entries a call, {figures['window_s']} s: "
        f"appended {figures['appended_per_s']:,}/s, integrated {figures['integrated_per_s']:,}/s"
    )
    print(
        f"lag at the end {figures['lag_end']:,}, max {figures['lag_max']:,} "
        f"(halves {figures['lag_max_first_half']:,} / {figures['lag_max_second_half']:,}: "
        f"{'sustained' if figures['sustained'] else 'growing'}); caught up "
        f"{figures['catch_up_after_stop_s']} s after the appenders stopped"
    )
    cpu = ", ".join(f"{name} {ms} ms" for name, ms in figures["cpu_ms_per_1000_entries"].items())
    print(f"CPU per 1,000 entries: {cpu}")
    by_command = figures["redis_ms_per_1000_entries_by_command"]
    redis = ", ".join(f"{name} {ms} ms" for name, ms in by_command.items())
    print(f"Redis per 1,000 entries, by command: {redis}")
    print(f"fsyncs/s: {figures['file_fsyncs_per_s']} files, {figures['directory_fsyncs_per_s']} directories")
    print(
        f"floors: bare appends {figures['floor_bare_appends_per_s']:,}/s, "
        f"folded in Python {figures['floor_entries_folded_per_s']:,} entries/s"
    )


if __name__ == "__main__":
    main()
