"""The reads followed by one write, step by step: what a write between the two can change.

GetVerification (``get``), GetIpLocations (``ip_labels``) and a read recorded apart (``reads``)
read in the accounts' buckets, then record the read in the tenant's slot (docs/ARCHITECTURE.md,
"3.5 The reads followed by one write"). On a real redis-server, each is held between its two
steps (``StepRunner._reached``) while another writer acts: an account's erasure, step by step as
on a Cluster (its account is left out of the accounting, and nothing of it comes back), a store
clock run past the accounting's time limit (the read is refused, nothing recorded), a challenge's
time running out (the read answers what it read; the next read expires it, once). On one node each
stays one script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.flows.verification.record import Status
from idverify.store.accounts import RedisAccounts
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.read_records import RedisReadRecords
from idverify.store.read_steps import READ_LATE_MS
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from tests.bind_crash import REQUEST_JSON
from tests.cancel_crash import bind_accounts, cancellation, entries, pseudonym

WIRE = b"\x0a\x06wire"
CALLS = ("get", "reads", "ip_labels")
_RPC = {"get": "GetVerification", "reads": "GetAccount", "ip_labels": "GetIpLocations"}
_CATEGORY = {"get": Category.VERIFICATION, "reads": Category.VERIFICATION, "ip_labels": Category.IP_LOCATION}


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


class Held(StepRunner):
    """Steps run one by one, ``between`` awaited once the read's first step is done."""

    def __init__(self, scripts: Scripts, between: Callable[[], Awaitable[None]]) -> None:
        super().__init__(scripts, step_by_step=True)
        self._between = between
        self.held: list[str] = []

    async def _reached(self, sequence: str, done: int) -> None:
        if done == 1 and sequence in CALLS:
            self.held.append(sequence)
            await self._between()


class Monotonic:
    """A monotonic clock the test moves on (the store clock counts on from its samples by it)."""

    def __init__(self) -> None:
        self.seconds = 1_000.0

    def __call__(self) -> float:
        return self.seconds


async def _read(
    call: str, redis: RedisClient, scripts: Scripts, runner: StepRunner, tenant: str, account: str
) -> Any:
    """Runs ``call`` on ``account`` (its verification ``vf-<account>``): what it returned."""
    reader = Reader("c1", "t/platform/c1", _RPC[call])
    if call == "get":
        store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()), steps=runner)
        spec = read_spec(reader, (_CATEGORY[call],), 1)
        return (await store.read(tenant, f"vf-{account}", REQUEST_JSON, spec)).record.status
    if call == "reads":
        records = RedisReadRecords(redis, scripts, steps=runner)
        return await records.record(tenant, reader, (_CATEGORY[call],), 1, [account], only_existing=True)
    return await RedisAccounts(redis, scripts, 1, steps=runner).ip_labels(tenant, [account], reader)


async def _read_account(redis: RedisClient, tenant: str) -> str:
    """A bound account with an IP label and a finished verification, cancelled and due for erasure."""
    account = pseudonym(f"{tenant}-a")
    await bind_accounts(redis, tenant, [account])
    keys = TenantKeys(tenant)
    await redis.hset(keys.account(account), "ip_wire", WIRE)
    # Its binding's verification listed as the admission lists it, so that its erasure deletes it.
    await redis.zadd(keys.account_verifications(account), {f"vf-{account}": 4_000_000_000_000})
    cancelled = cancellation(account, f"cancel-{tenant}", due_ms=1)
    assert await RedisErasureStore(redis, Scripts(redis)).cancel(tenant, cancelled) == 1
    return account


async def _minute_accounts(redis: RedisClient, tenant: str) -> dict[str, set[str]]:
    """Each open minute of reads and the accounts it holds."""
    keys = TenantKeys(tenant)
    return {
        as_text(open_): {as_text(a) for a in await redis.smembers(keys.reads_minute_accounts(as_text(open_)))}
        for open_ in await redis.zrange(keys.reads_open(), 0, -1)
    }


async def _counted_reads(redis: RedisClient, tenant: str, call: str, family: str) -> int:
    """How many accounts (``a``) or identities (``i``) the call's hour counts for client c1."""
    counted = 0
    async for key in redis.scan_iter(match=f"iv1:{{t:{tenant}}}:reads:*:c1:{_CATEGORY[call]}:{family}"):
        counted += await redis.pfcount(key)
    return counted


