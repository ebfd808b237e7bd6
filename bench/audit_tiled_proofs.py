"""Proofs of a log kept in tiles at millions of entries: their Redis round trips and tile reads.

    .venv/bin/python bench/audit_tiled_proofs.py [--sizes 1000000,10000000] [--proofs 200] [--json]

It starts its own redis-server and builds one tenant's log kept in tiles, growing it to each of
``--sizes`` in turn, then asks the audit flow (``flows.audit.AuditFlow`` over the log the
server builds, ``store.audit_logs.configured_audit_log`` with ``audit_tiles_dir``) for
``--proofs`` inclusion proofs of random entries and as many consistency proofs from random
sizes, at the full size. For each kind it reports the median time, the Redis commands a proof
sent (``INFO commandstats`` deltas, the ``INFO`` calls left out; each is awaited alone, so
commands are the round trips) and the tile files it read, beside the median ``PING`` of the
same run. The first proof at a size (the flow reads the head and learns the size is reached;
the tiles' first look) is reported apart.

Building ten million entries through Lua and the integrator would take most of an hour here, so
the log is built a bench-only way: small synthetic entries folded in rounds of 65,536 straight
into the tiles (files written without fsync: proofs do not depend on it), then Redis's log
size and tree head set to what an integration would have left (the head marked kept in tiles;
entries not in Redis, as a trimmed log's older ones are not). Proofs read only the head and the
tiles, so what they cost is what it would be after real appends.

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import tile_volume
from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.merkle import CompactRange, leaf_hash
from idverify.audit.tile_mirror import SIZE_FILE, tenant_directory
from idverify.audit.tile_store import DirectoryTiles, TiledLog
from idverify.audit.tree_state import TreeState
from idverify.flows.audit import AuditFlow
from idverify.privacy.keyring import Keyring
from idverify.store.audit_logs import configured_audit_log
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess, free_port, redis_server_binary

TENANT = "proofs"
ROUND = 65_536
"""Entries a bulk round folds and writes: a whole level-1 tile, so no partial file is left."""

tile_reads: Counter[str] = Counter()


class CountedTiles(DirectoryTiles):
    """Tiles whose reads are counted (the server's reads, through ``TileMirror``)."""

    async def read(self, path: str) -> bytes | None:
        """``DirectoryTiles.read``, counted."""
        tile_reads["files"] += 1
        return await super().read(path)


class UnsyncedTiles(DirectoryTiles):
    """The bulk build's tiles: plain files, nothing synced (a bench's throwaway folder)."""

    async def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Each file written as it is."""
        for path, data in files:
            target = Path(self._root) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


async def grow(redis: RedisClient, tiles: Path, compact: CompactRange, size: int) -> CompactRange:
    """Grows the tenant's tiles from ``compact`` to ``size`` entries and sets Redis's head to match."""
    log = TiledLog(UnsyncedTiles(tiles / tenant_directory(TENANT)))
    while compact.size < size:
        old = compact.size
        entries = [b'{"i":%d}' % n for n in range(old, min(size, old + ROUND))]
        compact, completed = compact.extend(leaf_hash(entry) for entry in entries)
        await log.append(old, entries, completed)
    (tiles / tenant_directory(TENANT) / SIZE_FILE).write_text(f"{size}\n", encoding="ascii")
    store = AuditStore(redis, Scripts(redis))
    before = await store.tree_state(TENANT)
    await redis.hset(TenantKeys(TENANT).audit_head(), "size", size)
    state = TreeState(compact.size, compact.root(), compact, tiled=True)
    if not await store.write_tree(TENANT, before.size, state, {}):
        raise RuntimeError("the tree head moved meanwhile")
    return compact


async def commands(redis: RedisClient) -> int:
    """Commands Redis has answered, ``INFO`` left out."""
    stats = await redis.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info")


async def per_proof(
    redis: RedisClient, proof: Callable[[], Awaitable[object]], count: int
) -> tuple[float, float, float]:
    """Median seconds, Redis commands and tile reads of ``count`` proofs."""
    times: list[float] = []
    sent, read = 0, 0
    for _ in range(count):
        before, files = await commands(redis), tile_reads["files"]
        began = time.perf_counter()
        await proof()
        times.append(time.perf_counter() - began)
        sent += await commands(redis) - before
        read += tile_reads["files"] - files
    return statistics.median(times), sent / count, read / count


async def ping_seconds(redis: RedisClient, count: int = 500) -> float:
    times: list[float] = []
    for _ in range(count):
        began = time.perf_counter()
        await redis.ping()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def measure(redis: RedisClient, tiles: Path, sizes: list[int], proofs: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"redis_ping_ms": round(await ping_seconds(redis) * 1e3, 3), "sizes": {}}
    rng = random.Random(7)  # noqa: S311 - benchmark sampling
    compact = CompactRange()
    for size in sizes:
        began = time.perf_counter()
        compact = await grow(redis, tiles, compact, size)
        built = time.perf_counter() - began
        figures["sizes"][str(size)] = {
            "build_s": round(built, 1),
            **await proofs_at(redis, tiles, size, proofs, rng),
        }
    return figures


async def proofs_at(
    redis: RedisClient, tiles: Path, size: int, proofs: int, rng: random.Random
) -> dict[str, dict[str, float]]:
    """The first proof, then ``proofs`` of each kind, at the tree of ``size`` entries."""
    # A fresh flow and log: the first proof pays the head read and the tiles' first look.
    flow = AuditFlow(
        configured_audit_log(redis, Scripts(redis), str(tiles)),
        TreeHeadSigner(Ed25519PrivateKey.generate()),
        Keyring.generate(),
    )
    first = await per_proof(redis, lambda: flow.inclusion_proof(TENANT, rng.randrange(size), size), 1)
    inclusion = await per_proof(
        redis, lambda: flow.inclusion_proof(TENANT, rng.randrange(size), size), proofs
    )
    consistency = await per_proof(
        redis, lambda: flow.consistency_proof(TENANT, rng.randrange(1, size), size), proofs
    )
    return {
        "first_proof": _as_figures(first),
        "inclusion": _as_figures(inclusion),
        "consistency": _as_figures(consistency),
    }


def _as_figures(found: tuple[float, float, float]) -> dict[str, float]:
    seconds, sent, read = found
    return {"median_ms": round(seconds * 1e3, 3), "redis_round_trips": sent, "tile_reads": read}


async def run(sizes: list[int], proofs: int, directory: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(folder) / "redis", port=free_port(), binary=binary) as store_process:
            redis = connect(store_process.url)
            try:
                return await measure(redis, Path(folder) / "tiles", sizes, proofs)
            finally:
                await redis.aclose(close_connection_pool=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="log sizes, ascending, comma-separated")
    parser.add_argument("--proofs", type=int, default=200, help="proofs of each kind at each size")
    parser.add_argument("--directory", default=None, help="where Redis and the tiles go (a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with mock.patch.object(tile_volume, "DirectoryTiles", CountedTiles):  # the server's reads, counted
        figures = asyncio.run(run([int(s) for s in args.sizes.split(",")], args.proofs, args.directory))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"Redis PING {figures['redis_ping_ms']} ms")
    for size, found in figures["sizes"].items():
        print(f"{int(size):,} entries (built in {found['build_s']} s):")
        for kind in ("first_proof", "inclusion", "consistency"):
            each = found[kind]
            print(
                f"  {kind:<12} {each['median_ms']:>8} ms, {each['redis_round_trips']:.2f} Redis round trips, "
                f"{each['tile_reads']:.2f} tile reads"
            )


if __name__ == "__main__":
    main()
