"""CheckDisplayName and SetApprovedNames as a read of the account, then one step in the tenant's slot.

docs/ARCHITECTURE.md, "3.5 The reads followed by one write": step by step (the path a Cluster
takes, forced here on a real redis-server) the account is read in its bucket and the tenant-wide
step is given what was read. These tests hold the call between the two (the step runner's
``_reached``) while the account changes: its organization's last account cancelled (wholly, or
up to its names' step), another member cancelled, the account erased and bound anew to another
organization. An approval never adds names back to an organization whose last account left, and
never to one the account was not read as; a lookup never counts as the account's own a name the
index no longer holds for it. On one node each call stays one script, one round trip.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from idverify.domain.subjects import AssuranceLevel
from idverify.flows.display_names import Approval, NameHit, NameLookup, NameQuery, NamesApproval
from idverify.flows.erasure import EraseOutcome, ErasureItem, ErasureKind
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.display_names import RedisDisplayNames
from idverify.store.erasures import RedisErasureStore
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from tests.cancel_crash import NAME_HASH, TAG, bind_accounts, cancellation, pseudonym

APPROVED = "cd" * 16  # a brand's keyed hash
OTHER_TAG = "tag-other-org"
AUDIT = {"principal": "t/admin/a1", "request_id": "r1", "trace_id": "", "span": "", "account": ""}

Between = Callable[[], Awaitable[None]]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


class _HeldAfterTheRead(StepRunner):
    """Runs ``between`` once a call's account was read, before its tenant-wide step."""

    def __init__(self, scripts: Scripts, between: Between) -> None:
        super().__init__(scripts, step_by_step=True)
        self._between = between
        self.held: list[str] = []

    async def _reached(self, sequence: str, done: int) -> None:
        if done == 1:
            self.held.append(sequence)
            await self._between()


def _names(redis: RedisClient, between: Between) -> tuple[RedisDisplayNames, _HeldAfterTheRead]:
    scripts = Scripts(redis)
    runner = _HeldAfterTheRead(scripts, between)
    return RedisDisplayNames(scripts, steps=runner), runner


def _approval(tenant: str, account: str) -> NamesApproval:
    return NamesApproval(tenant, account, (APPROVED,), (), AssuranceLevel.LOW, AUDIT)


def _query(tenant: str, account: str) -> NameQuery:
    return NameQuery(tenant, account, "caller", (NAME_HASH, APPROVED), 100, 60_000)


async def _cancel(redis: RedisClient, tenant: str, account: str, *, runner: StepRunner | None = None) -> None:
    """``account``'s cancellation, step by step (its names' step when it is its identity's last)."""
    scripts = Scripts(redis)
    store = RedisErasureStore(redis, scripts, steps=runner or StepRunner(scripts, step_by_step=True))
    await store.cancel(tenant, cancellation(account, f"cancel-{account}", due_ms=1))


async def _held(redis: RedisClient, key: str) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in (await redis.hgetall(key)).items()}


async def _approval_entries(redis: RedisClient, tenant: str) -> list[tuple[str, str]]:
    raw = await redis.hgetall(TenantKeys(tenant).audit_log())
    rows = [json.loads(value) for value in raw.values()]
    return [(row["outcome"], row["reason"]) for row in rows if row["type"] == "names.approved"]