class TestAnAccountErasedBetween:
    @pytest.mark.parametrize("call", CALLS)
    async def test_it_is_left_out_and_nothing_of_it_comes_back(self, redis: RedisClient, call: str) -> None:
        """The read answers what it read; its accounting counts the call, not the erased account.

        Its erasure ran step by step between the read and the accounting, its follow-up taking
        it out of the open minutes first: the accounting must not put it back.
        """
        tenant = f"erased-{call.replace('_', '-')}"
        account = await _read_account(redis, tenant)
        keys = TenantKeys(tenant)
        scripts = Scripts(redis)
        eraser = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))

        async def erase() -> None:
            item = ErasureItem(ErasureKind.ACCOUNT, account)
            assert await eraser.erase(tenant, item, REQUEST_JSON) is EraseOutcome.ERASED

        runner = Held(scripts, erase)
        answered = await _read(call, redis, scripts, runner, tenant, account)
        assert runner.held == [call]
        assert answered == {"get": Status.VERIFIED, "reads": 0, "ip_labels": [WIRE]}[call]
        minutes = await _minute_accounts(redis, tenant)
        assert list(minutes.values()) == [set()], minutes  # the call's minute, without the account
        [minute] = minutes
        counts = await redis.hgetall(keys.reads_minute_counts(minute))
        assert counts[f"calls:{_RPC[call]}".encode()] == b"1"
        assert counts[f"accounts:{_RPC[call]}".encode()] == b"0"
        assert await _counted_reads(redis, tenant, call, "a") == 0
        assert await _counted_reads(redis, tenant, call, "i") == 0
        assert not await redis.exists(keys.account(account), keys.verification(f"vf-{account}"))

    async def test_an_account_erased_before_the_read_is_found_by_no_step(self, redis: RedisClient) -> None:
        """Nothing to leave out: the read finds no label, and its accounting counts the call alone."""
        tenant = "erased-before"
        account = await _read_account(redis, tenant)
        scripts = Scripts(redis)
        eraser = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        item = ErasureItem(ErasureKind.ACCOUNT, account)
        assert await eraser.erase(tenant, item, REQUEST_JSON) is EraseOutcome.ERASED

        async def nothing() -> None:
            pass

        assert await _read("ip_labels", redis, scripts, Held(scripts, nothing), tenant, account) == [None]
        assert list((await _minute_accounts(redis, tenant)).values()) == [set()]

    async def test_an_account_made_again_later_is_counted_once_its_name_is_gone(
        self, redis: RedisClient
    ) -> None:
        """The erasure's name for the reads in flight has a TTL: a minute at most, not the account's fate."""
        tenant = "erased-named"
        account = await _read_account(redis, tenant)
        scripts = Scripts(redis)
        eraser = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
        assert (
            await eraser.erase(tenant, ErasureItem(ErasureKind.ACCOUNT, account), REQUEST_JSON)
            is EraseOutcome.ERASED
        )
        keys = TenantKeys(tenant)
        assert await redis.zscore(keys.reads_erased(), account) is not None
        assert 0 < await redis.pttl(keys.reads_erased()) <= 60_000
        await redis.delete(keys.reads_erased())  # the TTL ran out
        await redis.hset(keys.account(account), mapping={"identity": "ref-again", "ip_wire": WIRE})

        async def nothing() -> None:
            pass

        assert await _read("ip_labels", redis, scripts, Held(scripts, nothing), tenant, account) == [WIRE]
        assert list((await _minute_accounts(redis, tenant)).values()) == [{account}]


