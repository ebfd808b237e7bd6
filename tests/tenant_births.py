"""A tenant as this release's server makes it when no server of an older release reports in.

Its first audit entry (here its first client's creation, as a deployment's first call makes it)
comes from a process whose new logs are born walked (``flows.born_walked``): the log's head gets
``migrate legacy``'s mark as it is created, so the tenant's steps never read the legacy
``events:acct`` map. A tenant made otherwise (the helpers' plain ``Scripts``) has an unmarked head,
as one 0.1.0 or a server beside it created; with the map an older build left
(:func:`made_with_legacy_data`), the family tests' legacy-map entries meet it.
"""

from __future__ import annotations

from idverify.security.clients import ClientCreation, NewClient
from idverify.security.principals import Role
from idverify.store.clients import RedisClientStore
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["BORN_MARK", "LEGACY_MAP_FIELD", "born_walked", "made_with_legacy_data"]

BORN_MARK = b"born"
"""The value of the head's ``legacy_moved`` in a log born walked (``migrate legacy`` writes ``1``)."""


async def born_walked(redis: RedisClient, tenant: str) -> None:
    """Creates ``tenant``'s first client through a process whose new logs are born walked."""
    clients = RedisClientStore(redis, Scripts(redis, new_logs_walked=True))
    request = '{"principal":"bootstrap","request_id":"first","trace_id":""}'
    created, _ = await clients.create(NewClient(tenant, "first", Role.ADMIN, "first", "mac", request))
    assert created is ClientCreation.CREATED, created
    assert await redis.hget(TenantKeys(tenant).audit_head(), "legacy_moved") == BORN_MARK


LEGACY_MAP_FIELD = ("audit-of-an-account-erased-long-ago", "sealed-by-an-older-build")
"""A field of the legacy ``events:acct`` map an older build of main left (its account since erased)."""


async def made_with_legacy_data(redis: RedisClient, tenant: str) -> None:
    """Creates ``tenant``'s first client as a server beside an older release does, and an older build's map.

    The log's head is unmarked (the process saw an older server report in, or is 0.1.0 itself),
    so the tenant's steps read the map until ``migrate legacy`` walks it.
    """
    clients = RedisClientStore(redis, Scripts(redis))
    request = '{"principal":"bootstrap","request_id":"first","trace_id":""}'
    created, _ = await clients.create(NewClient(tenant, "first", Role.ADMIN, "first", "mac", request))
    assert created is ClientCreation.CREATED, created
    keys = TenantKeys(tenant)
    assert await redis.hget(keys.audit_head(), "legacy_moved") is None
    await redis.hset(keys.events_accounts(), *LEGACY_MAP_FIELD)
