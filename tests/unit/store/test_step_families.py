"""The other step sequences name keys of one planned bucket a step too (docs/ARCHITECTURE.md, §6).

As ``test_binding_families.py`` for a binding: a cancellation (the last member's, with its
names' step), an account's and an identity's erasure, a re-indexing (and one whose last member is
cancelled meanwhile, with the names' step it leads to), and the counters in two
slots (a code send and CheckIdentity, past their limits so that a count is given back), each
run step by step on a real redis-server with every script call's keys recorded and held to one
bucketed family plus the tenant's keys (``store.key_families``).
"""

from __future__ import annotations

import pytest

from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_check import CheckStep
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import RedisCodeSends
from idverify.store.connection import RedisClient
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.key_families import Family, family_of
from tests.cancel_crash import REF, bind_accounts, cancellation, pseudonym
from tests.counter_crash import LIMITS, check_of, send_to
from tests.move_crash import bound_identity, move
from tests.unit.store.test_binding_families import Recording


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


def _stepwise(recording: Recording) -> StepRunner:
    return StepRunner(recording, step_by_step=True)


async def test_a_cancellation_then_the_erasures(redis: RedisClient) -> None:
    tenant = f"famc{pseudonym('cancel')[:8]}"
    accounts = [pseudonym(f"{tenant}-{n}") for n in range(2)]
    await bind_accounts(redis, tenant, accounts)
    recording = Recording(redis)
    store = RedisErasureStore(redis, recording, steps=_stepwise(recording))
    for n, account in enumerate(accounts):
        await store.cancel(tenant, cancellation(account, f"cancel-{n}", due_ms=1))  # due at once
    request = cancellation(accounts[0], "erase").request_json
    for account in accounts:
        assert (
            await store.erase(tenant, ErasureItem(ErasureKind.ACCOUNT, account), request)
            is EraseOutcome.ERASED
        )
    assert await store.erase(tenant, ErasureItem(ErasureKind.IDENTITY, REF), request) is EraseOutcome.ERASED
    recording.assert_one_bucket_each(
        "cancel_account", "cancel_identity", "drop_names", "intent_done", "erase_account", "erase_identity"
    )


async def test_a_reindexing(redis: RedisClient) -> None:
    tenant = f"famm{pseudonym('move')[:8]}"
    await bound_identity(redis, tenant, [pseudonym(f"{tenant}-{n}") for n in range(3)])
    recording = Recording(redis)
    assert await move(redis, tenant, _stepwise(recording)) == "OK"
    recording.assert_one_bucket_each("move_out", "move_in", "move_member", "move_settle", "move_finish")


async def test_a_reindexing_whose_last_member_is_cancelled_meanwhile(redis: RedisClient) -> None:
    """Its settling step leaves no member: the names' step follows it, in the tenant's keys alone."""
    tenant = f"famn{pseudonym('names')[:8]}"
    only = pseudonym(f"{tenant}-only")
    await bound_identity(redis, tenant, [only])
    recording = Recording(redis)

    class MovedBetween(StepRunner):
        async def _reached(self, sequence: str, done: int) -> None:
            if (sequence, done) == ("cancel", 1):
                assert await move(redis, tenant, _stepwise(recording)) == "OK"

    store = RedisErasureStore(redis, recording, steps=MovedBetween(recording, step_by_step=True))
    await store.cancel(tenant, cancellation(only, "cancel"))
    recording.assert_one_bucket_each(
        "cancel_account", "move_settle", "drop_names", "move_finish", "cancel_identity"
    )
    called = [name for name, _ in recording.calls]
    assert called.index("drop_names") == called.index("move_settle") + 1, called
    [names_keys] = [keys for name, keys in recording.calls if name == "drop_names"]
    assert {family_of(key) for key in names_keys} == {Family.TENANT}


async def test_the_counters_in_two_slots(redis: RedisClient) -> None:
    tenant = "famcounters"
    recording = Recording(redis)
    sends = RedisCodeSends(recording, LIMITS, steps=_stepwise(recording))
    for _ in range(4):  # past the phone's window of 2: the budgets' counts are given back
        await sends.count_send(send_to(tenant, "+8613800000000"))
    checks = RedisIdentityChecks(redis, recording, steps=_stepwise(recording))
    for _ in range(4):  # past the account's limit of 2: the principal's counts are given back
        await checks.tally(check_of(tenant, "acct1"), CheckStep.MISMATCH)
    recording.assert_one_bucket_each(
        "send_phone_window", "send_windows", "check_count", "check_entry", "count_give_back"
    )