class TestAnApprovalHeldAfterItsRead:
    async def test_its_organizations_last_account_cancelled_meanwhile_is_refused(
        self, redis: RedisClient
    ) -> None:
        """The names' step dropped the verified names: NOT_ESTABLISHED, and no name added back."""
        tenant, account = "names-last", pseudonym("names-last")
        await bind_accounts(redis, tenant, [account])
        store, runner = _names(redis, lambda: _cancel(redis, tenant, account))
        assert await store.approve(_approval(tenant, account)) == (Approval.NOT_ESTABLISHED, 0)
        assert runner.held == ["approved_names"]
        keys = TenantKeys(tenant)
        assert not await redis.exists(keys.organization_own_names(TAG))
        assert await _held(redis, keys.organization_names()) == {}
        assert await _approval_entries(redis, tenant) == []

    async def test_approved_between_the_cancellations_identity_step_and_its_names_step_goes_with_them(
        self, redis: RedisClient
    ) -> None:
        """The names were still there: approved, then the names' step drops them with the verified ones."""
        tenant, account = "names-between", pseudonym("names-between")
        await bind_accounts(redis, tenant, [account])
        at_names_step, approved = asyncio.Event(), asyncio.Event()

        class PausedBeforeItsNames(StepRunner):
            async def _reached(self, sequence: str, done: int) -> None:
                if (sequence, done) == ("cancel", 2):  # the account's and the identity's steps
                    at_names_step.set()
                    await approved.wait()

        cancelling: list[asyncio.Task[None]] = []

        async def cancelled_up_to_its_names() -> None:
            runner = PausedBeforeItsNames(Scripts(redis), step_by_step=True)
            cancelling.append(asyncio.create_task(_cancel(redis, tenant, account, runner=runner)))
            await at_names_step.wait()

        store, _ = _names(redis, cancelled_up_to_its_names)
        assert await store.approve(_approval(tenant, account)) == (Approval.APPROVED, 1)
        keys = TenantKeys(tenant)
        assert await _held(redis, keys.organization_own_names(TAG)) == {NAME_HASH: "v", APPROVED: "a"}
        approved.set()
        await cancelling[0]
        assert not await redis.exists(keys.organization_own_names(TAG))
        assert await _held(redis, keys.organization_names()) == {}
        assert await _approval_entries(redis, tenant) == [("approved", "")]

    async def test_another_members_cancellation_leaves_the_organization_established(
        self, redis: RedisClient
    ) -> None:
        """The read account cancelled, another still bound: approved, as if before the cancellation."""
        tenant = "names-member"
        account, other = pseudonym("names-member-a"), pseudonym("names-member-b")
        await bind_accounts(redis, tenant, [account, other])
        store, _ = _names(redis, lambda: _cancel(redis, tenant, account))
        assert await store.approve(_approval(tenant, account)) == (Approval.APPROVED, 1)
        keys = TenantKeys(tenant)
        assert await _held(redis, keys.organization_own_names(TAG)) == {NAME_HASH: "v", APPROVED: "a"}
        assert await _held(redis, keys.organization_names()) == {NAME_HASH: TAG, APPROVED: TAG}

    async def test_an_account_bound_anew_to_another_organization_adds_nothing_to_either(
        self, redis: RedisClient
    ) -> None:
        """Cancelled, erased and bound to another identity and tag meanwhile: refused as read."""
        tenant, account = "names-rebound", pseudonym("names-rebound")
        await bind_accounts(redis, tenant, [account])
        store, _ = _names(redis, lambda: _rebound(redis, tenant, account))
        assert await store.approve(_approval(tenant, account)) == (Approval.NOT_ESTABLISHED, 0)
        keys = TenantKeys(tenant)
        assert await redis.hget(keys.account(account), "name_tag") == OTHER_TAG.encode()
        assert not await redis.exists(keys.organization_own_names(TAG))
        assert await _held(redis, keys.organization_own_names(OTHER_TAG)) == {NAME_HASH: "v"}
        assert await _held(redis, keys.organization_names()) == {NAME_HASH: OTHER_TAG}


class TestALookupHeldAfterItsRead:
    async def test_its_organizations_last_account_cancelled_meanwhile(self, redis: RedisClient) -> None:
        """Answered on the account as read, with no name of its own left: not established, no own hit."""
        tenant, account = "lookup-last", pseudonym("lookup-last")
        await bind_accounts(redis, tenant, [account])
        store, runner = _names(redis, lambda: _cancel(redis, tenant, account))
        looked = await store.look_up(_query(tenant, account))
        assert runner.held == ["display_name"]
        assert looked == NameLookup(
            bound=True, kind="organization", assurance="low", name_tag=TAG, names_indexed=False, hits=()
        )

    async def test_an_account_bound_anew_to_another_organization(self, redis: RedisClient) -> None:
        """The other organization's name is a hit, never the account's own as read."""
        tenant, account = "lookup-rebound", pseudonym("lookup-rebound")
        await bind_accounts(redis, tenant, [account])
        store, _ = _names(redis, lambda: _rebound(redis, tenant, account))
        looked = await store.look_up(_query(tenant, account))
        assert looked == NameLookup(
            bound=True,
            kind="organization",
            assurance="low",
            name_tag=TAG,
            names_indexed=False,
            hits=(NameHit(0, frozenset({OTHER_TAG}), ""),),
        )


