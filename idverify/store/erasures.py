"""The erasure queue and its scripts in Redis, for ``flows.erasure``.

``flows.erasure`` decides (when an account is erased, how often a changed account is retried,
what is overdue); this adapter reads and writes the records in typed values: the global set of
tenants with erasures (``iv1:{global}:erasure:tenants``), each tenant's queue (a sorted set of
``a:<account pseudonym>`` and ``i:<identity ref>`` members scored by their due time, in the
tenant's slot; a bucketed tenant has one per bucket, each member beside its subject's key, all
read at once: ``store.bucket_indexes``), a cancellation's steps (``store.cancellation_steps``),
an account's erasure's (``store.erasure_steps``) and ``erase_identity.lua``, whose replies are
decoded here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind, ScheduledErasure
from idverify.store.bucket_indexes import due_in_each
from idverify.store.bucket_steps import StepRunner
from idverify.store.cancellation_steps import BoundAccount, CancellationSteps
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.erasure_steps import ErasureSteps
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts
from idverify.store.visited_tenants import VisitedTenants

__all__ = ["RedisErasureStore"]

_MEMBER_PREFIX = {"account": "a:", "identity": "i:"}


def _member(item: ErasureItem) -> str:
    """The queue's member for ``item``: its kind's two-character prefix, then its subject."""
    return _MEMBER_PREFIX[item.kind.value] + item.subject


def _item(member: Any) -> ErasureItem:
    """The queued erasure a queue member names."""
    text = as_text(member)
    kind = ErasureKind.ACCOUNT if text.startswith(_MEMBER_PREFIX["account"]) else ErasureKind.IDENTITY
    return ErasureItem(kind, text[2:])


def _texts(values: Iterable[Any]) -> list[str]:
    """A Redis array reply as text."""
    return [as_text(value) for value in values]


class RedisErasureStore(ScriptedStore):
    """``flows.erasure.ErasureStore`` over Redis.

    Args:
        steps: the runner of a cancellation's and an account's erasure's steps (the crash tests
            pass one that runs them one by one on one node too); by default the scripts' own.
        keys: names a tenant's keys: today's by default; a bucketed tenant's has a queue per
            bucket (an account's member in its account's, an identity's in its ref's), which
            the worker reads all of.
    """

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        *,
        steps: StepRunner | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        super().__init__(redis, scripts)
        runner = steps or StepRunner(scripts)
        self._keys = keys
        self._cancellation = CancellationSteps(runner, keys=keys)
        self._erasure = ErasureSteps(runner, keys=keys)
        # Step by step an identity's erasure waits for its places being finished (intents); one
        # node writes no intents, so its erasure reads none.
        self._step_by_step = not runner.chained
        self._tenants = VisitedTenants(scripts)

    async def note_tenant(self, tenant: str) -> None:
        """Names ``tenant`` among those the workers visit."""
        await self._tenants.note(tenant)

    async def tenants(self) -> list[str]:
        """Tenants that have had erasures scheduled, sorted."""
        async with translate_errors():
            return sorted(_texts(await self._redis.smembers(GlobalKeys.ERASURE_TENANTS)))

    async def cancel(self, tenant: str, cancellation: Cancellation) -> int | None:
        """Runs a cancellation's steps over the account as read just before; None when it changed."""
        keys = self._keys(tenant)
        account_ps = cancellation.account_pseudonym
        async with translate_errors():
            ref, tag = await self._redis.hmget(keys.account(account_ps), ["identity", "name_tag"])
            live = _texts(
                await self._redis.zrangebyscore(
                    keys.account_verifications(account_ps), await self._scripts.clock.now_ms(), "+inf"
                )
            )
        read = BoundAccount(as_text(ref or b""), as_text(tag or b""), live)
        return await self._cancellation.cancel(tenant, cancellation, read)

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[ErasureItem]:
        """At most ``limit`` queued erasures due by ``until_ms``, soonest first (of every bucket's queue)."""
        due = await due_in_each(self._redis, self._queues(tenant), until_ms, limit)
        return [_item(each.member) for each in due]

    def _queues(self, tenant: str) -> list[str]:
        """The tenant's erasure queues: one per bucket, or today's one."""
        keys = self._keys(tenant)
        return [keys.erasure_due(beside=prefix) for prefix in keys.bucket_prefixes()]

    async def erase(self, tenant: str, item: ErasureItem, request_json: str) -> EraseOutcome:
        """Erases ``item`` as read just before: an account's steps, or ``erase_identity.lua``."""
        keys = self._keys(tenant)
        if item.kind is ErasureKind.IDENTITY:
            ref = item.subject
            identity = keys.identity(ref)
            intents = [keys.intents(beside=identity)] if self._step_by_step else []
            result = await self._scripts.run(
                "erase_identity",
                [
                    keys.erasure_due(beside=identity),
                    keys.audit_entries(identity),
                    identity,
                    keys.identity_accounts(ref),
                    *intents,
                ],
                [_member(item), request_json],
            )
            # {'OK'} erased or kept in use, {'GONE'} not queued or not due, or a place of it
            # still being finished.
            return EraseOutcome.ERASED if result[0] == b"OK" else EraseOutcome.GONE
        account_ps = item.subject
        # Counters under the account's pseudonyms would outlive it by up to their window (a
        # day): they go with it.
        extra = [keys.check_mismatches("acct", account_ps)]
        async with translate_errors():
            ids = _texts(await self._redis.zrange(keys.account_verifications(account_ps), 0, -1))
            for verification_id in ids:
                otp_ps = await self._redis.hget(keys.verification(verification_id), "otp_ps")
                extra.append(keys.verification(verification_id))
                if otp_ps:
                    extra.append(keys.otp_failures(as_text(otp_ps), account=account_ps))
                    extra.append(keys.rate_limit("phone_locked_audited", as_text(otp_ps), account=account_ps))
        status = await self._erasure.erase(tenant, account_ps, request_json, ids, extra)
        # GONE: not queued or not due, or its cancellation not finished yet (the next round);
        # RETRY: the account's verifications changed since they were read.
        if status == "OK":
            return EraseOutcome.ERASED
        if status == "GONE":
            return EraseOutcome.GONE
        return EraseOutcome.CHANGED

    async def scheduled(self, tenant: str) -> list[ScheduledErasure]:
        """Every queued erasure of ``tenant`` with its due time, in the queue's order (soonest first)."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues(tenant):
                pipe.zrange(queue, 0, -1, withscores=True)
            queues = cast("list[list[tuple[bytes, float]]]", await pipe.execute())
        rows = sorted((int(score), member) for queue in queues for member, score in queue)
        # A sorted set's own order, by due time then member, as today's one queue answers.
        return [ScheduledErasure(_item(member), due_ms) for due_ms, member in rows]

    async def count_due(self, tenant: str, until_ms: int) -> int:
        """How many queued erasures of ``tenant`` are due by ``until_ms``."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues(tenant):
                pipe.zcount(queue, "-inf", until_ms)
            return sum(int(count) for count in await pipe.execute())
