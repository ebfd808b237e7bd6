"""An incident report: what the named clients read, what the tenant holds, and whether to report.

Two counts answer "how many people":

* **Reads.** The read accounting keeps, per tenant, hour, client and data category, a
  HyperLogLog of the account pseudonyms read and one of the identity refs bound to them, and per
  hour the set of clients that read (``reads:<hour>:who``). PFCOUNT over the keys of every hour
  of the window and every client concerned is the distinct count of their union, read in one
  round trip per figure, whatever the volume of reads behind it. Redis's HyperLogLog has a
  standard error of 0.81 %; the report gives each estimate with bounds of three standard errors
  (about 99.7 %), and a count of zero is exact (no key held anything). Hours are the buckets, so
  the window counted is the asked one widened to whole hours.
* **Holdings** (a store breach). One SCAN of the tenant's keys, classified by key name, and for
  each page one read-only script (``incident_holdings.lua``) that looks at the records' fields:
  exact counts at the moment of the scan. ``bench/incident.py`` measures it on millions of keys
  (docs/PERFORMANCE.md); write-path counters would answer in one round trip, but every step that
  binds, supersedes, cancels or erases would have to keep them right.

The report is signed with the audit log's key and names the log's signed head, taken after the
report's own ``incident.reported`` entry was appended.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.exceptions import LockError, RedisError

from idverify.audit.checkpoint import key_id_for
from idverify.audit.incident_report import render_markdown, sign_report
from idverify.config import IncidentSettings
from idverify.domain.errors import InvalidArgument, RateLimited, StoreUnavailable
from idverify.flows.audit import AuditFlow
from idverify.flows.context import RequestInfo
from idverify.flows.read_accounting import HLL_STANDARD_ERROR, HOUR_MS, Category, ReadKeys, hour_of
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import PREFIX, TenantKeys
from idverify.store.scan import scan_pages
from idverify.store.scripts import Scripts

__all__ = [
    "MAX_PRINCIPALS",
    "MAX_WINDOW_HOURS",
    "IncidentFlow",
    "IncidentRequest",
    "estimate",
]

SIGMAS = 3
_STANDARD_ERROR = Fraction(str(HLL_STANDARD_ERROR))  # exact, so the bounds are the same everywhere
MAX_WINDOW_HOURS = 366 * 24
"""A window of at most a year (the reads are kept 180 days by default): bounds one report's work."""
MAX_PRINCIPALS = 1000
REPORT_SECONDS = 600.0
"""The longest a report may take (its holdings scan the whole store; docs/PERFORMANCE.md): the
RPC's own limit, and the lock's, so a crashed worker holds the tenant's reports no longer."""
# Client ids: a token client's hex id, or a certificate's ``cert:<n>``.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]{0,63}")
MERGE_CHUNK = 256
"""HyperLogLogs merged by one PFMERGE or counted by one PFCOUNT: each holds Redis for ~10 ms at
most, where one PFCOUNT over a year of hours and clients would hold it for seconds."""
_MERGES_PER_ROUND_TRIP = 8
_CLOCK_SKEW_MS = 300_000  # the caller's clock may run ahead of the store's by this much
_MERGE_TTL_MS = 60_000
SCAN_PAGE = 2000
"""Keys per SCAN page, and so per holdings script: one script call stays well under a millisecond."""

_HOLDINGS_FIELDS = (
    "bound_accounts",
    "accounts_ip_location",
    "accounts_birth_date",
    "identities",
    "identities_name_binding",
    "vf_document_number",
    "vf_name_binding",
    "vf_birth_date",
    "vf_account_id",
    "vf_phone",
    "vf_vendor_challenge",
)
_KIND_OF_RECORD = {"acct": "a", "id": "i", "vf": "v"}


