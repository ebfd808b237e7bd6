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

The flow reads the store through :class:`IncidentStore`, the port declared here with the records
it speaks in; ``store.incident_reads.RedisIncidentStore`` implements it (the key names, PFCOUNT,
the lock, the holdings script). A request's own checks are in ``flows.incident_request``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import SignedHead, key_id_for
from idverify.audit.incident_report import render_markdown, sign_report
from idverify.config import IncidentSettings
from idverify.domain.errors import InvalidArgument, RateLimited
from idverify.flows.context import RequestInfo
from idverify.flows.incident_request import IncidentRequest, window_hours
from idverify.flows.read_accounting import HLL_STANDARD_ERROR, HOUR_MS, Category

__all__ = [
    "HOLDINGS_FIELDS",
    "HeldLock",
    "Holdings",
    "IncidentFlow",
    "IncidentStore",
    "ReadFigure",
    "ReportEntry",
    "SignedHeads",
    "estimate",
]

SIGMAS = 3
_STANDARD_ERROR = Fraction(str(HLL_STANDARD_ERROR))  # exact, so the bounds are the same everywhere
REPORT_SECONDS = 600.0
"""The longest a report may take (its holdings scan the whole store; docs/PERFORMANCE.md): the
RPC's own limit, and the lock's, so a crashed worker holds the tenant's reports no longer."""
_CLOCK_SKEW_MS = 300_000  # the caller's clock may run ahead of the store's by this much


