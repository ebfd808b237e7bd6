"""Redis memory an audit log's tree costs per entry, its nodes in Redis against its tiles.

    .venv/bin/python bench/audit_tree_memory.py [--entries 200000] [--json]

It starts its own redis-server, fills two tenants' logs with ``--entries`` entries each through
the prelude's real ``audit()``, then integrates one with the nodes in Redis (``audit_tiles_dir``
unset) and the other with its tree kept in tiles (a temporary directory), and reads Redis's
``used_memory`` before and after each integration, and ``MEMORY USAGE`` of the tree's keys. The
entries stay in Redis for both (no trim runs here: that is ``bench/capacity.py --audit-tiles``'s
figure), so the difference is the tree alone. It also reports the tiles' bytes on disk per entry,
for one round and for rounds of ``--round`` entries (a server integrates twice a second: each
round writes its partial tile and bundle anew at their new widths, and keeps the old ones).

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from idverify.audit.tile_mirror import TileMirror, tenant_directory
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_store import AuditStore, node_chunks
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing import RedisProcess, free_port, redis_server_binary

BATCH = 1000
NODES, TILES, SMALL_ROUNDS = "nodes-in-redis", "tree-in-tiles", "tree-in-tiles-small-rounds"


async def fill(redis: RedisClient, tenant: str, entries: int, *, batch: int = BATCH, start: int = 0) -> None:
    """Appends entries ``start`` to ``entries`` of a signup's usual shape, ``batch`` per script call."""
    appender = SyntheticAppender(redis)
    for first in range(start, entries, batch):
        events = [
            (
                {"principal": f"{tenant}/registrar/c1", "request_id": f"r{n}", "trace_id": ""},
                {
                    "type": "verification.completed",
                    "outcome": "verified",
                    "account": f"a{n}",
                    "method": "sms",
                },
            )
            for n in range(first, min(entries, first + batch))
        ]
        await appender.append(tenant, events)


async def used_memory(redis: RedisClient) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def tree_key_bytes(redis: RedisClient, tenant: str, size: int) -> int:
    """``MEMORY USAGE`` of the tree head and every node chunk a tree of ``size`` could have."""
    keys = TenantKeys(tenant)
    names = [keys.audit_tree_head(), *(keys.audit_tree(level, chunk) for level, chunk in node_chunks(size))]
    total = 0
    for name in names:
        total += int(await redis.memory_usage(name, samples=0) or 0)
    return total


def on_disk(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


async def measure(redis: RedisClient, tiles: Path, entries: int, round_entries: int) -> dict[str, Any]:
    scripts = Scripts(redis)
    mirror = TileMirror(tiles, AuditStore(redis, scripts))
    logs = {
        NODES: RedisAuditLog(redis, scripts),
        TILES: RedisAuditLog(redis, scripts, write_round=mirror.write_round),
    }
    figures: dict[str, Any] = {"entries": entries}
    for tenant, log in logs.items():
        await fill(redis, tenant, entries)
        before = await used_memory(redis)
        state = await log.integrate(tenant)
        after = await used_memory(redis)
        figures[tenant] = {
            "integrated": state.size,
            "used_memory_per_entry_bytes": round((after - before) / entries, 1),
            "tree_keys_per_entry_bytes": round(await tree_key_bytes(redis, tenant, state.size) / entries, 2),
        }
    figures[TILES]["tiles_on_disk_per_entry_bytes"] = round(
        on_disk(tiles / tenant_directory(TILES)) / entries, 1
    )
    for first in range(0, entries, round_entries):
        await fill(redis, SMALL_ROUNDS, min(entries, first + round_entries), batch=round_entries, start=first)
        await logs[TILES].integrate(SMALL_ROUNDS)
    written = on_disk(tiles / tenant_directory(SMALL_ROUNDS))
    figures[SMALL_ROUNDS] = {
        "round_entries": round_entries,
        "tiles_on_disk_per_entry_bytes": round(written / entries, 1),
    }
    return figures


async def run(entries: int, round_entries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(directory) / "redis", port=free_port(), binary=binary) as store_process:
            redis = connect(store_process.url)
            try:
                return await measure(redis, Path(directory) / "tiles", entries, round_entries)
            finally:
                await redis.aclose(close_connection_pool=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000, help="entries per log")
    parser.add_argument("--round", type=int, default=20, help="entries per round of the small-rounds log")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(run(args.entries, args.round))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{figures['entries']} entries per log")
    for name in (NODES, TILES):
        found = figures[name]
        print(
            f"{name}: {found['used_memory_per_entry_bytes']} B/entry of used_memory for the tree, "
            f"{found['tree_keys_per_entry_bytes']} B/entry in its keys"
        )
    print(f"tiles on disk: {figures[TILES]['tiles_on_disk_per_entry_bytes']} B/entry (bundles and tiles)")
    small = figures[SMALL_ROUNDS]
    print(
        f"tiles on disk, rounds of {small['round_entries']}: {small['tiles_on_disk_per_entry_bytes']} B/entry"
    )


if __name__ == "__main__":
    main()