@dataclass(frozen=True, slots=True)
class IncidentRequest:
    """What a report is asked about (times in ms of the epoch)."""

    principals: tuple[str, ...]
    since_ms: int
    until_ms: int
    detected_ms: int
    critical_infrastructure: bool = False
    store_breach: bool = False

    def check(self) -> None:
        """Refuses a request no report can answer.

        Raises:
            InvalidArgument: naming the field and why.
        """
        if self.since_ms <= 0:
            raise InvalidArgument("the window's start is required", reason="MISSING_FIELD", field="since")
        if self.until_ms <= 0:
            raise InvalidArgument("the window's end is required", reason="MISSING_FIELD", field="until")
        if self.detected_ms <= 0:
            raise InvalidArgument(
                "the detection time is required: the deadline runs from it",
                reason="MISSING_FIELD",
                field="detected_at",
            )
        if self.until_ms <= self.since_ms:
            raise InvalidArgument("the window ends after it starts", reason="EMPTY_WINDOW", field="until")
        if len(_hours(self.since_ms, self.until_ms)) > MAX_WINDOW_HOURS:
            raise InvalidArgument(
                f"the window is at most {MAX_WINDOW_HOURS // 24} days",
                reason="WINDOW_TOO_LONG",
                field="since",
            )
        if len(self.principals) > MAX_PRINCIPALS:
            raise InvalidArgument(
                f"at most {MAX_PRINCIPALS} principals", reason="TOO_MANY_PRINCIPALS", field="principals"
            )
        for index, principal in enumerate(self.principals):
            if not _CLIENT_ID.fullmatch(principal):
                raise InvalidArgument(
                    "principals are client ids (a token's hex id, or cert:<n>)",
                    reason="BAD_ID",
                    field=f"principals[{index}]",
                )


def estimate(count: int, *, exact: bool) -> dict[str, Any]:
    """A count with its bounds: three standard errors of the HyperLogLog around it, or none when exact."""
    if exact:
        return {"estimate": count, "low": count, "high": count, "exact": True}
    margin = math.ceil(count * SIGMAS * _STANDARD_ERROR)
    return {"estimate": count, "low": max(0, count - margin), "high": count + margin, "exact": False}


