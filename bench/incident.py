"""An incident report on millions of keys: the holdings SCAN and the read counts, beside a bare SCAN.

    .venv/bin/python bench/incident.py [--accounts 500000] [--tenants 2] [--json]

It starts its own redis-server and fills ``--tenants`` tenants alike, each with ``--accounts``
bound accounts (an account hash with an identity, a sealed birth date and, for half of them, an
IP label; a consent record; an audit posting), an identity record for every two accounts and
the reads of three clients over a day (one of them read 150,000 accounts). Then, for the first
tenant, it measures:

- the floor: one bare SCAN of the whole keyspace (``COUNT`` as the report's pages, no MATCH),
  the least any SCAN-based count can cost on this store;
- the holdings: ``IncidentFlow.holdings``, one SCAN matching the tenant's keys and one read-only
  script per page, and its ratio to the floor;
- the whole signed report (reads over 24 hours for one client, holdings, audit entry, head).

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.typing import EncodableT, FieldT

from idverify.audit.checkpoint import TreeHeadSigner
from idverify.config import IncidentSettings
from idverify.flows.audit import AuditFlow
from idverify.flows.context import RequestInfo
from idverify.flows.incident import IncidentFlow
from idverify.flows.incident_request import IncidentRequest
from idverify.flows.read_accounting import HOUR_MS, Category
from idverify.privacy.keyring import Keyring
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.connection import RedisClient, connect
from idverify.store.incident_reads import SCAN_PAGE, RedisIncidentStore
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess, free_port, redis_server_binary

FILL_BATCH = 5000
LEAKED_READS = 150_000
HOUR = 490_000


async def fill(redis: RedisClient, tenant: str, accounts: int) -> None:
    keys = TenantKeys(tenant)
    for start in range(0, accounts, FILL_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + FILL_BATCH, accounts)):
                fields: dict[FieldT, EncodableT] = {
                    "identity": f"ref{n // 2:012d}",
                    "birth_sealed": "w1:" + "x" * 40,
                    "method": "sms",
                }
                if n % 2:
                    fields["ip_ms"] = "1764000000000"
                pipe.hset(keys.account(f"{n:032x}"), mapping=fields)
                pipe.hset(keys.consent(f"{n:032x}"), mapping={"terms:v": "v1", "terms:g": "1764000000000"})
                pipe.set(keys.audit_index("acct", f"{n:032x}"), b"\0" * 12)
                if n % 2 == 0:
                    pipe.hset(keys.identity(f"ref{n // 2:012d}"), mapping={"name_binding": "w1:" + "y" * 40})
            await pipe.execute()
    reads = ReadKeys(tenant)
    for hour in range(HOUR, HOUR + 24):
        async with redis.pipeline(transaction=False) as pipe:
            for client, share in (("leaked01", LEAKED_READS), ("app00002", 20_000), ("app00003", 5_000)):
                first = (hour - HOUR) * share // 24
                chunk = [f"{n:032x}" for n in range(first, first + share // 24)]
                pipe.pfadd(reads.accounts(hour, client, Category.IP_LOCATION), *chunk)
                pipe.pfadd(reads.identities(hour, client, Category.IP_LOCATION), *(c[:16] for c in chunk))
                pipe.sadd(reads.who(hour), client)
            await pipe.execute()


async def bare_scan(redis: RedisClient) -> int:
    cursor, seen = 0, 0
    while True:
        cursor, keys = await redis.scan(cursor, count=SCAN_PAGE)
        seen += len(keys)
        if int(cursor) == 0:
            return seen


async def measure(redis: RedisClient, accounts: int, tenants: int, *, quiet: bool) -> dict[str, Any]:
    began = time.perf_counter()
    for n in range(tenants):
        await fill(redis, f"bench{n}", accounts)
    if not quiet:
        print(f"  filled in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    figures: dict[str, Any] = {
        "accounts_per_tenant": accounts,
        "tenants": tenants,
        "keys": await redis.dbsize(),
    }
    scripts = Scripts(redis)
    key = Ed25519PrivateKey.generate()
    audit = AuditFlow(RedisAuditLog(redis, scripts), TreeHeadSigner(key), Keyring.generate())
    flow = IncidentFlow(RedisIncidentStore(redis, scripts), audit, key, IncidentSettings())

    began = time.perf_counter()
    scanned = await bare_scan(redis)
    figures["bare_scan_seconds"] = time.perf_counter() - began
    figures["bare_scan_keys"] = scanned
    began = time.perf_counter()
    holdings = await flow.holdings("bench0")
    figures["holdings_seconds"] = time.perf_counter() - began
    figures["holdings_identities"] = holdings["identities"]
    figures["holdings_ratio_to_bare_scan"] = figures["holdings_seconds"] / figures["bare_scan_seconds"]
    request = IncidentRequest(
        principals=("leaked01",),
        since_ms=HOUR * HOUR_MS,
        until_ms=(HOUR + 24) * HOUR_MS,
        detected_ms=(HOUR + 25) * HOUR_MS,
    )
    began = time.perf_counter()
    signed, _ = await flow.create("bench0", request, RequestInfo(principal="bench"))
    figures["report_seconds"] = time.perf_counter() - began
    figures["leaked_accounts_estimate"] = json.loads(signed)["report"]["reads"]["all_categories"]["accounts"]
    return figures


async def run(accounts: int, tenants: int, *, quiet: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(directory), port=free_port(), binary=binary) as store_process:
            redis = connect(store_process.url)
            try:
                figures = await measure(redis, accounts, tenants, quiet=quiet)
            finally:
                await redis.aclose(close_connection_pool=True)
    figures["machine"] = platform.platform()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=500_000, help="bound accounts per tenant")
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    figures = asyncio.run(run(options.accounts, options.tenants, quiet=options.json))
    if options.json:
        print(json.dumps(figures, sort_keys=True))
        return 0
    print(
        f"{figures['keys']:,} keys ({figures['tenants']} tenants"
        f" of {figures['accounts_per_tenant']:,} accounts)"
    )
    print(f"  bare SCAN of every key (floor)   {figures['bare_scan_seconds']:8.2f} s")
    print(
        f"  holdings of one tenant            {figures['holdings_seconds']:8.2f} s"
        f" = {figures['holdings_ratio_to_bare_scan']:.2f} x the floor"
    )
    print(f"  whole signed report (24 h reads)  {figures['report_seconds']:8.2f} s")
    estimate = figures["leaked_accounts_estimate"]
    print(
        f"  leaked client's accounts: {estimate['estimate']:,} ({estimate['low']:,} to {estimate['high']:,};"
        f" {LEAKED_READS:,} read)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
