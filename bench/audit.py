"""The audit log at a million entries: appends, proofs and queries against one Redis round trip.

    .venv/bin/python bench/audit.py [--events 1000000] [--json]

It starts its own redis-server, fills one tenant's log with ``--events`` entries through the
prelude's real ``audit()`` (in batches, to set up quickly), integrates them into the Merkle
tree, and then measures, beside the median PING round trip of the same run:

- append throughput: one entry per script call, sequential (latency) and 64 in flight;
- integration: entries folded into the stored tree per second;
- inclusion and consistency proofs at the full size (head read + one pipeline of O(log n)
  nodes); the target is three round trips plus hashing;
- the first page (100 events) of filtered queries: by a rare event type, by account (its whole
  answer), by type from a time on, by outcome and method from a time on; the target is < 20 ms;
- a signed tree head (integration check + Ed25519);
- the auditor's console charts over the whole log: the daily counts from the index postings
  (30 days, no method), verifications by method (two postings intersected) and the top reason
  codes (entries read, at most ``REASON_SAMPLE``).

With ``--json`` it prints one JSON object of its figures and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import TreeHeadSigner
from idverify.console.charts import DAY_MS, Charts
from idverify.flows.audit import AuditFlow, QueryRequest
from idverify.privacy.keyring import Keyring
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_postings import RedisAuditPostings
from idverify.store.connection import RedisClient, connect
from idverify.store.erasures import RedisErasureStore
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing import RedisProcess, free_port, redis_server_binary

TENANT = "bench"
FILL_BATCH = 2000
FIRST_PAGE = 100
SIGNUP = (
    ("verification.started", "started", ""),
    ("verification.step", "pass", ""),
    ("verification.step", "challenge", ""),
    ("challenge.sent", "sent", ""),
    ("challenge.passed", "pass", ""),
    ("account.bound", "bound", ""),
    ("verification.verified", "verified", ""),
)


def signup_events(n: int, keyring: Keyring) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The entries one signup writes; every 50th also has a wrong code first."""
    base = {
        "principal": "bench/registrar/0123456789abcdef",
        "request_id": f"req-{n}",
        "trace_id": f"{n:032x}",
        "verification_id": f"{n:032x}",
        "account": keyring.pseudonym(TENANT, "audit", f"account-{n}"),
        "method": "sms",
    }
    kinds = list(SIGNUP)
    if n % 50 == 0:
        kinds.insert(4, ("challenge.failed", "mismatch", "OTP_MISMATCH"))
    events = []
    for kind, outcome, reason in kinds:
        fields: dict[str, Any] = {"type": kind, "outcome": outcome, "reason": reason}
        if kind == "verification.step":
            fields["steps"] = [{"verifier": "document", "outcome": outcome, "reason": ""}]
        events.append((base, fields))
    return events


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


async def fill(redis: RedisClient, keyring: Keyring, target: int, *, quiet: bool) -> tuple[int, float]:
    appender = SyntheticAppender(redis)
    signup = size = 0
    began = time.perf_counter()
    batch: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while size + len(batch) < target:
        batch += signup_events(signup, keyring)
        signup += 1
        if len(batch) >= FILL_BATCH:
            size = await appender.append(TENANT, batch)
            batch = []
            if not quiet and size % 100_000 < FILL_BATCH:
                print(f"  filled {size:,} entries", file=sys.stderr)
    if batch:
        size = await appender.append(TENANT, batch)
    return signup, time.perf_counter() - began


async def appends(redis: RedisClient, count: int, concurrency: int) -> float:
    """Entries per second, one per script call, ``concurrency`` calls in flight."""
    appender = SyntheticAppender(redis)
    event = (
        {"principal": "bench/registrar/x", "account": "ab" * 16},
        {"type": "rate_limit.hit", "outcome": "limited"},
    )
    per_task = count // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await appender.append(TENANT, [event])

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - began)


async def first_page(flow: AuditFlow, request: QueryRequest) -> float:
    """Seconds until the first FIRST_PAGE matches (or the whole answer, if it is shorter)."""
    began = time.perf_counter()
    got = 0
    async for _ in flow.query(TENANT, request):
        got += 1
        if got == FIRST_PAGE:
            break
    return time.perf_counter() - began


async def run(events: int, *, quiet: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"events": events}
    with tempfile.TemporaryDirectory() as directory:
        # AOF on with fsync every second, as the embedded default runs.
        binary = redis_server_binary(prefer_system=True)
        with RedisProcess(Path(directory), port=free_port(), binary=binary) as store_process:
            redis = connect(store_process.url, pool_size=128)
            try:
                figures |= await measure(redis, events, quiet=quiet)
            finally:
                await redis.aclose(close_connection_pool=True)
    return figures


