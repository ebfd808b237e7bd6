"""The outbox on a real Redis: events written by the consent script, read, filtered and trimmed.

The store's own contract is ``tests/unit/usecases/test_outbox_contract.py``; these run the
Outbox over ``store.outbox.RedisOutbox`` with records the service's scripts write.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from idverify.domain.errors import InvalidArgument, OutOfRange
from idverify.events.accounts import event_account_fields
from idverify.events.outbox import Outbox, check_cursor, check_types
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.outbox import RedisOutbox
from idverify.store.scripts import Scripts

KEYRING = Keyring.generate()
SEALER = Sealer(KEYRING)
_tenants = itertools.count()


@pytest.fixture
def tenant() -> str:
    return f"outbox-{next(_tenants)}"


async def grant(scripts: Scripts, tenant: str, account_id: str, purpose: str = "biometric") -> None:
    """One consent.granted event for the account, through the script the service runs."""
    keys = TenantKeys(tenant)
    fields = event_account_fields(KEYRING, SEALER, tenant, account_id)
    request = {"principal": f"{tenant}/registrar/x", "request_id": "", "trace_id": "", **fields}
    account_ps = KEYRING.pseudonym(tenant, "account", account_id)
    await scripts.run(
        "consent_grant",
        [keys.account(account_ps), keys.consent(account_ps), keys.audit_log()],
        [purpose, "v1", json.dumps(request), fields["account"], "1"],
    )


async def test_events_name_their_account_and_entry_and_resume_after_a_cursor(
    redis: RedisClient, tenant: str
) -> None:
    scripts = Scripts(redis)
    outbox = Outbox(RedisOutbox(redis), SEALER)
    for n in range(5):
        await grant(scripts, tenant, f"acct-{n}")
    events, cursor = await outbox.read(tenant, "", 100)
    assert [e.account_id for e in events] == [f"acct-{n}" for n in range(5)]
    assert [e.audit_index for e in events] == list(range(5))
    assert {e.type for e in events} == {"consent.granted"}
    assert cursor == events[-1].cursor
    rest, _ = await outbox.read(tenant, events[1].cursor, 100)
    assert [e.cursor for e in rest] == [e.cursor for e in events[2:]]
    # The sealed id never reaches the audit entry.
    entry = await redis.hget(TenantKeys(tenant).audit_log(), "0")
    assert entry is not None
    assert b"event_account" not in entry
    assert b"acct-0" not in entry


async def test_a_filter_that_matches_nothing_still_moves_the_cursor(redis: RedisClient, tenant: str) -> None:
    await grant(Scripts(redis), tenant, "acct")
    events, cursor = await Outbox(RedisOutbox(redis), SEALER).read(
        tenant, "", 100, frozenset({"account.bound"})
    )
    assert events == []
    assert cursor != ""


async def test_trimmed_events_refuse_a_cursor_below_them(redis: RedisClient, tenant: str) -> None:
    scripts = Scripts(redis)
    outbox = Outbox(RedisOutbox(redis), SEALER)
    await grant(scripts, tenant, "old-1")
    await grant(scripts, tenant, "old-2")
    old, _ = await outbox.read(tenant, "", 100)
    await asyncio.sleep(0.01)  # the cut is by millisecond: the records must be older than now
    assert await RedisOutbox(redis, scripts).trim(tenant, retention_ms=0) == 2
    await grant(scripts, tenant, "new")
    with pytest.raises(OutOfRange) as gone:
        await outbox.check_kept(tenant, old[0].cursor)
    assert gone.value.reason == "CURSOR_EXPIRED"
    # After the newest record trimmed, nothing is missing: resuming there is fine.
    await outbox.check_kept(tenant, old[1].cursor)
    await outbox.check_kept(tenant, "")
    events, _ = await outbox.read(tenant, old[1].cursor, 100)
    assert [e.account_id for e in events] == ["new"]
    assert await RedisOutbox(redis, scripts).trim(tenant, retention_ms=3_600_000) == 0


def test_bad_cursors_and_types_name_their_field() -> None:
    with pytest.raises(InvalidArgument) as cursor:
        check_cursor("1-2-3")
    assert cursor.value.field == "after"
    assert check_cursor("1712345678901-0") == "1712345678901-0"
    with pytest.raises(InvalidArgument) as types:
        check_types(["account.bound", "client.created"])
    assert types.value.field == "types[1]"
    assert check_types([]) == frozenset()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-connection", "pool"])
async def test_the_last_cursor_is_the_newest_records_on_either_connection(
    redis: RedisClient, tenant: str, shared: bool
) -> None:
    # The tail polls it on the scripts' shared connection (Scripts.command), a reply parsed by
    # hiredis there rather than by redis-py: both must name the same record.
    scripts = Scripts(redis, share_connection=shared)
    outbox = Outbox(RedisOutbox(redis, scripts), SEALER)
    try:
        assert await outbox.last_cursor(tenant) == ""
        for n in range(3):
            await grant(scripts, tenant, f"acct-{n}")
        events, _ = await Outbox(RedisOutbox(redis), SEALER).read(tenant, "", 100)
        assert await outbox.last_cursor(tenant) == events[-1].cursor
        assert await Outbox(RedisOutbox(redis), SEALER).last_cursor(tenant) == events[-1].cursor
    finally:
        await scripts.aclose()
