"""The figures of docs/CAPACITY.md: start-up, memory per worker, Redis memory per identity and audit event.

    .venv/bin/python bench/capacity.py [--signups 3000] [--workers 2] [--audit-tiles] [--json]

It starts a redis-server of its own and ``idverify serve --redis-url`` on it, drives real signups
(the code path production runs, Lua scripts included), then measures:

- start-up: seconds from launch to SERVING, and to every worker answering IP lookups from the
  bundled database, cold (a new data directory: the IP table cache is built) and warm (the same
  directory again: the workers map the cache);
- RSS and PSS of the supervisor and each worker, idle and after the load (PSS splits the pages
  the forked workers still share, so it is the honest per-worker figure);
- Redis ``used_memory`` as the key families are deleted one after another: short-lived keys
  (sessions, idempotency, counters), then the per-identity keys (account, identity, its
  accounts), then the audit log, giving bytes per verified identity and per audit event.

``--audit-tiles`` measures twice, on a fresh Redis each time: without tiles, then with
``audit_tiles_dir`` set, once the servers have trimmed what the tiles hold (Redis keeps each
tenant's newest ``KEPT`` entries); both side by side, with the tiles' bytes on disk per entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import redis

from idverify.audit.trimmed_entries import KEPT
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import account_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify import BENCH_CONFIG, CodeReader, drive, install_bench_sender

# Key families (the part after the hash tag: iv1:{t:T}:<family>:..., see store/keys.py).
TRANSIENT = frozenset({"vf", "req", "rl", "otpfail"})
PER_IDENTITY = frozenset({"acct", "id", "idacc"})
AUDIT = frozenset({"audit"})
# What a worker logs once its IP tables answer (see idverify/flows/ip_locator.py).
TABLES_READY = "geo: IP tables ready"
START_TIMEOUT_SECONDS = 120.0


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS of a process, in MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines():
        name, _, rest = line.partition(":")
        if name in {"Rss", "Pss"}:
            fields[name.lower() + "_mib"] = round(int(rest.split()[0]) / 1024, 1)
    return fields


def processes(server: ServerProcess) -> dict[str, int]:
    """The supervisor and its worker processes."""
    if server.process is None:
        msg = "server not started"
        raise RuntimeError(msg)
    supervisor = server.process.pid
    children = [
        int(child)
        for task in Path(f"/proc/{supervisor}/task").iterdir()
        for child in (task / "children").read_text(encoding="ascii").split()
    ]
    workers = [pid for pid in children if b"idverify" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return {"supervisor": supervisor, **{f"worker_{n}": pid for n, pid in enumerate(sorted(workers))}}


def start_up(server: ServerProcess, workers: int) -> dict[str, object]:
    """Starts the server; seconds from launch to SERVING and to IP lookups in every worker.

    Also each worker's PSS then: after a cold start, one of them built the tables.
    """
    before = server.log_text().count(TABLES_READY)
    launched = time.monotonic()
    server.start()
    serving = time.monotonic() - launched
    deadline = launched + START_TIMEOUT_SECONDS
    while server.log_text().count(TABLES_READY) < before + workers:
        if time.monotonic() > deadline:
            msg = f"IP tables not ready in {START_TIMEOUT_SECONDS:.0f} s:\n{server.log_tail()}"
            raise TimeoutError(msg)
        time.sleep(0.02)
    lookups = time.monotonic() - launched
    with server.client("platform") as platform:
        answer = platform.account.LookupIp(account_pb2.LookupIpRequest(ip="8.8.8.8"), timeout=30)
    if answer.location.country_code != "US":
        msg = f"8.8.8.8 answered {answer.location}"
        raise RuntimeError(msg)
    pss = [
        figures["pss_mib"] for name, figures in process_memory(server).items() if name.startswith("worker_")
    ]
    return {"serving_s": round(serving, 2), "ip_lookups_s": round(lookups, 2), "worker_pss_mib": pss}


def process_memory(server: ServerProcess) -> dict[str, dict[str, float]]:
    """RSS and PSS of the supervisor and each worker."""
    return {name: memory_of(pid) for name, pid in processes(server).items()}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def family(key: bytes) -> str:
    """``acct`` for ``iv1:{t:T}:acct:...`` (the hash tag itself contains colons)."""
    return key.partition(b"}:")[2].split(b":", 1)[0].decode()


def delete_matching(client: redis.Redis, families: frozenset[str]) -> int:
    """Deletes every key of the given families; returns how many."""
    doomed = [key for key in client.scan_iter(count=5000) if family(key) in families]
    for start in range(0, len(doomed), 1000):
        client.delete(*doomed[start : start + 1000])
    return len(doomed)


def audit_events(client: redis.Redis) -> tuple[int, int]:
    """Entries in the audit logs, and those Redis holds (fewer once trimmed into tiles)."""
    total = held = 0
    for key in client.scan_iter(match="*:audit:head", count=1000):
        total += int(client.hget(key, "size") or 0)
        held += int(client.hlen(key[: -len(b"head")] + b"log"))
    return total, held


def wait_trimmed(client: redis.Redis, timeout: float = 120.0) -> None:
    """Until every log is trimmed to its newest ``KEPT`` entries (the servers trim after integrating)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        heads = [client.hmget(key, ["size", "trimmed"]) for key in client.scan_iter(match="*:audit:head")]
        if all(int(trimmed or 0) >= int(size or 0) - KEPT for size, trimmed in heads):
            return
        time.sleep(0.5)
    msg = "the audit logs were not trimmed in time"
    raise RuntimeError(msg)