async def measure(redis: RedisClient, events: int, *, quiet: bool) -> dict[str, Any]:
    keyring = Keyring.generate()
    scripts = Scripts(redis)
    store = RedisAuditLog(redis, scripts)
    flow = AuditFlow(store, TreeHeadSigner(Ed25519PrivateKey.generate()), keyring)
    rtt = await timed(redis.ping, 2000)
    figures: dict[str, Any] = {"redis_round_trip_ms": rtt * 1e3}

    signups, fill_seconds = await fill(redis, keyring, events, quiet=quiet)
    figures["fill_entries_per_second_batched"] = events / fill_seconds
    began = time.perf_counter()
    state = await store.integrate(TENANT)
    figures["integration_entries_per_second"] = state.size / (time.perf_counter() - began)

    figures["append_latency_ms"] = (
        await timed(lambda: SyntheticAppender(redis).append(TENANT, [({}, {"type": "rate_limit.hit"})]), 500)
        * 1e3
    )
    figures["append_entries_per_second_64_in_flight"] = await appends(redis, 20_000, 64)
    await store.integrate(TENANT)
    size = (await store.tree_state(TENANT)).size
    figures["tree_size"] = size

    rng = random.Random(7)  # noqa: S311 - benchmark sampling
    inclusion = await timed(lambda: flow.inclusion_proof(TENANT, rng.randrange(size), size), 500)
    consistency = await timed(lambda: flow.consistency_proof(TENANT, rng.randrange(1, size), size), 500)
    figures["inclusion_proof_ms"] = inclusion * 1e3
    figures["consistency_proof_ms"] = consistency * 1e3
    figures["inclusion_proof_round_trips"] = inclusion / rtt
    figures["consistency_proof_round_trips"] = consistency / rtt
    figures["signed_head_ms"] = await timed(lambda: flow.signed_head(TENANT), 50) * 1e3

    # A time in the middle of the filled signups (the single appends follow them).
    middle = (await flow.event(TENANT, events // 2))[0].time_ms
    queries = {
        "by_type": QueryRequest(types=["challenge.failed"]),
        "by_account": QueryRequest(account_id=f"account-{signups // 2}", limit=0),
        "by_type_in_time_range": QueryRequest(types=["verification.verified"], start_ms=middle),
        "by_outcome_and_method": QueryRequest(outcomes=["bound"], method="sms", start_ms=middle),
    }
    pages: dict[str, float] = {}
    for name, request in queries.items():
        if name == "by_account":
            # One account has a handful of events: time the whole answer instead of 100.
            pages[name] = await timed(functools.partial(_drain, flow, request), 50) * 1e3
        else:
            pages[name] = await timed(functools.partial(first_page, flow, request), 20) * 1e3
    figures["first_page_ms"] = pages
    figures["first_page_round_trips"] = {name: ms / 1e3 / rtt for name, ms in pages.items()}
    figures |= await console_charts(store, redis, rtt)
    return figures


async def console_charts(store: RedisAuditLog, redis: RedisClient, rtt: float) -> dict[str, Any]:
    """The console's charts over the whole log, each once (they are not cached), and in round trips."""
    charts = Charts(RedisAuditPostings(store), store, RedisErasureStore(redis, Scripts(redis)))
    now = time.time_ns() // 1_000_000
    first_day = (now // DAY_MS - 29) * DAY_MS
    timings = {
        "daily_from_indexes": await timed(lambda: charts.daily(TENANT, first_day, 30, []), 3),
        "daily_with_method_sms": await timed(lambda: charts.daily(TENANT, first_day, 30, ["sms"]), 1),
        "top_reasons": await timed(lambda: charts.top_reasons(TENANT, first_day, now + 1), 1),
    }
    return {
        "console_charts_ms": {name: seconds * 1e3 for name, seconds in timings.items()},
        "console_charts_round_trips": {name: seconds / rtt for name, seconds in timings.items()},
    }


async def _drain(flow: AuditFlow, request: QueryRequest) -> int:
    return len([r async for r in flow.query(TENANT, request)])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    options = parser.parse_args()
    figures = asyncio.run(run(options.events, quiet=options.json))
    if options.json:
        print(json.dumps(figures, sort_keys=True))
        return 0
    rtt = figures["redis_round_trip_ms"]
    print(f"audit log of {figures['tree_size']:,} entries; one Redis round trip (PING) = {rtt:.3f} ms")
    rows = [
        (f"fill, {FILL_BATCH} entries per call", figures["fill_entries_per_second_batched"], "entries/s"),
        ("append, 1 per call, latency", figures["append_latency_ms"], "ms"),
        ("append, 64 calls in flight", figures["append_entries_per_second_64_in_flight"], "entries/s"),
        ("integration into the tree", figures["integration_entries_per_second"], "entries/s"),
        ("signed tree head", figures["signed_head_ms"], "ms"),
    ]
    for label, value, unit in rows:
        print(f"  {label:<32}{value:>12,.3f} {unit}")
    for kind in ("inclusion", "consistency"):
        ms, trips = figures[f"{kind}_proof_ms"], figures[f"{kind}_proof_round_trips"]
        print(f"  {kind + ' proof':<32}{ms:>12,.3f} ms = {trips:.1f} round trips (target: 3 + hashing)")
    for name, ms in figures["first_page_ms"].items():
        trips = figures["first_page_round_trips"][name]
        print(f"  {'first page, ' + name:<32}{ms:>12,.3f} ms = {trips:.1f} round trips (target: < 20 ms)")
    for name, ms in figures["console_charts_ms"].items():
        trips = figures["console_charts_round_trips"][name]
        print(f"  {'console chart, ' + name:<32}{ms:>12,.3f} ms = {trips:.1f} round trips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
