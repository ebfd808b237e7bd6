"""What an incident report reads from Redis: the read accounting's HyperLogLogs and the tenant's keys.

``flows.incident`` decides what a report says; this adapter answers its questions in typed
values. Reads: PFCOUNT over the HyperLogLogs of every hour and client concerned, merged first
into scratch keys by chunks of ``MERGE_CHUNK`` so no single command holds Redis for long.
Holdings: one SCAN of the tenant's keys (with a bucketed tenant's namer, its buckets' too:
``scan.tenant_pages``), classified by key name, and for each page one read-only script
(``incident_holdings.lua``) per hash tag that looks at the records' fields. One report of a tenant at a
time holds a Redis lock, released when the report is done and expiring if its worker crashes.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from idverify.domain.errors import StoreUnavailable
from idverify.flows.incident import HOLDINGS_FIELDS, Holdings, ReadFigure, ReportEntry
from idverify.flows.read_accounting import Category
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.store.scan import tenant_pages
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts

__all__ = [
    "MERGE_CHUNK",
    "SCAN_PAGE",
    "RedisIncidentStore",
    "ReportLock",
]

MERGE_CHUNK = 256
"""HyperLogLogs merged by one PFMERGE or counted by one PFCOUNT: each holds Redis only briefly,
where one PFCOUNT over a year of hours and clients would hold it for seconds
(docs/PERFORMANCE.md, "An incident report on millions of keys")."""
_MERGES_PER_ROUND_TRIP = 8
_MERGE_TTL_MS = 60_000
SCAN_PAGE = 2000
"""Keys per SCAN page, and so per holdings script: one script call stays well under a millisecond."""

_KIND_OF_RECORD = {"acct": "a", "id": "i", "vf": "v"}


class ReportLock:
    """The lock on a tenant's reports, held by one report."""

    def __init__(self, lock: Lock) -> None:
        self._lock = lock

    async def release(self) -> None:
        """Releases the lock; one that expired, or a Redis gone, leaves it to its timeout."""
        with contextlib.suppress(LockError, RedisError, StoreUnavailable):
            async with translate_errors():
                await self._lock.release()


class RedisIncidentStore(ScriptedStore):
    """``flows.incident.IncidentStore`` over Redis.

    Its holdings walk the keys ``keys`` names: today's by default (the tenant's slot); a bucketed
    tenant's namer adds every bucket's keys (docs/ARCHITECTURE.md "Buckets: the plan", §6).
    """

    def __init__(
        self, redis: RedisClient, scripts: Scripts, *, keys: Callable[[str], TenantKeys] = TenantKeys
    ) -> None:
        super().__init__(redis, scripts)
        self._keys = keys

    async def try_lock(self, tenant: str, seconds: float) -> ReportLock | None:
        """The tenant's report lock for at most ``seconds``, or None while another report holds it."""
        lock = self._redis.lock(TenantKeys(tenant).incident_lock(), timeout=seconds, blocking=False)
        async with translate_errors():
            acquired = await lock.acquire()
        return ReportLock(lock) if acquired else None

    async def readers(self, tenant: str, hours: Sequence[int]) -> list[list[str]]:
        """The clients that read in each of ``hours``, sorted."""
        keys = ReadKeys(tenant)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for hour in hours:
                pipe.smembers(keys.who(hour))
            replies = await pipe.execute()
        return [sorted(as_text(member) for member in members) for members in replies]

    async def read_figures(self, tenant: str, pairs: Sequence[tuple[int, str]]) -> list[ReadFigure]:
        """Distinct accounts and identities read by the ``(hour, client)`` pairs, per category and in any."""
        keys = ReadKeys(tenant)
        scratch = _Scratch(TenantKeys(tenant))
        figures: list[ReadFigure] = []
        try:
            for kind, key_of in (("accounts", keys.accounts), ("identities", keys.identities)):
                reduced: list[str] = []
                for member in Category:
                    listed = [key_of(h, c, member) for h, c in pairs]
                    merged = await self._reduce(listed, scratch)
                    reduced += merged
                    figures.append(ReadFigure(str(member), kind, not listed, await self._pfcount(merged)))
                total = await self._pfcount(await self._reduce(reduced, scratch))
                figures.append(ReadFigure("*", kind, not pairs, total))
        finally:
            await scratch.drop(self._redis)
        return figures

    async def _pfcount(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        async with translate_errors():
            return int(await self._redis.pfcount(*keys))

    async def _reduce(self, keys: list[str], scratch: _Scratch) -> list[str]:
        """At most ``MERGE_CHUNK`` keys whose union is that of ``keys`` (chunks merged into scratch keys)."""
        while len(keys) > MERGE_CHUNK:
            chunks = [keys[i : i + MERGE_CHUNK] for i in range(0, len(keys), MERGE_CHUNK)]
            keys = []
            for first in range(0, len(chunks), _MERGES_PER_ROUND_TRIP):
                async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
                    for chunk in chunks[first : first + _MERGES_PER_ROUND_TRIP]:
                        target = scratch.new()
                        pipe.pfmerge(target, *chunk)
                        pipe.pexpire(target, _MERGE_TTL_MS)
                        keys.append(target)
                    await pipe.execute()
        return keys

    async def append_report(self, tenant: str, entry: ReportEntry) -> None:
        """Appends the report's ``incident.reported`` entry to the tenant's audit log."""
        await self._scripts.run(
            "incident_report",
            [TenantKeys(tenant).audit_log()],
            [
                entry.request_fields,
                entry.kind,
                str(entry.since_ms),
                str(entry.until_ms),
                str(entry.principals),
            ],
        )

    async def holdings(self, tenant: str) -> Holdings:
        """Exact counts of what the tenant holds, from one SCAN of its keys."""
        totals = dict.fromkeys(HOLDINGS_FIELDS, 0)
        records_of = dict.fromkeys(_KIND_OF_RECORD.values(), 0)
        consents = audited = scanned = 0
        async for _, page in tenant_pages(self._redis, tenant, self._keys(tenant), count=SCAN_PAGE):
            scanned += len(page)
            # One script a hash tag: a bucketed tenant's page holds many buckets' records.
            records: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
            for raw in page:
                key = as_text(raw)
                tag, _, rest = key.partition("}:")
                record = rest.split(":", 1)[0]
                if record in _KIND_OF_RECORD:
                    names, kinds = records[tag]
                    names.append(key)
                    kinds.append(_KIND_OF_RECORD[record])
                    records_of[_KIND_OF_RECORD[record]] += 1
                elif record == "consent":
                    consents += 1
                elif rest.startswith("audit:ix:acct:"):
                    audited += 1
            for names, kinds in records.values():
                counted = await self._scripts.run("incident_holdings", names, ["".join(kinds)])
                for name, value in zip(HOLDINGS_FIELDS, counted, strict=True):
                    totals[name] += int(value)
        return Holdings(
            keys_scanned=scanned,
            accounts=records_of["a"],
            verifications=records_of["v"],
            consents=consents,
            audited=audited,
            fields=totals,
        )


class _Scratch:
    """The scratch keys of one report, dropped when it is done (their TTL covers a crash)."""

    def __init__(self, keys: TenantKeys) -> None:
        self._keys = keys
        self._prefix = secrets.token_hex(8)
        self.made: list[str] = []

    def new(self) -> str:
        key = self._keys.incident_merge(f"{self._prefix}:{len(self.made)}")
        self.made.append(key)
        return key

    async def drop(self, redis: RedisClient) -> None:
        if self.made:
            async with translate_errors():
                await redis.unlink(*self.made)