class IncidentFlow:
    """Incident reports of every tenant, signed with the audit log's key."""

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        audit: AuditFlow,
        signing_key: Ed25519PrivateKey,
        settings: IncidentSettings,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._audit = audit
        self._key = signing_key
        self._settings = settings

    async def create(self, tenant: str, request: IncidentRequest, info: RequestInfo) -> tuple[bytes, str]:
        """The signed report file and its Markdown.

        Raises:
            InvalidArgument: the request names no window, no detection time, bad principals, or a
                detection or window start in the future.
            RateLimited: another report of the tenant is being made (``REPORT_IN_PROGRESS``).
            StoreUnavailable: when Redis cannot be reached.
        """
        request.check()
        now_ms = await self._scripts.clock.now_ms()
        # A typo in a year would set a deadline years away, or count a window with nothing in it.
        for field, ms in (("detected_at", request.detected_ms), ("since", request.since_ms)):
            if ms > now_ms + _CLOCK_SKEW_MS:
                raise InvalidArgument("a time in the future", reason="IN_THE_FUTURE", field=field)
        keys = TenantKeys(tenant)
        # One report of a tenant at a time: each scans the whole store.
        lock = self._redis.lock(keys.incident_lock(), timeout=REPORT_SECONDS, blocking=False)
        async with translate_errors():
            acquired = await lock.acquire()
        if not acquired:
            raise RateLimited(
                "an incident report of this tenant is being made; ask again once it is done",
                retry_after=30.0,
                reason="REPORT_IN_PROGRESS",
            )
        try:
            return await self._create(tenant, request, info)
        finally:
            with contextlib.suppress(LockError, RedisError, StoreUnavailable):
                async with translate_errors():
                    await lock.release()

    async def _create(self, tenant: str, request: IncidentRequest, info: RequestInfo) -> tuple[bytes, str]:
        reads = await self._reads(tenant, request)
        holdings = await self.holdings(tenant)
        keys = TenantKeys(tenant)
        kind = "store_breach" if request.store_breach else "reads"
        await self._scripts.run(
            "incident_report",
            [keys.audit_log()],
            [
                _request_json(info),
                kind,
                str(request.since_ms),
                str(request.until_ms),
                str(len(request.principals)),
            ],
        )
        head = await self._audit.signed_head(tenant)
        now_ms = await self._scripts.clock.now_ms()
        report = {
            "tenant": tenant,
            "generated_at": _iso(now_ms),
            "signing_key_id": key_id_for(self._key.public_key()),
            "incident": {
                "kind": kind,
                "kind_description": (
                    "the store was exposed (everything the tenant holds)"
                    if request.store_breach
                    else "reads by the clients concerned (e.g. a leaked token)"
                ),
                "principals": list(dict.fromkeys(request.principals)),
                "detected_at": _iso(request.detected_ms),
                "critical_infrastructure": request.critical_infrastructure,
            },
            "window": _window(request),
            "reads": reads,
            "holdings": holdings,
            "threshold": self._threshold(request, reads, holdings),
            "deadline": self._deadline(request),
            "audit_log": {
                "origin": head.head.origin,
                "tree_size": head.head.size,
                "root_hash": head.head.root_hash.hex(),
                "signed_at": _iso(head.head.timestamp_ms),
                "key_id": head.key_id,
            },
            "operator_fills": ["description", "measures_taken", "measures_to_be_taken"],
        }
        return sign_report(report, self._key), render_markdown(report)

    async def _reads(self, tenant: str, request: IncidentRequest) -> dict[str, Any]:
        """Distinct accounts and identities the clients read in the window's hours, by category."""
        hours = _hours(request.since_ms, request.until_ms)
        keys = ReadKeys(tenant)
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for hour in hours:
                pipe.smembers(keys.who(hour))
            readers = await pipe.execute()
        wanted = set(request.principals)
        pairs = [
            (hour, client)
            for hour, members in zip(hours, readers, strict=True)
            for client in sorted(as_text(member) for member in members)
            if not wanted or client in wanted
        ]
        scratch = _Scratch(TenantKeys(tenant))
        figures: list[tuple[str, str, bool, int]] = []  # (category or "*" for any, kind, exact, count)
        try:
            for kind, key_of in (("accounts", keys.accounts), ("identities", keys.identities)):
                reduced: list[str] = []
                for member in Category:
                    listed = [key_of(h, c, member) for h, c in pairs]
                    merged = await self._reduce(listed, scratch)
                    reduced += merged
                    figures.append((str(member), kind, not listed, await self._pfcount(merged)))
                figures.append(
                    ("*", kind, not pairs, await self._pfcount(await self._reduce(reduced, scratch)))
                )
        finally:
            await scratch.drop(self._redis)
        by_category: dict[str, dict[str, Any]] = {str(category): {} for category in Category}
        every: dict[str, Any] = {}
        for category, kind, nothing_listed, count in figures:
            # No key at all: nothing was read, which is exact; any count from an HLL is not.
            figure = estimate(count, exact=nothing_listed or count == 0)
            (every if category == "*" else by_category[category])[kind] = figure
        return {
            "method": "HyperLogLog per client, hour and data category",
            "error_bound": (
                f"standard error {HLL_STANDARD_ERROR * 100:.2f} %; bounds of {SIGMAS} standard "
                "errors (about 99.7 %)"
            ),
            "clients_that_read": sorted({client for _, client in pairs}),
            "by_category": by_category,
            "all_categories": every,
        }

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

    async def holdings(self, tenant: str) -> dict[str, Any]:
        """Exact counts of what the tenant holds, from one SCAN of its keys.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        base = f"{PREFIX}:{{t:{tenant}}}:"
        totals = dict.fromkeys(_HOLDINGS_FIELDS, 0)
        records_of = dict.fromkeys(_KIND_OF_RECORD.values(), 0)
        consents = audited = scanned = 0
        async for _, page in scan_pages(self._redis, base + "*", count=SCAN_PAGE):
            scanned += len(page)
            records: list[str] = []
            kinds: list[str] = []
            for raw in page:
                rest = as_text(raw)[len(base) :]
                record = rest.split(":", 1)[0]
                if record in _KIND_OF_RECORD:
                    records.append(base + rest)
                    kinds.append(_KIND_OF_RECORD[record])
                    records_of[_KIND_OF_RECORD[record]] += 1
                elif record == "consent":
                    consents += 1
                elif rest.startswith("audit:ix:acct:"):
                    audited += 1
            if records:
                counted = await self._scripts.run("incident_holdings", records, ["".join(kinds)])
                for name, value in zip(_HOLDINGS_FIELDS, counted, strict=True):
                    totals[name] += int(value)
        return {
            "method": "one SCAN of the tenant's keys when the report was made: exact counts at that moment",
            "keys_scanned": scanned,
            "identities": totals["identities"],
            "accounts": records_of["a"],
            "bound_accounts": totals["bound_accounts"],
            "verifications_in_progress": records_of["v"],
            "by_category": {
                "verification": totals["bound_accounts"],
                "ip_location": totals["accounts_ip_location"],
                "consent": consents,
                # Audit pseudonyms with entries: one per account and pseudonym pepper.
                "audit": audited,
            },
            "sealed_values": {
                "document_number": totals["vf_document_number"],
                "name_binding": totals["identities_name_binding"] + totals["vf_name_binding"],
                "birth_date": totals["accounts_birth_date"] + totals["vf_birth_date"],
                "account_id": totals["vf_account_id"],
                "phone_number": totals["vf_phone"],
                "vendor_challenge": totals["vf_vendor_challenge"],
            },
        }

    def _threshold(
        self, request: IncidentRequest, reads: Mapping[str, Any], holdings: Mapping[str, Any]
    ) -> dict[str, Any]:
        people = self._settings.threshold_people
        if request.store_breach:
            affected = estimate(holdings["identities"], exact=True)
            basis = "persons (identities) the tenant holds"
        else:
            affected = reads["all_categories"]["identities"]
            basis = "persons (identities) whose data the clients read, in any category"
        if affected["low"] >= people:
            state = "yes"
        elif affected["high"] >= people:
            state = "possibly: the threshold lies within the estimate's bounds; report"
        else:
            state = "no"
        return {
            "people": people,
            "affected": affected,
            "basis": basis,
            "crossed": state != "no",
            "state": state,
        }

    def _deadline(self, request: IncidentRequest) -> dict[str, Any]:
        if request.critical_infrastructure:
            hours = self._settings.critical_report_hours
            basis = "critical information infrastructure: [incident] critical_report_hours"
        else:
            hours = self._settings.report_hours
            basis = "[incident] report_hours"
        due_ms = request.detected_ms + round(hours * HOUR_MS)
        return {"hours": f"{hours:g}", "basis": basis, "due": _iso(due_ms)}


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


def _hours(since_ms: int, until_ms: int) -> list[int]:
    """The hour buckets that hold any of [since, until): since's hour up to until's, rounded up."""
    return list(range(hour_of(since_ms), -(-until_ms // HOUR_MS)))


def _window(request: IncidentRequest) -> dict[str, Any]:
    hours = _hours(request.since_ms, request.until_ms)
    return {
        "since_requested": _iso(request.since_ms),
        "until_requested": _iso(request.until_ms),
        "since": _iso(hours[0] * HOUR_MS),
        "until": _iso((hours[-1] + 1) * HOUR_MS),
        "hours": len(hours),
        "note": "reads are counted by whole hours: the window asked, widened to the hour",
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_json(info: RequestInfo) -> str:
    import json  # noqa: PLC0415 - one use

    return json.dumps(info.audit_fields())
