"""Counters in two slots, attacked (docs/ARCHITECTURE.md, "3.6 Counters in two slots").

A code send is counted in its phone window's slot and in the tenant's budgets' slot. On one node
the two steps run in one script (``send_budget.lua``); on a Cluster, or here step by step, both at
once, a refusal by one giving the other's count back (``count_give_back.lua``). Concurrent calls at
a limit never take a slot past it, a refusal costs the other slot nothing, a repeated give-back
gives nothing back twice, and a process killed between the counts and the give-back leaves one
count spent at most and lets no call past a limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from idverify.flows.identity_check import CheckStep, CheckTally
from idverify.security.code_sends import Count, SendLimits
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import RedisCodeSends
from idverify.store.connection import RedisClient
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess
from tests.counter_crash import CHECK_LIMITS, LIMITS, PRINCIPAL, check_of, killed_between, send_to
from tests.unit.usecases.contract import audit_rows

TENANT = "acme"
CALLS = 24

Sends = Callable[..., RedisCodeSends]


def chained(redis: RedisClient, limits: SendLimits = LIMITS) -> RedisCodeSends:
    return RedisCodeSends(Scripts(redis), limits)


def step_by_step(redis: RedisClient, limits: SendLimits = LIMITS) -> RedisCodeSends:
    scripts = Scripts(redis)
    return RedisCodeSends(scripts, limits, steps=StepRunner(scripts, step_by_step=True))


@pytest.fixture(params=[chained, step_by_step], ids=["chained", "step-by-step"])
def sends_of(request: pytest.FixtureRequest) -> Sends:
    return request.param  # type: ignore[no-any-return]


async def counter(redis: RedisClient, key: str) -> int:
    return int(await redis.get(key) or 0)


def principal_minute() -> str:
    return TenantKeys(TENANT).rate_limit("sends-principal-minute", PRINCIPAL)


def phone_window(phone: str) -> str:
    return TenantKeys(TENANT).rate_limit("phone", f"{TENANT}:{phone}")


async def outcomes(sends: RedisCodeSends, phones: list[str]) -> list[Count]:
    counted = await asyncio.gather(*(sends.count_send(send_to(TENANT, phone)) for phone in phones))
    return [counts.tenant.outcome for counts in counted]


async def in_turn(sends: RedisCodeSends, phones: list[str]) -> list[Count]:
    return [(await sends.count_send(send_to(TENANT, phone))).tenant.outcome for phone in phones]


async def test_concurrent_sends_to_one_phone_take_its_window_and_no_budget_past_it(
    own_client: RedisClient, sends_of: Sends
) -> None:
    # A budget that never refuses: every refusal is the phone's, and must cost the budget nothing.
    sends = sends_of(own_client, replace(LIMITS, per_principal_per_minute=1_000))
    results = await outcomes(sends, ["ph1"] * CALLS)
    assert results.count(Count.OK) == LIMITS.per_phone_per_hour
    # The phone's refusals gave their budget back: the principal spent only the sends that went.
    assert await counter(own_client, principal_minute()) == LIMITS.per_phone_per_hour


async def test_concurrent_sends_to_many_phones_take_the_budget_and_no_phone_past_it(
    own_client: RedisClient, sends_of: Sends
) -> None:
    phones = [f"ph{n}" for n in range(CALLS)]
    results = await outcomes(sends_of(own_client), phones)
    assert results.count(Count.OK) == LIMITS.per_principal_per_minute
    windows = [await counter(own_client, phone_window(phone)) for phone in phones]
    # Each refused send gave its phone's count back: only the sent ones hold a count.
    assert (
        sorted(windows)
        == [0] * (CALLS - LIMITS.per_principal_per_minute) + [1] * LIMITS.per_principal_per_minute
    )
    assert (
        await own_client.exists(*(phone_window(phone) for phone in phones)) == LIMITS.per_principal_per_minute
    )


async def test_a_refusal_by_either_slot_gives_the_others_count_back_exactly_once(
    own_client: RedisClient, sends_of: Sends
) -> None:
    sends = sends_of(own_client)
    assert await in_turn(sends, ["ph1", "ph1", "ph1"]) == [Count.OK, Count.OK, Count.LIMITED]  # the phone's
    assert await counter(own_client, principal_minute()) == 2
    assert await in_turn(sends, ["ph2", "ph2", "ph3"]) == [Count.OK, Count.OK, Count.LIMITED]  # the budget
    assert await counter(own_client, phone_window("ph3")) == 0
    assert await counter(own_client, principal_minute()) == LIMITS.per_principal_per_minute + 1
    assert await outcomes(sends, ["ph2"]) == [Count.LIMITED]  # both refuse: each counts its refusal
    assert await counter(own_client, phone_window("ph2")) == LIMITS.per_phone_per_hour + 1


async def test_a_locked_account_and_phone_spends_no_count_in_either_slot(
    own_client: RedisClient, sends_of: Sends
) -> None:
    sends = sends_of(own_client)
    await own_client.set(TenantKeys(TENANT).otp_failures("acct:ph1"), 3)  # its max wrong codes
    counted = await sends.count_send(send_to(TENANT, "ph1"))
    assert (counted.tenant.outcome, counted.tenant.failures) == (Count.LOCKED, 3)
    assert await own_client.exists(phone_window("ph1"), principal_minute()) == 0
    assert await audit_rows(own_client, TENANT) == []


async def test_a_repeated_give_back_gives_nothing_back_twice(own_client: RedisClient) -> None:
    scripts, keys = Scripts(own_client), TenantKeys(TENANT)
    await own_client.set(principal_minute(), 3, px=60_000)

    async def given_back(token: str) -> list[bytes]:
        reply: list[bytes] = await scripts.run(
            "count_give_back", [keys.given_back(token), principal_minute()], [token]
        )
        return reply

    assert await given_back("token1") == [b"OK"]
    assert await given_back("token1") == [b"DONE"]
    assert await counter(own_client, principal_minute()) == 2
    assert 0 < await own_client.pttl(keys.given_back("token1")) <= 60_000
    assert await given_back("token2") == [b"OK"]
    assert await counter(own_client, principal_minute()) == 1
    # The last count given back leaves no counter: its next count starts a window of its own.
    assert await given_back("token3") == [b"OK"]
    assert await own_client.exists(principal_minute()) == 0
    assert await given_back("token4") == [b"OK"]
    assert await own_client.exists(principal_minute()) == 0  # never below zero


async def test_a_give_back_meant_for_an_ended_window_leaves_the_next_one_alone(
    own_client: RedisClient,
) -> None:
    scripts, keys = Scripts(own_client), TenantKeys(TENANT)
    step = step_by_step(own_client)._budgets_step(send_to(TENANT, "ph1"))
    counted = await scripts.run(step.name, step.keys, step.args)
    assert counted[0] == b"OK"
    # The window ended and the next began (its end a whole window later) before the give-back.
    await own_client.set(principal_minute(), 4, px=120_000)
    give = [keys.given_back("late"), principal_minute()]
    assert await scripts.run("count_give_back", give, ["late", counted[1]]) == [b"OK"]
    assert await counter(own_client, principal_minute()) == 4
    await own_client.set(principal_minute(), 4, px=60_000)  # the window it counted in, still
    give = [keys.given_back("timely"), principal_minute()]
    assert await scripts.run("count_give_back", give, ["timely", counted[1]]) == [b"OK"]
    assert await counter(own_client, principal_minute()) == 3


async def test_a_kill_between_the_counts_and_the_give_back_spends_one_count_and_lets_nothing_past(
    own_redis: RedisProcess, own_client: RedisClient
) -> None:
    sends = step_by_step(own_client)
    assert await in_turn(sends, ["ph1", "ph1"]) == [Count.OK, Count.OK]
    killed_between(own_redis.url, "send", TENANT, "ph1")  # the phone refuses; its budget is spent
    assert await counter(own_client, principal_minute()) == 3  # one extra count, never given back
    assert await outcomes(sends, ["ph2"]) == [Count.OK]
    killed_between(own_redis.url, "send", TENANT, "ph3")  # the budget refuses; ph3's window is spent
    assert await counter(own_client, phone_window("ph3")) == 1
    assert await outcomes(sends, [f"ph{n}" for n in range(4, 4 + CALLS)]) == [Count.LIMITED] * CALLS
    assert await outcomes(sends, ["ph1"]) == [Count.LIMITED]
    assert await counter(own_client, phone_window("ph1")) <= LIMITS.per_phone_per_hour + 2


async def test_one_node_leaves_the_keys_and_entries_of_the_script_before_the_split(
    own_client: RedisClient,
) -> None:
    sends = chained(own_client)
    assert await in_turn(sends, ["ph1", "ph1", "ph1", "ph1"]) == [
        Count.OK,
        Count.OK,
        Count.LIMITED,
        Count.LIMITED,
    ]
    assert await in_turn(sends, ["ph2", "ph2", "ph3", "ph3"]) == [
        Count.OK,
        Count.OK,
        Count.LIMITED,
        Count.LIMITED,
    ]
    keys = TenantKeys(TENANT)
    stored = {
        key.decode(): await counter(own_client, key.decode())
        for key in await own_client.keys(f"{keys.rate_limit('*', '*').split(':rl:')[0]}:rl:*")
    }
    # The refused sends spent nothing outside the window that refused them, and left no marker.
    assert stored == {
        phone_window("ph1"): 4,
        phone_window("ph2"): 2,
        principal_minute(): 6,
    }
    assert await own_client.keys("*givenback*") == []
    rows = await audit_rows(own_client, TENANT)
    assert [(row["type"], row["outcome"], row["reason"], row["attributes"]) for row in rows] == [
        ("rate_limit.hit", "limited", "RATE_LIMITED", {"limit": "phone"}),
        ("rate_limit.hit", "limited", "RATE_LIMITED", {"limit": "principal_sends_minute"}),
    ]


# -- CheckIdentity's wrong claims: the account's counter and the principal's ---------------------

Checks = Callable[[RedisClient], RedisIdentityChecks]


def checks_chained(redis: RedisClient) -> RedisIdentityChecks:
    return RedisIdentityChecks(redis, Scripts(redis))


def checks_step_by_step(redis: RedisClient) -> RedisIdentityChecks:
    scripts = Scripts(redis)
    return RedisIdentityChecks(redis, scripts, steps=StepRunner(scripts, step_by_step=True))


@pytest.fixture(params=[checks_chained, checks_step_by_step], ids=["chained", "step-by-step"])
def checks_of(request: pytest.FixtureRequest) -> Checks:
    return request.param  # type: ignore[no-any-return]


def mismatches(scope: str, pseudonym: str) -> str:
    return TenantKeys(TENANT).check_mismatches(scope, pseudonym)


async def wrong_claims(checks: RedisIdentityChecks, tallies: list[CheckTally]) -> int:
    """How many of the concurrent wrong claims were counted (not refused)."""
    refused = await asyncio.gather(*(checks.tally(tally, CheckStep.MISMATCH) for tally in tallies))
    return sum(limited is None for limited in refused)


async def test_concurrent_wrong_claims_on_one_account_take_its_limit_and_no_principal_count_past_it(
    own_client: RedisClient, checks_of: Checks
) -> None:
    per_account, _ = CHECK_LIMITS
    tally = replace(check_of(TENANT, "acct1"), per_principal=1_000)
    assert await wrong_claims(checks_of(own_client), [tally] * CALLS) == per_account
    assert await counter(own_client, mismatches("acct", "acct1")) == per_account
    assert await counter(own_client, mismatches("principal", PRINCIPAL)) == per_account
    rows = await audit_rows(own_client, TENANT)
    assert sorted(row["outcome"] for row in rows) == ["mismatch"] * per_account + ["refused"] * (
        CALLS - per_account
    )


async def test_concurrent_wrong_claims_on_many_accounts_take_the_principals_limit_and_no_account_past_it(
    own_client: RedisClient, checks_of: Checks
) -> None:
    _, per_principal = CHECK_LIMITS
    accounts = [f"acct{n}" for n in range(CALLS)]
    counted = await wrong_claims(checks_of(own_client), [check_of(TENANT, account) for account in accounts])
    assert counted == per_principal
    assert await counter(own_client, mismatches("principal", PRINCIPAL)) == per_principal
    # Each refused claim gave its account's count back: only the counted ones hold one.
    assert await own_client.exists(*(mismatches("acct", account) for account in accounts)) == per_principal


async def test_a_kill_between_the_check_counts_and_the_give_back_spends_one_count_and_lets_nothing_past(
    own_redis: RedisProcess, own_client: RedisClient
) -> None:
    checks = checks_step_by_step(own_client)
    per_account, per_principal = CHECK_LIMITS
    assert await wrong_claims(checks, [check_of(TENANT, "acct1")] * per_account) == per_account
    killed_between(own_redis.url, "check", TENANT, "acct1")  # the account refuses; the principal counted
    assert await counter(own_client, mismatches("principal", PRINCIPAL)) == per_account + 1
    assert await counter(own_client, mismatches("acct", "acct1")) == per_account
    tallies = [check_of(TENANT, f"acct{n}") for n in range(2, 2 + CALLS)]
    assert await wrong_claims(checks, tallies) == per_principal - per_account - 1
    assert await counter(own_client, mismatches("principal", PRINCIPAL)) == per_principal


async def test_one_node_checks_leave_the_keys_and_entries_of_the_script_before_the_split(
    own_client: RedisClient,
) -> None:
    checks = checks_chained(own_client)
    tally = replace(check_of(TENANT, "acct1"), per_account=1)
    assert await checks.tally(tally, CheckStep.ADMIT) is None
    assert await checks.tally(tally, CheckStep.MISMATCH) is None
    assert await checks.tally(tally, CheckStep.MISMATCH) is not None
    assert await checks.tally(replace(tally, per_principal=1), CheckStep.MATCH) is not None
    assert await checks.tally(check_of(TENANT, "acct2"), CheckStep.MATCH) is None
    # The refused mismatch counted nothing: the principal holds the one counted claim, acct2 none.
    stored = {
        key.decode(): await counter(own_client, key.decode()) for key in await own_client.keys("*chkfail*")
    }
    assert stored == {mismatches("acct", "acct1"): 1, mismatches("principal", PRINCIPAL): 1}
    assert await own_client.keys("*givenback*") == []
    rows = await audit_rows(own_client, TENANT)
    assert [(row["type"], row["outcome"], row["reason"], row["account"]) for row in rows] == [
        ("identity.checked", "mismatch", "", "acct1"),
        ("identity.checked", "refused", "CHECK_LIMIT_REACHED", "acct1"),
        ("identity.checked", "refused", "CHECK_LIMIT_REACHED", "acct1"),
        ("identity.checked", "match", "", "acct2"),
    ]