class TestAnAccountingTooLate:
    @pytest.mark.parametrize("call", CALLS)
    async def test_the_read_is_refused_and_nothing_recorded(self, redis: RedisClient, call: str) -> None:
        """The store clock past the read's time limit between its steps: UNAVAILABLE, no record.

        An erasure's name for the reads in flight may be gone by then, so a late accounting
        could not tell an erased account from a live one.
        """
        tenant = f"late-{call.replace('_', '-')}"
        account = await _read_account(redis, tenant)
        monotonic = Monotonic()
        scripts = Scripts(redis, monotonic=monotonic)

        async def stall() -> None:
            monotonic.seconds += READ_LATE_MS / 1000 + 1

        with pytest.raises(StoreUnavailable):
            await _read(call, redis, scripts, Held(scripts, stall), tenant, account)
        assert not await redis.exists(TenantKeys(tenant).reads_open())

    async def test_one_on_time_is_recorded(self, redis: RedisClient) -> None:
        """Just under the limit, the same stall records the read."""
        tenant = "late-not"
        account = await _read_account(redis, tenant)
        monotonic = Monotonic()
        scripts = Scripts(redis, monotonic=monotonic)

        async def stall() -> None:
            monotonic.seconds += READ_LATE_MS / 1000 - 1

        assert await _read("reads", redis, scripts, Held(scripts, stall), tenant, account) == 1


class TestAChallengeRunningOutBetween:
    async def test_the_read_answers_what_it_read_and_the_next_one_expires_it_once(
        self, redis: RedisClient
    ) -> None:
        """The accounting writes nothing of the verification: it neither expires it nor brings it back."""
        tenant = "expiring"
        account = pseudonym(f"{tenant}-a")
        await bind_accounts(redis, tenant, [account])
        keys = TenantKeys(tenant)
        live = f"vf-live-{account}"
        seconds, _ = await redis.time()
        expires_ms = int(seconds) * 1000 + 5_000
        await redis.hset(
            keys.verification(live), mapping={"challenge_expires_ms": expires_ms, "event_account": "s"}
        )
        monotonic = Monotonic()
        scripts = Scripts(redis, monotonic=monotonic)

        async def run_out() -> None:
            monotonic.seconds += 10  # past the challenge's time, well within the accounting's limit

        store = RedisVerificationStore(
            redis, scripts, CodeSendChains(scripts, send_limits()), steps=Held(scripts, run_out)
        )
        spec = read_spec(Reader("c1", "t/platform/c1", "GetVerification"), (Category.VERIFICATION,), 1)
        read = await store.read(tenant, live, REQUEST_JSON, spec)
        assert read.record.status is Status.CHALLENGE_SENT
        assert await redis.hget(keys.verification(live), "status") == b"CHALLENGE_SENT"
        assert list((await _minute_accounts(redis, tenant)).values()) == [{account}]
        assert await _counted_reads(redis, tenant, "get", "i") == 1
        for _ in range(2):
            again = await store.read(tenant, live, REQUEST_JSON, spec)
            assert again.record.status is Status.EXPIRED
        expired = [e for e in await entries(redis, tenant) if e["type"] == "verification.expired"]
        assert len(expired) == 1, expired

    async def test_a_verification_erased_between_is_not_brought_back(self, redis: RedisClient) -> None:
        """Deleted after its read (its account's erasure): the accounting does not write it again."""
        tenant = "vf-erased"
        account = await _read_account(redis, tenant)
        scripts = Scripts(redis)
        keys = TenantKeys(tenant)

        async def delete() -> None:
            await redis.delete(keys.verification(f"vf-{account}"))

        assert await _read("get", redis, scripts, Held(scripts, delete), tenant, account) is Status.VERIFIED
        assert not await redis.exists(keys.verification(f"vf-{account}"))


class TestOneNodeIsOneScript:
    @pytest.mark.parametrize("call", CALLS)
    async def test_no_boundary_and_the_script_it_had(self, redis: RedisClient, call: str) -> None:
        """Not step by step: the read and its accounting in one script of the name it had."""
        tenant = f"one-{call.replace('_', '-')}"
        account = await _read_account(redis, tenant)
        scripts = Scripts(redis)
        ran: list[str] = []
        run = scripts.run

        async def watched(name: str, keys: Any, args: Any) -> Any:
            ran.append(name)
            return await run(name, keys, args)

        scripts.run = watched  # type: ignore[method-assign]

        class Watching(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                raise AssertionError(f"a boundary on one node: {sequence} {done}")

        await _read(call, redis, scripts, Watching(scripts), tenant, account)
        assert ran == [call]
        assert list((await _minute_accounts(redis, tenant)).values()) == [{account}]