async def _rebound(redis: RedisClient, tenant: str, account: str) -> None:
    """``account`` cancelled (its organization's last), erased, then bound to another identity and tag."""
    await _cancel(redis, tenant, account)
    scripts = Scripts(redis)
    store = RedisErasureStore(redis, scripts, steps=StepRunner(scripts, step_by_step=True))
    erased = await store.erase(
        tenant, ErasureItem(ErasureKind.ACCOUNT, account), cancellation(account, "e").request_json
    )
    assert erased is EraseOutcome.ERASED
    await bind_accounts(redis, tenant, [account], ref="ref-other", tag=OTHER_TAG, attempt="again-")


class _CountedScripts(Scripts):
    """Scripts that count the script calls sent (each one round trip)."""

    def __init__(self, redis: RedisClient) -> None:
        super().__init__(redis)
        self.sent: list[str] = []

    async def _run_script(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name != "clock":  # the clock floor's sample, not the call's
            self.sent.append(name)
        return await super()._run_script(name, *args, **kwargs)


async def test_on_one_node_each_call_is_one_script(redis: RedisClient) -> None:
    """Chained (one node), the lookup and the approval are today's scripts, one round trip each."""
    tenant, account = "names-one-node", pseudonym("names-one-node")
    await bind_accounts(redis, tenant, [account])
    scripts = _CountedScripts(redis)
    store = RedisDisplayNames(scripts)
    looked = await store.look_up(_query(tenant, account))
    assert isinstance(looked, NameLookup)
    assert looked.hits == (NameHit(0, frozenset({TAG}), "v"),)
    assert await store.approve(_approval(tenant, account)) == (Approval.APPROVED, 1)
    assert scripts.sent == ["display_name", "approved_names"]


@pytest.mark.parametrize("step_by_step", [False, True])
async def test_an_organization_holding_only_approved_names_is_not_established(
    redis: RedisClient, step_by_step: bool
) -> None:
    """The tenant's step asks for a verified name of the tag, not for its key: approved ones do not do."""
    tenant, account = f"names-only-approved-{int(step_by_step)}", pseudonym("names-only-approved")
    await bind_accounts(redis, tenant, [account])
    keys = TenantKeys(tenant)
    await redis.hset(keys.organization_own_names(TAG), NAME_HASH, "a")
    scripts = Scripts(redis)
    store = RedisDisplayNames(scripts, steps=StepRunner(scripts, step_by_step=step_by_step))
    assert await store.approve(_approval(tenant, account)) == (Approval.NOT_ESTABLISHED, 0)
    assert await _held(redis, keys.organization_own_names(TAG)) == {NAME_HASH: "a"}


async def test_an_approvals_entries_are_the_same_bytes_step_by_step(redis: RedisClient) -> None:
    """An approval's and a NAME_TAKEN refusal's entries, chained and step by step, byte for byte."""
    account = pseudonym("names-bytes")
    logs = []
    for step_by_step in (False, True):
        tenant = f"names-bytes-{int(step_by_step)}"
        await bind_accounts(redis, tenant, [account])
        keys = TenantKeys(tenant)
        await redis.hset(keys.organization_names(), "ef" * 16, "tag-another-org")
        # Every entry takes the head's last time when it is later than the clock's: the same in both.
        await redis.hset(keys.audit_head(), "last_ms", 4_000_000_000_000)
        before = await redis.hlen(keys.audit_log())
        scripts = Scripts(redis)
        store = RedisDisplayNames(scripts, steps=StepRunner(scripts, step_by_step=step_by_step))
        assert await store.approve(_approval(tenant, account)) == (Approval.APPROVED, 1)
        taken = NamesApproval(tenant, account, (APPROVED,), ("ef" * 16,), AssuranceLevel.LOW, AUDIT)
        assert await store.approve(taken) == (Approval.NAME_TAKEN, 0)
        logs.append([await redis.hget(keys.audit_log(), str(seq)) for seq in range(before, before + 2)])
    assert logs[0] == logs[1]
    assert all(entry for entry in logs[0]), logs