def directory_bytes(root: Path, *, full_only: bool = False) -> int:
    """Bytes of the files below ``root``; with ``full_only``, of no partial tile (``.p/``) among them."""
    return sum(
        path.stat().st_size
        for path in root.rglob("*")
        if path.is_file()
        and not (full_only and any(part.endswith(".p") for part in path.relative_to(root).parts))
    )


def measure(signups: int, workers: int, *, audit_tiles: bool = False) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="idverify-capacity-") as scratch:
        root = Path(scratch)
        tiles = root / "tiles"
        tiles_setting = f'audit_tiles_dir = "{tiles}"\n' if audit_tiles else ""
        store = RedisProcess(root / "redis", port=free_port(), binary=redis_server_binary(prefer_system=True))
        store.start()
        try:
            client = redis.Redis(port=store.port)
            install_bench_sender(root / "site")
            codes_path = root / "codes.txt"

            def server_process() -> ServerProcess:
                return ServerProcess(
                    root / "server",
                    config=tiles_setting + BENCH_CONFIG.format(codes=codes_path),
                    redis_url=store.url,
                    extra_args=["--workers", str(workers)],
                    env={"PYTHONPATH": str(root / "site"), "BENCH_CODE_SENDER_ACK": "codes-leave-the-server"},
                )

            cold_server = server_process()
            try:
                cold = start_up(cold_server, workers)
            finally:
                cold_server.stop()
            server = server_process()
            try:
                warm = start_up(server, workers)
                server.wait_quiet()
                idle = process_memory(server)
                empty = used_memory(client)
                token = server.token("registrar")
                wall, _ = asyncio.run(drive(server.target, token, CodeReader(codes_path), range(signups), 48))
                if audit_tiles:
                    wait_trimmed(client)
                loaded = process_memory(server)
            finally:
                server.stop()
            full = used_memory(client)
            transient = delete_matching(client, TRANSIENT)
            without_transient = used_memory(client)
            identities = sum(family(key) == "acct" for key in client.scan_iter(count=5000))
            events, held_events = audit_events(client)
            tiles_bytes = directory_bytes(tiles) if audit_tiles else 0
            full_tiles_bytes = directory_bytes(tiles, full_only=True) if audit_tiles else 0
            identity_keys = delete_matching(client, PER_IDENTITY)
            without_identities = used_memory(client)
            audit_keys = delete_matching(client, AUDIT)
            without_audit = used_memory(client)
        finally:
            store.stop()
    per_identity = (without_transient - without_identities) / identities
    per_event = (without_identities - without_audit) / max(events, 1)
    per_signup = (without_transient - empty) / signups
    worker_pss = [figures["pss_mib"] for name, figures in idle.items() if name.startswith("worker_")]
    return {
        "signups": signups,
        "workers": workers,
        "audit_tiles": audit_tiles,
        "start_up_cold": cold,
        "start_up_warm": warm,
        "worker_pss_idle_mib": worker_pss,
        "worker_pss_idle_max_mib": max(worker_pss),
        "throughput_per_s": round(signups / wall, 1),
        "process_memory_idle": idle,
        "process_memory_after_load": loaded,
        "redis_used_memory_empty_mib": round(empty / 2**20, 2),
        "redis_used_memory_after_mib": round(full / 2**20, 2),
        "transient_keys": transient,
        "verified_identities": identities,
        "identity_keys": identity_keys,
        "audit_events": events,
        "audit_events_held_in_redis": held_events,
        "audit_keys": audit_keys,
        "bytes_per_identity": round(per_identity),
        "bytes_per_audit_event": round(per_event),
        "redis_bytes_per_signup": round(per_signup),
        "tiles_bytes_on_disk": tiles_bytes,
        "tiles_bytes_per_audit_event": round(tiles_bytes / max(events, 1)),
        # Every round writes its partial tiles anew (a reader of an old head finds them); the
        # full tiles alone are what a log keeps once its partials are collected.
        "full_tiles_bytes_per_audit_event": round(full_tiles_bytes / max(events, 1)),
        "gib_per_million_identities": round(per_identity * 1e6 / 2**30, 2),
        "gib_per_million_audit_events": round(per_event * 1e6 / 2**30, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signups", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--audit-tiles", action="store_true", help="measure without tiles, then with audit_tiles_dir set"
    )
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    figures: dict[str, object] = measure(options.signups, options.workers)
    if options.audit_tiles:
        figures = {
            "tiles_off": figures,
            "tiles_on": measure(options.signups, options.workers, audit_tiles=True),
        }
    print(json.dumps(figures, indent=None if options.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
