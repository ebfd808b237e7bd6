"""The figures of docs/CAPACITY.md: start-up, memory per worker, Redis memory per identity and audit event.

    .venv/bin/python bench/capacity.py [--signups 3000] [--workers 2] [--audit-tiles] [--json]

It starts a redis-server of its own and ``idverify serve --redis-url`` on it, drives real signups
(the code path production runs, Lua scripts included), then measures:

- start-up: seconds from launch to SERVING, and to every worker answering IP lookups from the
  bundled database, cold (a new data directory: the IP table cache is built) and warm (the same
  directory again: the workers map the cache);
- RSS and PSS of the supervisor and each worker, idle and after the load (PSS splits the pages
  the forked workers still share, so it is the honest per-worker figure);
- Redis memory by key family (``MEMORY USAGE`` of every key, grouped by the patterns of
  ``store/keys.py``), less the empty store's, each family marked by how it grows: ``of record``
  (with every signup, forever: the target's "everything kept" counts these per signup; a
  family only older servers write is named in ``legacy_families``),
  ``expiring`` (every key has a TTL), ``retention`` (trimmed by age or to a fixed window: the
  outbox, the audit entries a trimmed log keeps; sized by rate and retention, not per signup) or
  ``fixed`` (a few keys a tenant or deployment);
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
# How a family's memory grows when its keys carry no TTL (the rest, unlisted, is of record).
RETENTION = frozenset({"events:outbox"})
FIXED = frozenset(
    {"audit:head", "audit:treehead", "audit:signing-key", "events:trimmed", "client", "clients"}
)
# Families this release no longer writes: what older servers left, emptied as their records are
# touched. The account ids sealed for events were the tenant's events:acct hash (≈ 160 bytes a
# bound account); they are now a field of each acct, counted with it. On a fresh store a run
# lists none: "legacy_families" names any that appear, so a regression shows.
LEGACY = frozenset({"events:acct"})
# The families of the audit log's query postings, per filter field.
POSTINGS = ("audit:ix:acct", "audit:ix:type", "audit:ix:outcome", "audit:ix:method")
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


def key_group(key: bytes) -> str:
    """A key's family as ``store/keys.py`` names it: ``acct``, ``audit:ix:type``, ``rl:start``.

    A tenant's keys are named by what follows their hash tag, down to the level that tells one
    family from another (an index kind, a rate limit's purpose); a phone's and the global keys
    by theirs, prefixed ``ph:`` and ``global:``.
    """
    text = key.decode(errors="replace")
    tag, _, rest = text.partition("}:")
    parts = rest.split(":")
    if tag.endswith("{global"):
        return "global:" + parts[0]
    if "{ph:" in tag:
        return "ph:" + parts[0]
    if parts[0] == "audit" and len(parts) > 1:
        depth = 3 if parts[1] == "ix" else 2
        return ":".join(parts[:depth])
    if parts[0] in {"events", "rl", "chkfail"} and len(parts) > 1:
        return ":".join(parts[:2])
    return parts[0]


def growth(group: str, keys: int, expiring: int, *, trimmed: bool) -> str:
    """How a family grows: ``expiring``, ``retention``, ``fixed`` or ``of record`` (see the module's doc)."""
    if keys and expiring == keys:
        return "expiring"
    if group in RETENTION or (trimmed and group == "audit:log"):
        return "retention"
    if group in FIXED or group.startswith("global:"):
        return "fixed"
    return "of record"


def families(client: redis.Redis) -> dict[str, list[int]]:
    """Per key family: [keys, bytes by ``MEMORY USAGE`` (every element counted), keys with a TTL]."""
    found: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=5000))
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
            pipe.pttl(key)
        answers = pipe.execute()
        for key, size, ttl in zip(batch, answers[::2], answers[1::2], strict=True):
            counts = found.setdefault(key_group(key), [0, 0, 0])
            counts[0] += 1
            counts[1] += size or 0
            counts[2] += ttl is not None and ttl >= 0
    return found


def hash_value_limit(client: redis.Redis) -> int:
    """Redis's ``hash-max-listpack-value`` (by the name 6.2 knows too)."""
    return int(str(client.config_get("hash-max-ziplist-value")["hash-max-ziplist-value"]))


def breakdown(
    empty: dict[str, list[int]], loaded: dict[str, list[int]], signups: int, *, trimmed: bool
) -> dict[str, object]:
    """The families' memory the signups added, by growth, and the totals per signup of record."""
    rows: dict[str, dict[str, object]] = {}
    totals = {"of record": 0, "expiring": 0, "retention": 0, "fixed": 0}
    for group in sorted(loaded, key=lambda name: -loaded[name][1]):
        keys, size, expiring = loaded[group]
        before_keys, before_size, _ = empty.get(group, [0, 0, 0])
        kind = growth(group, keys, expiring, trimmed=trimmed)
        added = size - before_size
        totals[kind] += added
        rows[group] = {
            "growth": kind,
            "keys": keys - before_keys,
            "bytes": added,
            "bytes_per_signup": round(added / signups, 1),
        }
    return {
        "families": rows,
        "bytes_by_growth": totals,
        "bytes_per_signup_of_record": round(totals["of record"] / signups),
        "legacy_families": sorted(group for group in loaded if group in LEGACY),
        "bytes_per_signup_postings": round(
            sum(int(str(rows[group]["bytes"])) for group in POSTINGS if group in rows) / signups
        ),
    }


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


def tiles_on_disk(tiles: Path | None, events: int) -> dict[str, int]:
    """The tiles' bytes on disk, in all and per audit entry (none without tiles)."""
    every = directory_bytes(tiles) if tiles else 0
    # Partial files of the tiles still filling, beside the full files a log keeps for good.
    full = directory_bytes(tiles, full_only=True) if tiles else 0
    return {
        "tiles_bytes_on_disk": every,
        "tiles_bytes_per_audit_event": round(every / max(events, 1)),
        "full_tiles_bytes_per_audit_event": round(full / max(events, 1)),
    }


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
                empty_families, hash_limit = families(client), hash_value_limit(client)
                token = server.token("registrar")
                wall, _ = asyncio.run(drive(server.target, token, CodeReader(codes_path), range(signups), 48))
                if audit_tiles:
                    wait_trimmed(client)
                loaded = process_memory(server)
            finally:
                server.stop()
            full = used_memory(client)
            by_family = breakdown(empty_families, families(client), signups, trimmed=audit_tiles)
            transient = delete_matching(client, TRANSIENT)
            without_transient = used_memory(client)
            identities = sum(family(key) == "acct" for key in client.scan_iter(count=5000))
            events, held_events = audit_events(client)
            on_disk = tiles_on_disk(tiles if audit_tiles else None, events)
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
        # Hashes with values longer than this are hash tables (store/embedded.py says why it matters).
        "redis_hash_max_listpack_value": hash_limit,
        "redis_by_family": by_family,
        **on_disk,
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
    parser.add_argument(
        "--tiles-only", action="store_true", help="with --audit-tiles, measure with audit_tiles_dir set alone"
    )
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if options.audit_tiles and options.tiles_only:
        tiled = measure(options.signups, options.workers, audit_tiles=True)
        print(json.dumps({"tiles_on": tiled}, indent=None if options.json else 2))
        return 0
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
