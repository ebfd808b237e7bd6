"""The read ledger on a real Redis: hourly estimates, minute summaries, and who may close them.

Minutes are closed "later" by setting the deployment's clock floor ahead, as a process that saw
a later store time would leave it (``store/clock.py``): scripts then judge by that time.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from idverify.audit.events import EventType, parse_entry
from idverify.domain.errors import InvalidArgument
from idverify.flows.read_accounting import (
    ALL_CATEGORIES,
    HOUR_MS,
    MINUTE_MS,
    Category,
    MinuteClose,
    Reader,
    ReadLedger,
    accounts_digest,
    hour_of,
)
from idverify.privacy.keyring import Keyring
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.read_keys import ReadKeys
from idverify.store.read_records import RedisReadRecords
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess

KEYRING = Keyring.generate()
RETENTION_DAYS = 7
_tenants = itertools.count(1)
LEAKED = Reader("c0ffee", "t/platform/c0ffee", "GetAccount")
OTHER = Reader("beef00", "t/platform/beef00", "GetAccount")


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url)
    await client.delete(GlobalKeys.CLOCK_FLOOR)
    yield client
    await client.delete(GlobalKeys.CLOCK_FLOOR)
    await client.aclose(close_connection_pool=True)


@pytest.fixture
def tenant() -> str:
    return f"reads-{next(_tenants)}"


def records(redis: RedisClient) -> RedisReadRecords:
    return RedisReadRecords(redis, Scripts(redis))


async def ledger(redis: RedisClient) -> ReadLedger:
    return ReadLedger(records(redis), KEYRING, RETENTION_DAYS)


async def bind(redis: RedisClient, tenant: str, account_id: str, identity_ref: str | None) -> str:
    """An account record, bound to ``identity_ref`` when one is given; its pseudonym."""
    pseudonym = KEYRING.pseudonym(tenant, "account", account_id)
    fields = {"identity": identity_ref} if identity_ref else {"superseded_ms": "1"}
    await redis.hset(TenantKeys(tenant).account(pseudonym), mapping=fields)
    return pseudonym


async def store_hour(redis: RedisClient) -> int:
    seconds, micros = await redis.time()
    return hour_of(seconds * 1000 + micros // 1000)


async def later_ledger(redis: RedisClient, minutes: int = 3) -> ReadLedger:
    """A ledger whose scripts run ``minutes`` ahead of Redis's clock."""
    seconds, micros = await redis.time()
    await redis.set(GlobalKeys.CLOCK_FLOOR, seconds * 1000 + micros // 1000 + minutes * MINUTE_MS)
    return await ledger(redis)


async def ledger_at(redis: RedisClient, store_ms: int, **options: float) -> ReadLedger:
    """A ledger whose scripts run at ``store_ms``, a time ahead of Redis's clock."""
    await redis.set(GlobalKeys.CLOCK_FLOOR, store_ms)
    return ReadLedger(RedisReadRecords(redis, Scripts(redis)), KEYRING, RETENTION_DAYS, **options)


async def summaries(redis: RedisClient, tenant: str) -> list[dict[str, str]]:
    """The attributes of the tenant's reads.summarized entries, with their principal."""
    found = []
    for leaf in (await redis.hgetall(TenantKeys(tenant).audit_log())).values():
        event = parse_entry(leaf)
        if event.type == EventType.READS_SUMMARIZED:
            found.append({**event.attributes, "principal": event.principal, "account": event.account})
    return found


class TestHourlyEstimates:
    async def test_accounts_and_their_identities_are_counted_per_client_and_category(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """Each account read lands in its category's HLL; a bound one's identity in the identity HLL."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a1", "ref-1")
        await bind(redis, tenant, "a2", "ref-1")  # the same person's second account
        await bind(redis, tenant, "a3", None)  # unbound: an account, no person

        counted = await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a1", "a2", "a3"])

        hour, keys = await store_hour(redis), ReadKeys(tenant)
        assert counted == 3
        assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, Category.VERIFICATION)) == 3
        assert await redis.pfcount(keys.identities(hour, LEAKED.client_id, Category.VERIFICATION)) == 1
        assert await redis.smembers(keys.who(hour)) == {LEAKED.client_id.encode()}
        assert not await redis.exists(keys.accounts(hour, LEAKED.client_id, Category.CONSENT))

    async def test_unknown_accounts_are_not_counted_unless_the_caller_saw_their_data(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """An account without a record returned nothing of anyone; ListConsents' say-so counts it."""
        reads = await ledger(redis)
        hour, keys = await store_hour(redis), ReadKeys(tenant)

        assert await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["nobody"]) == 0
        assert await reads.record(tenant, LEAKED, [Category.CONSENT], ["nobody"], only_existing=False) == 1
        assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, Category.VERIFICATION)) == 0
        assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, Category.CONSENT)) == 1

    async def test_an_export_counts_in_every_category(self, redis: RedisClient, tenant: str) -> None:
        """ExportAccountData reads every kind of data, so each category counts the account."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a1", "ref-1")

        await reads.record(tenant, LEAKED, ALL_CATEGORIES, ["a1"])

        hour, keys = await store_hour(redis), ReadKeys(tenant)
        for category in Category:
            assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, category)) == 1
            assert await redis.pfcount(keys.identities(hour, LEAKED.client_id, category)) == 1

    async def test_every_key_expires_after_the_retention_period(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """Every reads and readmin key has a TTL of the retention period (none outlives it)."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a1", "ref-1")

        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a1"])

        new_keys = [k async for k in redis.scan_iter(match=f"iv1:{{t:{tenant}}}:read*")]
        assert len(new_keys) == 6  # a, i, who; the minute's set and counts; the open minutes
        for key in new_keys:
            assert RETENTION_DAYS * 86_400 - 5 <= await redis.ttl(key) <= RETENTION_DAYS * 86_400, key

    async def test_two_principals_are_kept_apart(self, redis: RedisClient, tenant: str) -> None:
        """One client's reads never show in another's counts."""
        reads = await ledger(redis)
        for n in range(5):
            await bind(redis, tenant, f"a{n}", f"ref-{n}")

        await reads.record(tenant, LEAKED, [Category.VERIFICATION], [f"a{n}" for n in range(5)])
        await reads.record(tenant, OTHER, [Category.VERIFICATION], ["a0"])

        hour, keys = await store_hour(redis), ReadKeys(tenant)
        # A HyperLogLog counts five keyed ids as four when two share a register (about one run in
        # 1,600, the keys being new each run): an estimate, which is all the counts claim to be.
        # What this test is about is exact: the other client's single read stays one.
        assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, Category.VERIFICATION)) in {4, 5}
        assert await redis.pfcount(keys.accounts(hour, OTHER.client_id, Category.VERIFICATION)) == 1
        both = keys.accounts_over([hour], [LEAKED.client_id, OTHER.client_id], Category.VERIFICATION)
        assert await redis.pfcount(*both) == await redis.pfcount(
            keys.accounts(hour, LEAKED.client_id, Category.VERIFICATION)
        )

    async def test_a_malformed_account_id_is_refused_and_counts_nothing(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """A bad id is INVALID_ARGUMENT naming the field, before anything is written."""
        reads = await ledger(redis)

        with pytest.raises(InvalidArgument) as refused:
            await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["bad id\n"])

        assert refused.value.field == "account_id"
        assert [k async for k in redis.scan_iter(match=f"iv1:{{t:{tenant}}}:*")] == []


