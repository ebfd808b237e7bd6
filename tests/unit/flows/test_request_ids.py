"""A request id is its account's (docs/ARCHITECTURE.md, "Buckets: the plan", §2 "Request ids").

Its key is keyed over the account and the request id, so that it can live in the account's
bucket. A retry of the same account is answered as before (the first verification, a concurrent
duplicate waiting for it); the same request id under another account starts a second
verification and learns nothing of the first, not even by the work its call makes. Keys of the
form before (the request id's alone, which 0.1.0 wrote) are still found by the retry of their
own account, and by no other. Real Redis throughout, and a counting proxy for the work.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.verification import StartRequest, VerificationFlow
from idverify.flows.verification.plan import request_ref
from idverify.flows.verification.port import RequestRef
from idverify.privacy.keyring import Keyring
from idverify.security.rate_limits import WindowLimiter
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import Scripts
from idverify.store.verifications import redis_verification_flow
from idverify.testing import RedisProcess
from idverify.testing.flow_deps import flow_deps_for_tests
from tests.unit.flows.test_round_trips import CountingProxy

TENANT = "default"
INFO = RequestInfo(principal="request-ids")
KEYS = TenantKeys(TENANT)
_n = itertools.count(1)


@dataclass
class Rig:
    flow: VerificationFlow
    keyring: Keyring
    redis: RedisClient  # straight to Redis, for what a test sets up or looks at
    proxy: CountingProxy  # the flow talks through it


@pytest.fixture
async def rig(redis_server: RedisProcess, redis: RedisClient) -> AsyncIterator[Rig]:
    async with CountingProxy(redis_server.port) as proxy:
        keyring = Keyring.generate()
        through = connect(f"redis://127.0.0.1:{proxy.port}/0")
        scripts = Scripts(through, share_connection=True)
        deps = flow_deps_for_tests(
            load_settings(None, environ={}), keyring, WindowLimiter(RedisRateWindows(scripts))
        )
        yield Rig(redis_verification_flow(deps, through, scripts), keyring, redis, proxy)
        await scripts.aclose()
        await through.aclose(close_connection_pool=True)


def _person() -> Subject:
    n = next(_n) + 7000
    body = f"110105198905{n % 28 + 1:02d}{n % 1000:03d}"
    return Subject(
        SubjectKind.PERSON,
        f"请求{n}",
        DocumentType.CN_RIC,
        body + ric.calc_check_digit(body + "0"),
        phone_number=f"136{n:08d}",
    )


def _start(account: str, request_id: str = "") -> StartRequest:
    consents = ("identity", "phone")
    return StartRequest(
        request_id=request_id or f"req-{next(_n)}",
        account_id=account,
        method_id="sms",
        subject=_person(),
        consents=consents,
        client_ip="203.0.113.9",
        consent_text_versions={p: text_version_of(f"text of {p}") for p in consents},
    )


def _ref(rig: Rig, request: StartRequest) -> RequestRef:
    account_ps = rig.keyring.pseudonym(TENANT, "account", request.account_id)
    return request_ref(rig.keyring, TENANT, account_ps, request.request_id)


async def _as_before_the_upgrade(rig: Rig, request: StartRequest) -> None:
    """The start's request key moved to the form older releases wrote: the request id's alone."""
    ref = _ref(rig, request)
    await rig.redis.rename(KEYS.request(ref.pseudonym), KEYS.request(ref.legacy_pseudonym))


async def _trips(rig: Rig, request: StartRequest) -> tuple[str, list[list[str]]]:
    """A start's verification id and the commands of each of its round trips."""
    rig.proxy.wire.take()
    started = await rig.flow.start(TENANT, request, INFO)
    return started.verification_id, rig.proxy.wire.take()


class TestTheSameAccount:
    async def test_a_retry_gets_the_first_verification_under_the_accounts_key(self, rig: Rig) -> None:
        request = _start(f"acct-retry-{next(_n)}")
        first = await rig.flow.start(TENANT, request, INFO)
        again = await rig.flow.start(TENANT, request, INFO)
        assert again.verification_id == first.verification_id
        ref = _ref(rig, request)
        assert await rig.redis.get(KEYS.request(ref.pseudonym)) == first.verification_id.encode()
        assert await rig.redis.exists(KEYS.request(ref.legacy_pseudonym)) == 0, (
            "the old form is never written"
        )

    async def test_concurrent_duplicates_start_one_verification(self, rig: Rig) -> None:
        request = _start(f"acct-dup-{next(_n)}")
        started = await asyncio.gather(*(rig.flow.start(TENANT, request, INFO) for _ in range(4)))
        assert len({view.verification_id for view in started}) == 1


