"""Audit appends for one tenant end to end: concurrent appenders, the integrator and its tiles at once.

    .venv/bin/python bench/audit_rate.py [--seconds 20] [--appenders 3] [--batch 32]
        [--stage-buckets N [--cluster]] [--json]

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

By default the entries go straight into the tenant's log (``audit()``, as every script does
today). With ``--stage-buckets N`` (issue 26) the appenders *stage* them instead
(``audit_stage``, each call into the next of N bucket streams in turn) and the integrator process
runs the server's loop with its sequencer (``audit.sequencer``): each pass sequences every bucket
into the log, then integrates. It then also reports staged/s (what the appenders wrote) and
sequenced/s (the log's growth), and the lag counts from the staged entries. ``--cluster`` runs
it all on a local 3-primary Redis Cluster (``store.local_topologies.LocalCluster``), where the
bucket streams hash to all three shards and the log to one; Redis's CPU and time by command are
then summed over the primaries.

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
from idverify.store.audit_stages import stage_sequencer
from idverify.store.audit_store import AuditStore
from idverify.store.connection import connect
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender, SyntheticStager
from idverify.store.topology import close_client
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
    *,
    url: str,
    tenant: str,
    appender: int,
    batch: int,
    buckets: int,
    stop: Event,
    ready: Synchronized[int],
    written: Synchronized[int],
) -> None:
    """An appender process: ``batch`` entries a script call (staged in turn if ``buckets``) until ``stop``."""

    async def run() -> None:
        redis = connect(url)
        appender_script, stager = SyntheticAppender(redis), SyntheticStager(redis)
        number = 0

        async def write() -> None:
            nonlocal number
            pairs = entry_pairs(appender, number, batch)
            if buckets:
                await stager.stage(tenant, (appender + number // batch) % buckets, pairs)
            else:
                await appender_script.append(tenant, pairs)
            number += batch
            with written.get_lock():
                written.value += batch

        await write()
        with ready.get_lock():
            ready.value += 1
        while not stop.is_set():
            await write()
        await close_client(redis)

    asyncio.run(run())


def integrate_until(
    *,
    url: str,
    tiles: str,
    tenant: str,
    buckets: int,
    stop: Event,
    fsyncs: Synchronized[int],
    dir_syncs: Synchronized[int],
) -> None:
    """The integrator process: the server's log and loop (its sequencer first), its fsyncs counted."""
    real_fsync = os.fsync

    def counted_fsync(descriptor: FileDescriptorLike) -> None:
        number = descriptor if isinstance(descriptor, int) else descriptor.fileno()
        counter = dir_syncs if stat.S_ISDIR(os.fstat(number).st_mode) else fsyncs
        with counter.get_lock():
            counter.value += 1
        real_fsync(descriptor)

    async def run() -> None:
        redis = connect(url)
        scripts = Scripts(redis)
        log = configured_audit_log(redis, scripts, tiles)
        assert isinstance(log, TiledAuditLog)  # noqa: S101 - audit_tiles_dir is set
        sequencer = stage_sequencer(redis, scripts, buckets)
        while not stop.is_set():
            if sequencer is not None:
                await sequencer.sequence(tenant)
            await log.integrate(tenant)
            await asyncio.sleep(INTEGRATION_INTERVAL_SECONDS)
        await log.idle()
        await close_client(redis)

    with mock.patch.object(os, "fsync", counted_fsync):  # durable_files calls it as os.fsync
        asyncio.run(run())