class TestMinuteSummaries:
    async def test_a_closed_minute_is_one_entry_with_counts_and_digest(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """Calls and reads per RPC, distinct accounts and the digest of their pseudonyms, once."""
        reads = await ledger(redis)
        pseudonyms = [await bind(redis, tenant, f"a{n}", f"ref-{n}") for n in range(3)]
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0", "a1"])
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a1", "a2"])
        ip_reader = Reader(LEAKED.client_id, LEAKED.principal, "GetIpLocations")
        await reads.record(tenant, ip_reader, [Category.IP_LOCATION], ["a2"])

        assert await reads.close_minutes(tenant) == 0  # the minute is still open
        assert await (await later_ledger(redis)).close_minutes(tenant) == 1

        [summary] = await summaries(redis, tenant)
        assert summary["principal"] == LEAKED.principal
        assert summary["client_id"] == LEAKED.client_id
        assert summary["calls"] == "3"
        assert summary["calls:GetAccount"] == "2"
        assert summary["accounts:GetAccount"] == "4"
        assert summary["calls:GetIpLocations"] == "1"
        assert summary["accounts"] == "3"
        assert summary["digest"] == accounts_digest(pseudonyms)
        assert int(summary["minute_ms"]) % MINUTE_MS == 0
        assert summary["account"] == ""  # no account is named, not even by its audit pseudonym
        assert [k async for k in redis.scan_iter(match=f"iv1:{{t:{tenant}}}:readmin:*")] == []

    @pytest.mark.parametrize(
        ("options", "delay_ms"),
        [({}, MINUTE_MS), ({"summary_delay_seconds": 1.0}, 1000)],
        ids=["default", "1s"],
    )
    async def test_a_minute_is_closed_once_the_delay_has_passed_since_its_end(
        self, redis: RedisClient, tenant: str, options: dict[str, float], delay_ms: int
    ) -> None:
        """A whole minute after the minute's end by default (clocks a little apart), else the delay set.

        Half a second before, neither the closer's range nor the step itself takes the minute.
        """
        await bind(redis, tenant, "a0", "ref-0")
        seconds, _ = await redis.time()
        minute = seconds // 60 + 5  # the clocks below run ahead of Redis's, each later than the last
        reads = await ledger_at(redis, minute * MINUTE_MS + 30_000, **options)
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0"])
        keys = TenantKeys(tenant)
        [member] = [m.decode() for m in await redis.zrange(keys.reads_open(), 0, -1)]
        closes_at = (minute + 1) * MINUTE_MS + delay_ms

        early = await ledger_at(redis, closes_at - 500, **options)
        assert await early.close_minutes(tenant) == 0
        digest = accounts_digest([reads.pseudonym(tenant, "a0")])
        step = await records(redis).close_minute(tenant, member, 1, digest, delay_ms)
        assert step is MinuteClose.OPEN
        assert await (await ledger_at(redis, closes_at, **options)).close_minutes(tenant) == 1
        assert len(await summaries(redis, tenant)) == 1

    async def test_each_principal_has_its_own_summary(self, redis: RedisClient, tenant: str) -> None:
        """Two clients reading in the same minute get one entry each, with their own counts."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a0", "ref-0")
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0"])
        await reads.record(tenant, OTHER, [Category.VERIFICATION], [])

        await (await later_ledger(redis)).close_minutes(tenant)

        found = {s["client_id"]: s for s in await summaries(redis, tenant)}
        assert set(found) == {LEAKED.client_id, OTHER.client_id}
        assert (found[LEAKED.client_id]["accounts"], found[OTHER.client_id]["accounts"]) == ("1", "0")

    async def test_closers_racing_write_one_entry(self, redis: RedisClient, tenant: str) -> None:
        """Every worker closes minutes; a minute is summarized by the first of them only."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a0", "ref-0")
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0"])
        closers = [await later_ledger(redis) for _ in range(4)]

        closed = [await closer.close_minutes(tenant) for closer in closers]

        assert sum(closed) == 1
        assert len(await summaries(redis, tenant)) == 1

    async def test_a_minute_that_changed_since_it_was_digested_is_left_for_the_next_round(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """The entry's digest covers exactly the accounts it counts, or no entry is written."""
        reads = await ledger(redis)
        await bind(redis, tenant, "a0", "ref-0")
        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0"])
        later = await later_ledger(redis)
        keys = TenantKeys(tenant)
        [member] = [m.decode() for m in await redis.zrange(keys.reads_open(), 0, -1)]

        # The step itself, given a count the set no longer has.
        answer = await records(redis).close_minute(tenant, member, 2, accounts_digest([]), 60_000)

        assert answer is MinuteClose.CHANGED
        assert await summaries(redis, tenant) == []
        assert await later.close_minutes(tenant) == 1

    async def test_the_hour_is_the_store_clocks(self, redis: RedisClient, tenant: str) -> None:
        """Reads made at a later store time land in that hour's keys."""
        await bind(redis, tenant, "a0", "ref-0")
        reads = await later_ledger(redis, minutes=120)

        await reads.record(tenant, LEAKED, [Category.VERIFICATION], ["a0"])

        hour, keys = await store_hour(redis), ReadKeys(tenant)
        assert HOUR_MS == 60 * MINUTE_MS
        assert await redis.pfcount(keys.accounts(hour + 2, LEAKED.client_id, Category.VERIFICATION)) == 1
        assert await redis.pfcount(keys.accounts(hour, LEAKED.client_id, Category.VERIFICATION)) == 0
