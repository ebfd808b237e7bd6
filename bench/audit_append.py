"""Redis's time per audit entry: the prelude's ``audit()`` alone, this tree's against a git revision's.

    .venv/bin/python bench/audit_append.py [--against main] [--entries 2000] [--rounds 9] [--json]

It starts its own redis-server and loads two scripts: the prelude of this tree and the prelude of
``--against`` (``git show``), each followed by a loop appending ``--entries`` entries of
``bench/audit_rate.py``'s shape to a fresh tenant in one call. The two alternate for ``--rounds``
rounds; Redis's time per 1,000 entries is read from ``INFO commandstats`` (the ``evalsha`` usec
delta of the call), so the client and the network are not in it. It prints the median and the
range of each, and their ratio.

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from idverify.store.connection import RedisClient, connect
from idverify.store.synthetic_audit import prelude_source
from idverify.testing import RedisProcess, free_port, redis_server_binary

PRELUDE = "idverify/store/lua/_prelude.lua"
# ARGV: entries, tenant. The bench's usual entry: a principal with slashes, four postings.
_LOOP = """
local log = 'iv1:{t:' .. ARGV[2] .. '}:audit:log'
for n = 1, tonumber(ARGV[1]) do
  audit(log, {principal = 'rate/registrar/c1', request_id = 'r0-' .. n, trace_id = ''},
    {type = 'verification.completed', outcome = 'verified', account = 'a' .. n, method = 'sms'})
end
return 0
"""


async def evalsha_usec(redis: RedisClient) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def ms_per_1000(redis: RedisClient, sha: str, entries: int, tenant: str) -> float:
    before = await evalsha_usec(redis)
    await redis.evalsha(sha, 0, entries, tenant)
    return (await evalsha_usec(redis) - before) / entries


def prelude_at(revision: str) -> str:
    shown = subprocess.run(
        ["git", "show", f"{revision}:{PRELUDE}"], check=True, capture_output=True, text=True
    )
    return shown.stdout


def spread(times: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(times), 2),
        "min": round(min(times), 2),
        "max": round(max(times), 2),
    }


async def measure(args: argparse.Namespace, against: str) -> dict[str, Any]:
    sources = {"this tree": prelude_source(), args.against: against}
    binary = redis_server_binary(prefer_system=True)
    with (
        tempfile.TemporaryDirectory() as directory,
        RedisProcess(Path(directory), port=free_port(), binary=binary) as server,
    ):
        redis = connect(server.url)
        try:
            shas = {name: await redis.script_load(source + _LOOP) for name, source in sources.items()}
            times: dict[str, list[float]] = {name: [] for name in sources}
            for round_ in range(args.rounds + 1):
                for name, sha in shas.items():
                    spent = await ms_per_1000(redis, sha, args.entries, f"{name}-{round_}")
                    if round_:  # the first round warms Redis up
                        times[name].append(spent)
                await redis.flushall()
        finally:
            await redis.aclose(close_connection_pool=True)
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    return {
        "entries_a_call": args.entries,
        "rounds": args.rounds,
        "redis_ms_per_1000_entries": {name: spread(spent) for name, spent in times.items()},
        "ratio": round(medians["this tree"] / medians[args.against], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main", help="the git revision whose prelude is compared")
    parser.add_argument("--entries", type=int, default=2000, help="entries appended a call")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds measured")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(measure(args, prelude_at(args.against)))
    if args.json:
        print(json.dumps(figures))
        return
    for name, spent in figures["redis_ms_per_1000_entries"].items():
        print(f"{name}: {spent['median']} ms of Redis per 1,000 entries ({spent['min']}-{spent['max']})")
    print(f"ratio: {figures['ratio']}")


if __name__ == "__main__":
    main()
