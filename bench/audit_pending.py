"""What ``include_pending`` adds to a QueryEvents, against the same query without it.

    .venv/bin/python bench/audit_pending.py [--entries 20000] [--buckets 1024] [--staged 64]
        [--limit 0] [--rounds 15] [--json]

It starts its own redis-server, appends ``--entries`` entries to a tenant's log (``audit()``'s
bytes, through ``SyntheticAppender``) and stages ``--staged`` more spread over the first of its
``--buckets`` buckets (eight a bucket, ``SyntheticStager``), then times ``AuditFlow.query`` in
alternating rounds: the query without ``include_pending`` (the baseline), and with it, each
drained (past 1,024 staged records, up to the PENDING_READ_LIMIT that ends it). The query
filters on one event type, which one entry in ten has, and stops at ``--limit`` entries when
given one (0, the default: none, so the pending part follows the whole log). It prints each
side's median and range in ms, the ratio of the medians, and the Redis commands each side sends
(``INFO commandstats`` deltas of one query).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.pending import PendingReadLimit
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.privacy.keyring import Keyring
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender, SyntheticStager
from idverify.store.topology import close_client
from idverify.testing import RedisProcess, free_port, redis_server_binary

TENANT = "pending-bench"
APPEND_CALL = 1000
PER_BUCKET = 8
RARE = "verification.rejected"


def pairs(first: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A signup's usual entry; one in ten of the rare type the query asks for."""
    return [
        (
            {"principal": f"{TENANT}/registrar/c1", "request_id": f"r{n}", "trace_id": ""},
            {"type": RARE if n % 10 == 0 else "verification.verified", "outcome": "x", "method": "sms"},
        )
        for n in range(first, first + count)
    ]


async def commands(redis: RedisClient) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return sum(int(v.get("calls", 0)) for k, v in stats.items() if k != "cmdstat_info")


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    redis = connect(url)
    # As a server's: its plain reads on one pipelined connection.
    scripts = Scripts(redis, share_connection=True)
    try:
        appender, stager = SyntheticAppender(redis), SyntheticStager(redis)
        for first in range(0, args.entries, APPEND_CALL):
            await appender.append(TENANT, pairs(first, min(APPEND_CALL, args.entries - first)))
        for first in range(0, args.staged, PER_BUCKET):
            count = min(PER_BUCKET, args.staged - first)
            await stager.stage(TENANT, first // PER_BUCKET, pairs(args.entries + first, count))
        flow = AuditFlow(
            RedisAuditLog(redis, scripts),
            TreeHeadSigner(Ed25519PrivateKey.generate()),
            Keyring.generate(),
            stages=RedisAuditStages(redis, scripts),
            stage_buckets=args.buckets,
        )
        await flow.integrate(TENANT)

        async def once(pending: bool) -> tuple[float, int, int]:
            request = QueryRequest(types=[RARE], limit=args.limit, include_pending=pending)
            before = await commands(redis)
            start = time.perf_counter()
            sent = 0
            try:
                async for _ in flow.query(TENANT, request):
                    sent += 1
            except PendingReadLimit:
                pass  # more staged than a query reads (--staged past 1,024): timed as far as it went
            elapsed = time.perf_counter() - start
            return elapsed * 1000, await commands(redis) - before, sent

        for pending in (False, True):
            await once(pending)  # scripts loaded, connections made
        times: dict[bool, list[float]] = {False: [], True: []}
        sent: dict[bool, tuple[int, int]] = {}
        for round_ in range(args.rounds):
            for pending in (False, True) if round_ % 2 == 0 else (True, False):
                ms, sent_commands, entries = await once(pending)
                times[pending].append(ms)
                sent[pending] = (sent_commands, entries)
    finally:
        await scripts.aclose()
        await close_client(redis)
    sides = {
        "without": {**spread(times[False]), "commands": sent[False][0], "entries": sent[False][1]},
        "with include_pending": {**spread(times[True]), "commands": sent[True][0], "entries": sent[True][1]},
    }
    return {
        "entries": args.entries,
        "buckets": args.buckets,
        "staged": args.staged,
        "limit": args.limit,
        "rounds": args.rounds,
        "sides_ms": sides,
        "ratio": round(statistics.median(times[True]) / statistics.median(times[False]), 2),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="entries in the log")
    parser.add_argument("--buckets", type=int, default=1024, help="the tenant's stage buckets")
    parser.add_argument("--staged", type=int, default=64, help="entries staged, eight a bucket")
    parser.add_argument("--limit", type=int, default=0, help="the query's limit (0: none)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    binary = redis_server_binary(prefer_system=True)
    with (
        tempfile.TemporaryDirectory() as directory,
        RedisProcess(Path(directory), port=free_port(), binary=binary) as server,
    ):
        figures = asyncio.run(run(server.url, args))
    if args.json:
        print(json.dumps(figures))
        return
    for name, side in figures["sides_ms"].items():
        print(
            f"{name}: {side['median']} ms ({side['min']}-{side['max']}), "
            f"{side['commands']} Redis commands, {side['entries']} entries"
        )
    print(f"ratio: {figures['ratio']}")


if __name__ == "__main__":
    main()
