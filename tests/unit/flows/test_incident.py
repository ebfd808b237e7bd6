"""IncidentFlow on a real Redis: distinct reads from the read accounting, holdings, the signed report.

The reads are written here with PFADD and SADD in the read accounting's key schema
(``store.read_keys.ReadKeys``), as many as the issue's full scale (150,000 accounts read by
one token), so the estimate's bounds are checked where they matter; the end-to-end test drives
reads through a server.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.events import parse_entry
from idverify.audit.incident_report import verify_report
from idverify.config import IncidentSettings
from idverify.domain.errors import InvalidArgument, RateLimited
from idverify.flows.audit import AuditFlow
from idverify.flows.context import RequestInfo
from idverify.flows.incident import REPORT_SECONDS, IncidentFlow
from idverify.flows.incident_request import MAX_WINDOW_HOURS, IncidentRequest
from idverify.flows.read_accounting import HOUR_MS, Category
from idverify.privacy.keyring import Keyring
from idverify.services.interceptor import ServiceInterceptor
from idverify.store import incident_reads
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.connection import RedisClient
from idverify.store.incident_reads import RedisIncidentStore
from idverify.store.keys import TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.store.scripts import Scripts

_tenants = itertools.count()
KEY = Ed25519PrivateKey.generate()
LEAKED = "c0ffee01"
OTHER = "beef0002"
H0 = 490_000  # an hour bucket (2025-11-24): the window under test starts in it
INFO = RequestInfo(principal="t/admin/x")


@pytest.fixture
def tenant() -> str:
    return f"incident-{next(_tenants)}"


def incidents(redis: RedisClient, threshold: int = 1000) -> IncidentFlow:
    scripts = Scripts(redis)
    audit = AuditFlow(RedisAuditLog(redis, scripts), TreeHeadSigner(KEY), Keyring.generate())
    return IncidentFlow(
        RedisIncidentStore(redis, scripts), audit, KEY, IncidentSettings(threshold_people=threshold)
    )


async def read(
    redis: RedisClient,
    tenant: str,
    hour: int,
    client: str,
    category: Category,
    accounts: range,
    per_person: int = 1,
) -> None:
    """``client`` read accounts ``acct-<n>`` (persons ``person-<n // per_person>``) in ``hour``."""
    keys = ReadKeys(tenant)
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(accounts.start, accounts.stop, 10_000):
            chunk = range(start, min(start + 10_000, accounts.stop))
            pipe.pfadd(keys.accounts(hour, client, category), *(f"acct-{n}" for n in chunk))
            pipe.pfadd(keys.identities(hour, client, category), *(f"person-{n // per_person}" for n in chunk))
        pipe.sadd(keys.who(hour), client)
        await pipe.execute()


def window(hours: int = 3) -> IncidentRequest:
    """From half past H0 to ten past the third hour: counted as H0 to H0 + 3 whole hours."""
    return IncidentRequest(
        principals=(LEAKED,),
        since_ms=H0 * HOUR_MS + 30 * 60_000,
        until_ms=(H0 + hours - 1) * HOUR_MS + 10 * 60_000,
        detected_ms=(H0 + 5) * HOUR_MS,
    )


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def within(figure: dict[str, object], truth: int) -> bool:
    return figure["low"] <= truth <= figure["high"] and not figure["exact"]  # type: ignore[operator]


@pytest.mark.parametrize("accounts", [3_000, 150_000])
async def test_one_token_reading_many_accounts_is_counted_within_the_bound(
    redis: RedisClient, tenant: str, accounts: int
) -> None:
    """The leaked token's distinct accounts and persons in three hours; not others', not outside them."""
    third = accounts // 3
    # Overlapping reads across hours count once; two accounts per person.
    await read(redis, tenant, H0, LEAKED, Category.IP_LOCATION, range(2 * third), per_person=2)
    await read(redis, tenant, H0 + 1, LEAKED, Category.IP_LOCATION, range(third, accounts), per_person=2)
    await read(redis, tenant, H0 + 2, LEAKED, Category.VERIFICATION, range(100), per_person=2)
    await read(redis, tenant, H0 + 1, OTHER, Category.IP_LOCATION, range(accounts, accounts + 500))
    await read(redis, tenant, H0 - 1, LEAKED, Category.IP_LOCATION, range(accounts, accounts + 700))
    await read(redis, tenant, H0 + 3, LEAKED, Category.CONSENT, range(accounts, accounts + 700))

    signed, _ = await incidents(redis, threshold=accounts // 3).create(tenant, window(), INFO)
    report = json.loads(signed)["report"]
    reads = report["reads"]
    assert reads["clients_that_read"] == [LEAKED]
    assert within(reads["by_category"]["ip_location"]["accounts"], accounts)
    assert within(reads["by_category"]["ip_location"]["identities"], accounts // 2)
    assert within(reads["by_category"]["verification"]["accounts"], 100)
    assert reads["by_category"]["consent"]["accounts"] == {"estimate": 0, "low": 0, "high": 0, "exact": True}
    assert within(reads["all_categories"]["accounts"], accounts)
    assert report["window"]["hours"] == 3
    assert report["window"]["since"] == iso(H0 * HOUR_MS)
    assert report["window"]["until"] == iso((H0 + 3) * HOUR_MS)
    assert report["threshold"]["crossed"] is True
    assert report["threshold"]["state"] == "yes"


async def test_without_principals_every_reader_counts(redis: RedisClient, tenant: str) -> None:
    await read(redis, tenant, H0, LEAKED, Category.AUDIT, range(1000))
    await read(redis, tenant, H0 + 1, OTHER, Category.AUDIT, range(500, 2000))
    request = IncidentRequest(
        principals=(), since_ms=H0 * HOUR_MS, until_ms=(H0 + 2) * HOUR_MS, detected_ms=1
    )
    report = json.loads((await incidents(redis).create(tenant, request, INFO))[0])["report"]
    assert report["reads"]["clients_that_read"] == sorted([LEAKED, OTHER])
    assert within(report["reads"]["by_category"]["audit"]["accounts"], 2000)


async def test_the_threshold_and_the_deadline(redis: RedisClient, tenant: str) -> None:
    await read(redis, tenant, H0, LEAKED, Category.CONSENT, range(990))
    flow = incidents(redis, threshold=1000)
    report = json.loads((await flow.create(tenant, window(), INFO))[0])["report"]
    # 990 read: within three standard errors of 1,000, so it may have crossed.
    assert report["threshold"]["state"].startswith("possibly")
    assert report["threshold"]["crossed"] is True
    assert report["deadline"] == {
        "hours": "4",
        "basis": "[incident] report_hours",
        "due": iso((H0 + 5 + 4) * HOUR_MS),
    }
    request = window()
    urgent = IncidentRequest(
        principals=request.principals,
        since_ms=request.since_ms,
        until_ms=request.until_ms,
        detected_ms=request.detected_ms,
        critical_infrastructure=True,
    )
    report = json.loads((await flow.create(tenant, urgent, INFO))[0])["report"]
    assert report["deadline"]["due"] == iso((H0 + 5 + 1) * HOUR_MS)
    far = incidents(redis, threshold=5000)
    assert json.loads((await far.create(tenant, window(), INFO))[0])["report"]["threshold"]["state"] == "no"


async def test_holdings_are_exact_counts_of_the_tenants_records(redis: RedisClient, tenant: str) -> None:
    """Every kind of record counted once, forwarding records and other tenants' records not at all."""
    keys, others = TenantKeys(tenant), TenantKeys(f"{tenant}-b")
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(30):
            fields = {"created_ms": "1"}
            if n < 20:
                fields["identity"] = f"ref{n}"
            if n < 12:
                fields["ip_ms"] = "1"
            if n < 15:
                fields["birth_sealed"] = "w1:x"
            pipe.hset(keys.account(f"ps{n}"), mapping=fields)
            pipe.hset(others.account(f"ps{n}"), mapping=fields)
        for n in range(18):
            pipe.hset(keys.identity(f"ref{n}"), mapping={"name_binding": "w1:y", "pepper": "p1"})
        pipe.hset(keys.identity("moved"), mapping={"moved_to": "ref1"})
        for n in range(4):
            pipe.hset(
                keys.verification(f"vf{n}"), mapping={"identity": "w1:a", "acct_sealed": "w1:b", "state": "x"}
            )
        for n in range(7):
            pipe.hset(keys.consent(f"ps{n}"), mapping={"p:v": "1"})
            pipe.set(keys.audit_index("acct", f"aud{n}"), b"\0" * 6)
        pipe.set(keys.rate_limit("x", "y"), 1)
        await pipe.execute()
    holdings = await incidents(redis).holdings(tenant)
    assert holdings["identities"] == 18
    assert holdings["accounts"] == 30
    assert holdings["bound_accounts"] == 20
    assert holdings["verifications_in_progress"] == 4
    assert holdings["by_category"] == {"verification": 20, "ip_location": 12, "consent": 7, "audit": 7}
    assert holdings["sealed_values"] == {
        "document_number": 4,
        "name_binding": 18,
        "birth_date": 15,
        "account_id": 4,
        "phone_number": 0,
        "vendor_challenge": 0,
    }


async def test_a_store_breach_counts_everything_held(redis: RedisClient, tenant: str) -> None:
    keys = TenantKeys(tenant)
    for n in range(5):
        await redis.hset(keys.identity(f"ref{n}"), mapping={"name_binding": "w1:y"})
    request = window()
    breach = IncidentRequest(
        principals=(),
        since_ms=request.since_ms,
        until_ms=request.until_ms,
        detected_ms=request.detected_ms,
        store_breach=True,
    )
    report = json.loads((await incidents(redis, threshold=5).create(tenant, breach, INFO))[0])["report"]
    assert report["incident"]["kind"] == "store_breach"
    assert report["threshold"]["affected"] == {"estimate": 5, "low": 5, "high": 5, "exact": True}
    assert report["threshold"]["state"] == "yes"


async def test_the_report_is_signed_and_audited(redis: RedisClient, tenant: str) -> None:
    """Its own entry is in the log, and the head it names covers that entry."""
    await read(redis, tenant, H0, LEAKED, Category.IP_LOCATION, range(10))
    signed, markdown = await incidents(redis).create(tenant, window(), INFO)
    result = verify_report(signed, KEY.public_key())
    assert result.ok, result.problem
    log = TenantKeys(tenant).audit_log()
    size = int(await redis.hlen(log))
    entry = parse_entry(await redis.hget(log, str(size - 1)))  # type: ignore[arg-type]
    assert entry.type == "incident.reported"
    assert entry.principal == "t/admin/x"
    assert entry.attributes["principals"] == "1"
    assert result.report["audit_log"]["tree_size"] == size
    assert "## Measures taken" in markdown


@pytest.mark.parametrize("field", ["detected_at", "since"])
async def test_a_time_in_the_future_is_a_typo(redis: RedisClient, tenant: str, field: str) -> None:
    base = window()
    later = 4_000_000_000_000  # 2096
    request = IncidentRequest(
        principals=base.principals,
        since_ms=later if field == "since" else base.since_ms,
        until_ms=later + HOUR_MS if field == "since" else base.until_ms,
        detected_ms=later if field == "detected_at" else base.detected_ms,
    )
    with pytest.raises(InvalidArgument) as refused:
        await incidents(redis).create(tenant, request, INFO)
    assert (refused.value.field, refused.value.reason) == (field, "IN_THE_FUTURE")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"since_ms": 0}, "since"),
        ({"until_ms": 0}, "until"),
        ({"detected_ms": 0}, "detected_at"),
        ({"until_ms": H0 * HOUR_MS}, "until"),
        ({"since_ms": (H0 - MAX_WINDOW_HOURS) * HOUR_MS}, "since"),
        ({"principals": (LEAKED, "a b")}, "principals[1]"),
        ({"principals": (LEAKED, LEAKED, "x:" + "1" * 80)}, "principals[2]"),
        ({"principals": tuple(f"c{n}" for n in range(1001))}, "principals"),
    ],
    ids=["no-since", "no-until", "no-detection", "empty-window", "too-long", "bad-id", "long-id", "too-many"],
)
async def test_bad_requests_name_their_field(
    redis: RedisClient, tenant: str, changes: dict[str, object], field: str
) -> None:
    base = window()
    values = {
        "principals": base.principals,
        "since_ms": base.since_ms,
        "until_ms": base.until_ms,
        "detected_ms": base.detected_ms,
    }
    request = IncidentRequest(**{**values, **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as refused:
        await incidents(redis).create(tenant, request, INFO)
    assert refused.value.field == field
    assert await redis.hlen(TenantKeys(tenant).audit_log()) == 0  # a refused report leaves no entry


def test_certificate_principals_are_client_ids() -> None:
    request = window()
    IncidentRequest(
        principals=("cert:0", LEAKED),
        since_ms=request.since_ms,
        until_ms=request.until_ms,
        detected_ms=request.detected_ms,
    ).check()


async def test_many_hours_and_clients_are_merged_in_chunks_and_leave_nothing_behind(
    redis: RedisClient, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long window's keys are merged a chunk at a time, to the same union, leaving nothing.

    No PFCOUNT then holds Redis for long, and the scratch keys are gone once the report is made.
    """
    monkeypatch.setattr(incident_reads, "MERGE_CHUNK", 3)
    merges_before = await merges(redis)
    for hour in range(H0, H0 + 20):
        for client in (LEAKED, OTHER):
            first = (hour - H0) * 100
            await read(redis, tenant, hour, client, Category.IP_LOCATION, range(first, first + 150))
    request = IncidentRequest(
        principals=(), since_ms=H0 * HOUR_MS, until_ms=(H0 + 20) * HOUR_MS, detected_ms=1
    )
    report = json.loads((await incidents(redis).create(tenant, request, INFO))[0])["report"]
    assert within(report["reads"]["by_category"]["ip_location"]["accounts"], 19 * 100 + 150)
    assert within(report["reads"]["all_categories"]["accounts"], 19 * 100 + 150)
    assert [key async for key in redis.scan_iter(match=f"iv1:{{t:{tenant}}}:incident:*")] == []
    # 40 keys a category in chunks of 3: 14 merges, then 5, then 2; the union of the 4 categories more.
    assert await merges(redis) - merges_before > 4 * (14 + 5 + 2)


async def merges(redis: RedisClient) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_pfmerge", {}).get("calls", 0))


async def test_one_report_of_a_tenant_at_a_time(redis: RedisClient, tenant: str) -> None:
    """A report scans the whole store: a second one asked meanwhile is refused, not queued."""
    await read(redis, tenant, H0, LEAKED, Category.IP_LOCATION, range(10))
    flow = incidents(redis)
    held = redis.lock(TenantKeys(tenant).incident_lock(), timeout=60, blocking=False)
    assert await held.acquire()
    with pytest.raises(RateLimited) as refused:
        await flow.create(tenant, window(), INFO)
    assert refused.value.reason == "REPORT_IN_PROGRESS"
    assert refused.value.retry_after > 0
    await held.release()
    await flow.create(tenant, window(), INFO)
    await flow.create(tenant, window(), INFO)  # the first one let go of the lock
    assert not await redis.exists(TenantKeys(tenant).incident_lock())


def test_a_report_may_outlast_the_rpc_limit_of_other_calls() -> None:
    interceptor = ServiceInterceptor(None, None, rpc_timeout_seconds=15.0)  # type: ignore[arg-type]
    assert interceptor.timeout_of("/idverify.v1.AdminService/CreateIncidentReport") == REPORT_SECONDS
    assert interceptor.timeout_of("/idverify.v1.AdminService/ListClients") == 15.0