@dataclass
class Sample:
    """Entries written (appended or staged), the log's size and the tree head's, ``seconds`` in."""

    seconds: float
    written: int
    sequenced: int
    integrated: int

    @property
    def lag(self) -> int:
        """Entries written and not yet integrated."""
        return self.written - self.integrated


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (Linux's ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(store: AuditStore, tenant: str, started: float, written: Synchronized[int] | None) -> Sample:
    """``written``: the appenders' count (staged entries); None: the log's size is what was written."""
    sequenced = await store.size(tenant)
    integrated = (await store.tree_state(tenant)).size
    return Sample(
        time.monotonic() - started, sequenced if written is None else written.value, sequenced, integrated
    )


async def command_usec(node_urls: list[str]) -> dict[str, int]:
    """Microseconds the nodes spent in each command (``INFO commandstats``; scripts under ``evalsha``)."""
    total: dict[str, int] = {}
    for url in node_urls:
        node = connect(url)
        stats = await node.info("commandstats")
        await close_client(node)
        for name, value in stats.items():
            command = name.removeprefix("cmdstat_")
            total[command] = total.get(command, 0) + int(value["usec"])
    return total


async def start_appenders(
    url: str, tenant: str, count: int, *, batch: int, buckets: int, stop: Event, written: Synchronized[int]
) -> list[Any]:
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
                "buckets": buckets,
                "stop": stop,
                "ready": ready,
                "written": written,
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


async def bare_appends(url: str, appenders: int, batch: int, buckets: int, seconds: float) -> float:
    """Appends (or stages) a second of the same appenders with no integrator, on a tenant of its own."""
    stop, written = _CONTEXT.Event(), _CONTEXT.Value("q", 0)
    processes = await start_appenders(
        url, FLOOR_TENANT, appenders, batch=batch, buckets=buckets, stop=stop, written=written
    )
    first, started = int(written.value), time.monotonic()
    await asyncio.sleep(seconds)
    last, ended = int(written.value), time.monotonic()
    stop.set()
    join(processes)
    return (last - first) / (ended - started)


def folds_per_second(seconds: float = 1.0) -> float:
    """Entries ``CompactRange.extend`` folds per second in this process, rounds of ``BATCH``."""
    entries = [json.dumps(pair).encode() for pair in entry_pairs(0, 0, BATCH)]
    compact, folded, started = CompactRange(), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        compact, _ = compact.extend(leaf_hash(entry) for entry in entries)
        folded += len(entries)
    return folded / (time.monotonic() - started)


@dataclass(frozen=True)
class Store:
    """The Redis the bench runs on: its URL, and its data nodes' URLs and pids (one, or the primaries)."""

    url: str
    node_urls: list[str]
    pids: list[int]


async def end_to_end(store_at: Store, tiles: str, args: argparse.Namespace) -> dict[str, Any]:
    buckets = args.stage_buckets
    redis = connect(store_at.url)
    store = AuditStore(redis, Scripts(redis))
    stop, written = _CONTEXT.Event(), _CONTEXT.Value("q", 0)
    counted = written if buckets else None
    fsyncs, dir_syncs = _CONTEXT.Value("q", 0), _CONTEXT.Value("q", 0)
    integrator = _CONTEXT.Process(
        target=integrate_until,
        kwargs={
            "url": store_at.url,
            "tiles": tiles,
            "tenant": TENANT,
            "buckets": buckets,
            "stop": stop,
            "fsyncs": fsyncs,
            "dir_syncs": dir_syncs,
        },
        daemon=True,
    )
    integrator.start()
    appenders = await start_appenders(
        store_at.url, TENANT, args.appenders, batch=args.batch, buckets=buckets, stop=stop, written=written
    )
    await asyncio.sleep(1.0)  # the integrator's first rounds
    watched = {
        "appenders": [p.pid for p in appenders],
        "integrator": [integrator.pid],
        "redis-server": store_at.pids,
    }
    cpu_before = {name: sum(map(cpu_seconds, ps)) for name, ps in watched.items()}
    redis_before = await command_usec(store_at.node_urls)
    syncs_before = (fsyncs.value, dir_syncs.value)
    started = time.monotonic()
    samples = [await sample(store, TENANT, started, counted)]
    while samples[-1].seconds < args.seconds:
        await asyncio.sleep(SAMPLE_SECONDS)
        samples.append(await sample(store, TENANT, started, counted))
    cpu_after = {name: sum(map(cpu_seconds, ps)) for name, ps in watched.items()}
    redis_after = await command_usec(store_at.node_urls)
    syncs_after = (fsyncs.value, dir_syncs.value)
    first, last = samples[0], samples[-1]
    elapsed = last.seconds - first.seconds
    appended = last.written - first.written
    sequenced = last.sequenced - first.sequenced
    integrated = last.integrated - first.integrated
    half = len(samples) // 2
    early, late = max(s.lag for s in samples[:half]), max(s.lag for s in samples[half:])
    # The appenders stop; the integrator is timed catching up with what they left.
    stop_appending = time.monotonic()
    for process in appenders:
        process.kill()
    join_killed(appenders)
    final = written.value if buckets else await store.size(TENANT)
    while (await store.tree_state(TENANT)).size < final:  # noqa: ASYNC110 - another process's head
        await asyncio.sleep(0.05)
    catch_up = time.monotonic() - stop_appending
    stop.set()
    join([integrator])
    await close_client(redis)
    per_thousand = {
        name: round((cpu_after[name] - cpu_before[name]) / max(appended, 1) * 1e6, 1) for name in watched
    }
    return {
        "appended_per_s": round(appended / elapsed),
        "sequenced_per_s": round(sequenced / elapsed),
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


def _pid(node: RedisProcess) -> int:
    if node.process is None:
        raise RuntimeError("redis-server did not start")
    return node.process.pid


async def measure_on(store_at: Store, directory: str, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "appenders": args.appenders,
        "batch": args.batch,
        "stage_buckets": args.stage_buckets,
        "cluster_primaries": len(store_at.pids) if args.cluster else 0,
        "load_average_at_start": os.getloadavg()[0],
        "floor_entries_folded_per_s": round(folds_per_second()),
        "floor_bare_appends_per_s": round(
            await bare_appends(
                store_at.url, args.appenders, args.batch, args.stage_buckets, args.floor_seconds
            )
        ),
    }
    figures.update(await end_to_end(store_at, str(Path(directory) / "tiles"), args))
    figures["load_average_at_end"] = os.getloadavg()[0]
    return figures


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.directory) as directory:
        if args.cluster:
            with LocalCluster(Path(directory) / "cluster") as cluster:
                nodes = cluster.primary_nodes
                store_at = Store(cluster.url, [n.url for n in nodes], [_pid(n) for n in nodes])
                return await measure_on(store_at, directory, args)
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(directory) / "redis", port=free_port(), binary=binary) as node:
            return await measure_on(Store(node.url, [node.url], [_pid(node)]), directory, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="the end-to-end window")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="the bare appends' window")
    parser.add_argument("--appenders", type=int, default=3, help="appender processes")
    parser.add_argument("--batch", type=int, default=32, help="entries an appender's script call appends")
    parser.add_argument("--directory", default=None, help="where Redis and the tiles go (a temporary folder)")
    parser.add_argument(
        "--stage-buckets", type=int, default=0, help="stage entries in this many bucket streams (0: audit())"
    )
    parser.add_argument("--cluster", action="store_true", help="on a local 3-primary Redis Cluster")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(figures))
        return
    where = f" on {figures['cluster_primaries']} primaries" if figures["cluster_primaries"] else ""
    if figures["stage_buckets"]:
        print(
            f"{figures['appenders']} appenders x {figures['batch']} entries a call staged in "
            f"{figures['stage_buckets']} buckets{where}, {figures['window_s']} s: staged "
            f"{figures['appended_per_s']:,}/s, sequenced {figures['sequenced_per_s']:,}/s, "
            f"integrated {figures['integrated_per_s']:,}/s"
        )
    else:
        print(
            f"{figures['appenders']} appenders x {figures['batch']} entries a call{where}, "
            f"{figures['window_s']} s: appended {figures['appended_per_s']:,}/s, "
            f"integrated {figures['integrated_per_s']:,}/s"
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
        f"floors: bare {'stages' if figures['stage_buckets'] else 'appends'} "
        f"{figures['floor_bare_appends_per_s']:,}/s, "
        f"folded in Python {figures['floor_entries_folded_per_s']:,} entries/s"
    )


if __name__ == "__main__":
    main()
