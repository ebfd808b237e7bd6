"""One repairer pass, and one erasure worker's read, over a bucketed tenant's 1,024 empty buckets.

Usage: python bench/repair_pass.py [--rounds N] [--json]

On a local 3-primary Redis Cluster (``store.local_topologies.LocalCluster``, the test Cluster), a
tenant's pass of ``BucketRepairer.repair`` reads the store's clock, then each bucket's due intents
(``ZRANGEBYSCORE … LIMIT 64``, one pipeline sent as a batch per node); the erasure worker's
``RedisErasureStore.due`` reads each bucket's ``erasure:due`` alike. Every bucket is empty: the
figure is what a tenant costs each round when nothing is to repair. Beside them, the same pass
over today's one index of a tenant without a layout, round after round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from report import print_figures

from idverify.flows.bucket_repair import DUE_PAGE, BucketRepairer
from idverify.store.buckets import search_layout
from idverify.store.connection import RedisClient, connect
from idverify.store.erasures import RedisErasureStore
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.local_topologies import LocalCluster
from idverify.store.scripts import Scripts

FLAT, BUCKETED = "benchflat", "benchbucketed"
# Searched once, as a server would read the stored layout once: the pass's figure is Redis's.
_LAYOUT = search_layout(BUCKETED)


def _namer(tenant: str) -> TenantKeys:
    return TenantKeys(tenant, _LAYOUT) if tenant == BUCKETED else TenantKeys(tenant)


async def _timed_ms(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _measure(client: RedisClient, rounds: int) -> dict[str, object]:
    scripts = Scripts(client)
    repairer = BucketRepairer(RedisIntentRepairs(client, scripts, keys=_namer))
    erasures = RedisErasureStore(client, scripts, keys=_namer)
    now = await scripts.clock.now_ms()
    figures: dict[str, list[float]] = {}
    sides: dict[str, Callable[[], Awaitable[object]]] = {
        "repair_pass_1024_buckets_ms": lambda: repairer.repair(BUCKETED),
        "repair_pass_one_index_ms": lambda: repairer.repair(FLAT),
        "erasure_due_1024_buckets_ms": lambda: erasures.due(BUCKETED, now, DUE_PAGE),
        "erasure_due_one_index_ms": lambda: erasures.due(FLAT, now, DUE_PAGE),
    }
    for call in sides.values():  # connections to every node made, scripts loaded
        await call()
    for _ in range(rounds):
        for name, call in sides.items():
            figures.setdefault(name, []).append(await _timed_ms(call))
    shown: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "primaries": 3,
        "rounds": rounds,
    }
    for name, values in figures.items():
        shown[name.replace("_ms", "_median_ms")] = round(statistics.median(values), 2)
        shown[name.replace("_ms", "_max_ms")] = round(max(values), 2)
    return shown


async def _run(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory, LocalCluster(Path(directory) / "cluster") as cluster:
        client = connect(cluster.url)
        try:
            return await _measure(client, rounds)
        finally:
            await client.aclose()


def main() -> None:
    """Print each pass's median and worst time over the rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    print_figures(asyncio.run(_run(options.rounds)), as_json=options.json)


if __name__ == "__main__":
    main()
