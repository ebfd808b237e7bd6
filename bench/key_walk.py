"""A bucketed tenant's key walk: one SCAN a node against one SCAN a bucket prefix on its node.

Usage: python bench/key_walk.py [--others N] [--rounds N] [--json]

On a local 3-primary Redis Cluster (``store.local_topologies.LocalCluster``, the test Cluster), a
tenant whose 20,480 keys fill its 1,024 buckets (20 a bucket) beside ``--others`` keys of 50
other bucketed tenants. ``scan.tenant_pages`` (what a tenant's removal and an incident's
holdings walk) sends one SCAN a node matching every tag of the tenant; the other way sends, for
each bucket prefix, a SCAN with its MATCH to the node holding its slot. Redis 7.0 walks a node's
whole keyspace for each SCAN whatever its MATCH, so the second walks each node's keys once a
bucket it holds (docs/ARCHITECTURE.md, "Buckets: the plan", §6).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import cast

from redis.asyncio.cluster import RedisCluster
from report import print_figures

from idverify.store.buckets import search_layout
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scan import tenant_pages

TENANT = "benchwalked"
KEYS_A_BUCKET = 20
PAGE = 1000


async def _per_node(client: RedisCluster, keys: TenantKeys) -> tuple[int, int]:
    found = pages = 0
    # The store's walks take the client a server connects (typed as one server's, a Cluster's too).
    async for _, page in tenant_pages(cast("RedisClient", client), TENANT, keys, count=PAGE):
        found += len(page)
        pages += 1
    return found, pages


async def _per_prefix(client: RedisCluster, keys: TenantKeys) -> tuple[int, int]:
    found = scans = 0
    for prefix in keys.bucket_prefixes():
        node = client.get_node_from_key(f"{prefix}:x")
        if node is None:
            msg = f"no node holds {prefix}'s slot"
            raise RuntimeError(msg)
        cursor = 0
        while True:
            cursor, page = await node.execute_command("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", PAGE)
            found += len(page)
            scans += 1
            if int(cursor) == 0:
                break
    return found, scans


async def _measure(client: RedisCluster, others: int, rounds: int) -> dict[str, object]:
    keys = TenantKeys(TENANT, search_layout(TENANT))
    async with client.pipeline(transaction=False) as pipe:
        for n, prefix in enumerate(keys.bucket_prefixes() * KEYS_A_BUCKET):
            pipe.set(f"{prefix}:acct:{n}", "x")
        for n in range(others):
            pipe.set(f"iv1:{{t:benchother{n % 50}:{n % 997}}}:acct:{n}", "x")
        await pipe.execute()
    times: dict[str, list[float]] = {"per_node_ms": [], "per_prefix_ms": []}
    calls: dict[str, int] = {}
    for _ in range(rounds):
        for name, walk in (("per_node", _per_node), ("per_prefix", _per_prefix)):
            started = time.perf_counter()
            found, sent = await walk(client, keys)
            times[f"{name}_ms"].append((time.perf_counter() - started) * 1000)
            if found != len(keys.bucket_prefixes()) * KEYS_A_BUCKET:
                msg = f"the walk {name} found {found} keys"
                raise RuntimeError(msg)
            calls[f"{name}_{'pages' if name == 'per_node' else 'scan_calls'}"] = sent
    shown: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "primaries": 3,
        "tenant_keys": len(keys.bucket_prefixes()) * KEYS_A_BUCKET,
        "other_keys": others,
        "rounds": rounds,
        **calls,
    }
    for name, values in times.items():
        shown[name.replace("_ms", "_median_ms")] = round(statistics.median(values), 1)
    return shown


async def _run(others: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory, LocalCluster(Path(directory) / "cluster") as cluster:
        client = connect(cluster.url)
        if not isinstance(client, RedisCluster):
            msg = "a Cluster URL gave no Cluster client"
            raise TypeError(msg)
        try:
            return await _measure(client, others, rounds)
        finally:
            await client.aclose()


def main() -> None:
    """Print each walk's median time and the SCAN calls it sent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--others", type=int, default=100_000, help="keys of other tenants")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    print_figures(asyncio.run(_run(options.others, options.rounds)), as_json=options.json)


if __name__ == "__main__":
    main()
