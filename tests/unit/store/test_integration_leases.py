"""The integration lease of a tenant's log in Redis: one token holds it, until given back or ended."""

from __future__ import annotations

import asyncio

from idverify.store.connection import RedisClient
from idverify.store.integration_leases import RedisIntegrationLeases
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts


class TestRedisIntegrationLeases:
    async def test_one_token_holds_the_lease_and_renews_it(self, redis: RedisClient) -> None:
        """The first token takes it; another is refused while it lives; the holder renews it."""
        leases = RedisIntegrationLeases(Scripts(redis))
        assert await leases.hold("lease-store", "a", 60_000)
        assert not await leases.hold("lease-store", "b", 60_000)
        assert await leases.hold("lease-store", "a", 60_000)
        assert await redis.get(TenantKeys("lease-store").audit_integration_lease()) == b"a"

    async def test_only_the_holder_gives_it_back(self, redis: RedisClient) -> None:
        """Another token's give leaves the lease held; the holder's frees it for the next."""
        leases = RedisIntegrationLeases(Scripts(redis))
        assert await leases.hold("lease-give", "a", 60_000)
        await leases.give("lease-give", "b")
        assert not await leases.hold("lease-give", "b", 60_000)
        await leases.give("lease-give", "a")
        assert await leases.hold("lease-give", "b", 60_000)

    async def test_an_ended_lease_is_taken_by_another(self, redis: RedisClient) -> None:
        """A holder that stops renewing loses the lease at its end."""
        leases = RedisIntegrationLeases(Scripts(redis))
        assert await leases.hold("lease-end", "a", 50)
        await asyncio.sleep(0.1)
        assert await leases.hold("lease-end", "b", 60_000)
        assert not await leases.hold("lease-end", "a", 60_000)