HOLDINGS_FIELDS = (
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
"""The counts a Holdings carries, in the order ``incident_holdings.lua`` answers them."""


@dataclass(frozen=True, slots=True)
class ReadFigure:
    """One distinct count of the reads: of accounts or identities, in one category or in any."""

    category: str  # a Category's value, or "*" for any category
    kind: str  # "accounts" or "identities"
    nothing_listed: bool  # no HyperLogLog was counted: nothing was read, exactly
    count: int


@dataclass(frozen=True, slots=True)
class ReportEntry:
    """The ``incident.reported`` audit entry of one report."""

    request_fields: str  # the request's audit fields, as JSON
    kind: str  # "reads" or "store_breach"
    since_ms: int
    until_ms: int
    principals: int  # how many clients the report is about


@dataclass(frozen=True, slots=True)
class Holdings:
    """Exact counts of what a tenant holds, from one SCAN of its keys."""

    keys_scanned: int
    accounts: int  # account records
    verifications: int  # verification records (in progress)
    consents: int  # consent keys
    audited: int  # audit pseudonyms with entries
    fields: Mapping[str, int]  # HOLDINGS_FIELDS' counts, summed over every record


class HeldLock(Protocol):
    """A tenant's report lock, held by one report."""

    async def release(self) -> None:
        """Releases the lock; one that expired, or a store gone, leaves it to its timeout."""
        ...


class SignedHeads(Protocol):
    """The audit log's signed heads (``flows.audit.AuditFlow``)."""

    async def signed_head(self, tenant: str) -> SignedHead:
        """A signed head of everything appended so far."""
        ...


class IncidentStore(Protocol):
    """What a report reads and writes; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def try_lock(self, tenant: str, seconds: float) -> HeldLock | None:
        """The tenant's report lock for at most ``seconds``, or None while another report holds it."""
        ...

    async def readers(self, tenant: str, hours: Sequence[int]) -> list[list[str]]:
        """The clients that read in each of ``hours`` (hour buckets), sorted."""
        ...

    async def read_figures(self, tenant: str, pairs: Sequence[tuple[int, str]]) -> list[ReadFigure]:
        """Distinct accounts and identities read by the ``(hour, client)`` pairs: per category, then any."""
        ...

    async def append_report(self, tenant: str, entry: ReportEntry) -> None:
        """Appends the report's ``incident.reported`` entry to the tenant's audit log."""
        ...

    async def holdings(self, tenant: str) -> Holdings:
        """Exact counts of what the tenant holds."""
        ...


def estimate(count: int, *, exact: bool) -> dict[str, Any]:
    """A count with its bounds: three standard errors of the HyperLogLog around it, or none when exact."""
    if exact:
        return {"estimate": count, "low": count, "high": count, "exact": True}
    margin = math.ceil(count * SIGMAS * _STANDARD_ERROR)
    return {"estimate": count, "low": max(0, count - margin), "high": count + margin, "exact": False}


@dataclass(eq=False, slots=True)
class IncidentFlow:
    """Incident reports of every tenant, signed with the audit log's key."""

    store: IncidentStore
    audit: SignedHeads
    signing_key: Ed25519PrivateKey
    settings: IncidentSettings

    async def create(self, tenant: str, request: IncidentRequest, info: RequestInfo) -> tuple[bytes, str]:
        """The signed report file and its Markdown.

        Raises:
            InvalidArgument: the request names no window, no detection time, bad principals, or a
                detection or window start in the future.
            RateLimited: another report of the tenant is being made (``REPORT_IN_PROGRESS``).
            StoreUnavailable: when Redis cannot be reached.
        """
        request.check()
        now_ms = await self.store.now_ms()
        # A typo in a year would set a deadline years away, or count a window with nothing in it.
        for field, ms in (("detected_at", request.detected_ms), ("since", request.since_ms)):
            if ms > now_ms + _CLOCK_SKEW_MS:
                raise InvalidArgument("a time in the future", reason="IN_THE_FUTURE", field=field)
        # One report of a tenant at a time: each scans the whole store.
        lock = await self.store.try_lock(tenant, REPORT_SECONDS)
        if lock is None:
            raise RateLimited(
                "an incident report of this tenant is being made; ask again once it is done",
                retry_after=30.0,
                reason="REPORT_IN_PROGRESS",
            )
        try:
            return await self._create(tenant, request, info)
        finally:
            await lock.release()

    async def _create(self, tenant: str, request: IncidentRequest, info: RequestInfo) -> tuple[bytes, str]:
        reads = await self._reads(tenant, request)
        holdings = await self.holdings(tenant)
        kind = "store_breach" if request.store_breach else "reads"
        entry = ReportEntry(
            _request_json(info), kind, request.since_ms, request.until_ms, len(request.principals)
        )
        await self.store.append_report(tenant, entry)
        head = await self.audit.signed_head(tenant)
        now_ms = await self.store.now_ms()
        report = {
            "tenant": tenant,
            "generated_at": _iso(now_ms),
            "signing_key_id": key_id_for(self.signing_key.public_key()),
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
        return sign_report(report, self.signing_key), render_markdown(report)

    async def _reads(self, tenant: str, request: IncidentRequest) -> dict[str, Any]:
        """Distinct accounts and identities the clients read in the window's hours, by category."""
        hours = window_hours(request.since_ms, request.until_ms)
        readers = await self.store.readers(tenant, hours)
        wanted = set(request.principals)
        pairs = [
            (hour, client)
            for hour, clients in zip(hours, readers, strict=True)
            for client in clients
            if not wanted or client in wanted
        ]
        figures = await self.store.read_figures(tenant, pairs)
        by_category: dict[str, dict[str, Any]] = {str(category): {} for category in Category}
        every: dict[str, Any] = {}
        for read in figures:
            # No key at all: nothing was read, which is exact; any count from an HLL is not.
            figure = estimate(read.count, exact=read.nothing_listed or read.count == 0)
            (every if read.category == "*" else by_category[read.category])[read.kind] = figure
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

    async def holdings(self, tenant: str) -> dict[str, Any]:
        """Exact counts of what the tenant holds, from one SCAN of its keys.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        held = await self.store.holdings(tenant)
        totals = held.fields
        return {
            "method": "one SCAN of the tenant's keys when the report was made: exact counts at that moment",
            "keys_scanned": held.keys_scanned,
            "identities": totals["identities"],
            "accounts": held.accounts,
            "bound_accounts": totals["bound_accounts"],
            "verifications_in_progress": held.verifications,
            "by_category": {
                "verification": totals["bound_accounts"],
                "ip_location": totals["accounts_ip_location"],
                "consent": held.consents,
                # Audit pseudonyms with entries: one per account and pseudonym pepper.
                "audit": held.audited,
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
        people = self.settings.threshold_people
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
            hours = self.settings.critical_report_hours
            basis = "critical information infrastructure: [incident] critical_report_hours"
        else:
            hours = self.settings.report_hours
            basis = "[incident] report_hours"
        due_ms = request.detected_ms + round(hours * HOUR_MS)
        return {"hours": f"{hours:g}", "basis": basis, "due": _iso(due_ms)}


def _window(request: IncidentRequest) -> dict[str, Any]:
    hours = window_hours(request.since_ms, request.until_ms)
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