class TestAnotherAccount:
    async def test_reusing_a_request_id_starts_a_second_verification(self, rig: Rig) -> None:
        """The rule changed with §2: 0.1.0 answered the first account's verification here."""
        first_request = _start(f"acct-first-{next(_n)}")
        first = await rig.flow.start(TENANT, first_request, INFO)
        other = replace(_start(f"acct-other-{next(_n)}"), request_id=first_request.request_id)
        second = await rig.flow.start(TENANT, other, INFO)
        assert second.verification_id != first.verification_id
        assert (second.account_id, second.status) == (other.account_id, "CHALLENGE_SENT")
        # Each account's retry gets its own.
        assert (await rig.flow.start(TENANT, other, INFO)).verification_id == second.verification_id
        assert (await rig.flow.start(TENANT, first_request, INFO)).verification_id == first.verification_id

    async def test_it_learns_nothing_not_even_by_the_work_its_call_makes(self, rig: Rig) -> None:
        """Reusing another account's request id is, command for command, a start with a fresh one.

        No verification id, status or account of the first comes back, the first's record is
        untouched, and the call sends the same commands in the same round trips as a start of
        a request id nobody used (the wire's trips stand for its timing).
        """
        victim_request = _start(f"acct-victim-{next(_n)}")
        victim = await rig.flow.start(TENANT, victim_request, INFO)
        kept = await rig.redis.hgetall(KEYS.verification(victim.verification_id))
        await _trips(rig, _start(f"acct-warm-{next(_n)}"))  # connections and scripts loaded

        _, fresh = await _trips(rig, _start(f"acct-fresh-{next(_n)}"))
        thief_request = replace(_start(f"acct-thief-{next(_n)}"), request_id=victim_request.request_id)
        stolen, reused = await _trips(rig, thief_request)

        assert stolen != victim.verification_id
        assert reused == fresh
        assert await rig.redis.hgetall(KEYS.verification(victim.verification_id)) == kept


class TestAKeyOfTheFormBefore:
    """0.1.0 (and this release's builds before §2) keyed a request id alone; its records live on."""

    async def test_the_same_accounts_retry_after_the_upgrade_finds_it(self, rig: Rig) -> None:
        request = _start(f"acct-upgraded-{next(_n)}")
        first = await rig.flow.start(TENANT, request, INFO)
        await _as_before_the_upgrade(rig, request)
        again = await rig.flow.start(TENANT, request, INFO)
        assert again.verification_id == first.verification_id
        ref = _ref(rig, request)
        assert await rig.redis.exists(KEYS.request(ref.pseudonym)) == 0, "the retry started nothing"

    async def test_a_retry_waits_for_an_older_servers_attempt_still_running(self, rig: Rig) -> None:
        """Reserved under the old key, its verification not stored yet: the retry waits for it."""
        request = _start(f"acct-running-{next(_n)}")
        first = await rig.flow.start(TENANT, request, INFO)
        await _as_before_the_upgrade(rig, request)
        stored, running = KEYS.verification(first.verification_id), f"hidden-{first.verification_id}"
        await rig.redis.rename(stored, running)  # only the reservation is there yet
        retry = asyncio.create_task(rig.flow.start(TENANT, request, INFO))
        await asyncio.sleep(0.3)
        assert not retry.done()
        await rig.redis.rename(running, stored)  # the older server's attempt commits
        assert (await retry).verification_id == first.verification_id

    async def test_another_account_starts_its_own_and_gets_nothing_of_it(self, rig: Rig) -> None:
        victim_request = _start(f"acct-old-victim-{next(_n)}")
        victim = await rig.flow.start(TENANT, victim_request, INFO)
        await _as_before_the_upgrade(rig, victim_request)
        kept = await rig.redis.hgetall(KEYS.verification(victim.verification_id))
        thief_request = replace(_start(f"acct-old-thief-{next(_n)}"), request_id=victim_request.request_id)
        stolen = await rig.flow.start(TENANT, thief_request, INFO)
        assert stolen.verification_id != victim.verification_id
        assert (stolen.account_id, stolen.status) == (thief_request.account_id, "CHALLENGE_SENT")
        assert await rig.redis.hgetall(KEYS.verification(victim.verification_id)) == kept
        # The old key still answers its own account's retry.
        assert (await rig.flow.start(TENANT, victim_request, INFO)).verification_id == victim.verification_id

    async def test_a_confirmation_touches_the_old_key_where_the_accounts_is_absent(self, rig: Rig) -> None:
        """Where writes wait for replicas, the answer's confirmation must write: to the key that holds."""
        ref = _ref(rig, _start(f"acct-confirmed-{next(_n)}"))
        current, legacy = KEYS.request(ref.pseudonym), KEYS.request(ref.legacy_pseudonym)
        await rig.redis.set(legacy, "v-old", px=60_000)
        scripts = Scripts(rig.redis)
        try:
            assert 0 < await scripts.run("confirm_request", [current, legacy], []) <= 60_000
            await rig.redis.set(current, "v-new", px=90_000)
            assert 60_000 < await scripts.run("confirm_request", [current, legacy], []) <= 90_000
        finally:
            await scripts.aclose()
