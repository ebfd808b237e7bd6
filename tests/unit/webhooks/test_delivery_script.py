"""The delivery script's ``next`` on a real Redis: one round trip per batch, refused when stale.

``next`` stores the cursor the previous batch reached and reads the next batch; only the lease's
holder under the subscription's generation may do either (a replay, a disable or another worker
in between refuses it, and nothing is written).
"""

from __future__ import annotations

import itertools
import json

from idverify.events.accounts import event_account_fields
from idverify.events.outbox import Outbox
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.outbox import RedisOutbox, outbox_records
from idverify.store.scripts import Scripts

KEYRING = Keyring.generate()
SEALER = Sealer(KEYRING)
WEBHOOK = "0123456789abcdef"
_tenants = itertools.count()


async def grant(scripts: Scripts, tenant: str, account_id: str, span: str = "") -> None:
    keys = TenantKeys(tenant)
    fields = event_account_fields(KEYRING, SEALER, tenant, account_id)
    request = {"principal": f"{tenant}/registrar/x", "request_id": "", "trace_id": "", "span": span, **fields}
    account_ps = KEYRING.pseudonym(tenant, "account", account_id)
    await scripts.run(
        "consent_grant",
        [keys.account(account_ps), keys.consent(account_ps), keys.audit_log()],
        ["biometric", "v1", json.dumps(request), fields["account"], "1"],
    )


async def next_batch(
    scripts: Scripts, tenant: str, token: str, gen: str, acknowledged: str, after: str
) -> object:
    keys = TenantKeys(tenant)
    return await scripts.run(
        "webhook_delivery",
        [keys.webhook(WEBHOOK), keys.webhook_lease(WEBHOOK), keys.events_outbox(), keys.audit_log()],
        ["next", token, gen, acknowledged, after, "2"],
    )


async def test_next_records_progress_and_reads_what_outbox_read_reads(redis: RedisClient) -> None:
    tenant = f"delivery-{next(_tenants)}"
    keys = TenantKeys(tenant)
    scripts = Scripts(redis)
    outbox = Outbox(RedisOutbox(redis), SEALER)
    await redis.hset(keys.webhook(WEBHOOK), mapping={"enabled": "1", "gen": "3", "cursor": ""})
    assert (
        await scripts.run(
            "webhook_delivery", [keys.webhook(WEBHOOK), keys.webhook_lease(WEBHOOK)], ["take", "t1", "5000"]
        )
        == 1
    )
    for n in range(3):
        await grant(scripts, tenant, f"acct-{n}")
    expected, _ = await outbox.read(tenant, "", 100)

    reply = await next_batch(scripts, tenant, "t1", "3", "", "")
    assert isinstance(reply, list)
    first = outbox.events_of(tenant, outbox_records(reply[0], reply[1]))
    assert first == expected[:2]  # the count asked for, decoded as Outbox.read decodes them
    reply = await next_batch(scripts, tenant, "t1", "3", first[-1].cursor, first[-1].cursor)
    assert isinstance(reply, list)
    assert outbox.events_of(tenant, outbox_records(reply[0], reply[1])) == expected[2:]
    assert await redis.hget(keys.webhook(WEBHOOK), "cursor") == first[-1].cursor.encode()
    # Caught up: nothing more, and the last batch's progress is stored with the empty read.
    reply = await next_batch(scripts, tenant, "t1", "3", expected[-1].cursor, expected[-1].cursor)
    assert reply == [[], []]
    assert await redis.hget(keys.webhook(WEBHOOK), "cursor") == expected[-1].cursor.encode()


async def test_next_is_refused_to_another_token_or_an_old_generation_and_writes_nothing(
    redis: RedisClient,
) -> None:
    """A worker whose lease was taken over, or that missed a replay, can neither read nor move on."""
    tenant = f"delivery-{next(_tenants)}"
    keys = TenantKeys(tenant)
    scripts = Scripts(redis)
    await redis.hset(keys.webhook(WEBHOOK), mapping={"enabled": "1", "gen": "3", "cursor": "1-0"})
    await scripts.run(
        "webhook_delivery", [keys.webhook(WEBHOOK), keys.webhook_lease(WEBHOOK)], ["take", "t1", "5000"]
    )
    await grant(scripts, tenant, "acct")
    for token, gen in (("t2", "3"), ("t1", "2"), ("", "3")):
        assert await next_batch(scripts, tenant, token, gen, "99999999999999-0", "") == 0
    assert await redis.hget(keys.webhook(WEBHOOK), "cursor") == b"1-0"


async def test_the_record_keeps_the_span_of_the_change_and_the_entry_does_not(redis: RedisClient) -> None:
    tenant = f"delivery-{next(_tenants)}"
    scripts = Scripts(redis)
    span = f"{'ab' * 16}-{'cd' * 8}-01"
    await grant(scripts, tenant, "traced", span)
    await grant(scripts, tenant, "untraced")
    events, _ = await Outbox(RedisOutbox(redis), SEALER).read(tenant, "", 10)
    assert [e.span_context for e in events] == [span, ""]
    entries = await redis.hvals(TenantKeys(tenant).audit_log())
    assert not any(b"cdcdcdcd" in entry or b'"span"' in entry for entry in entries)
