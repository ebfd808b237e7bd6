"""CheckIdentity's records in Redis: an account's binding, and the wrong claims of a day.

``flows.identity_check`` decides whether a claim matches; this adapter reads the account's
``identity`` and ``name_tag`` fields and its identity record's ``name_binding`` and ``pepper``,
and runs ``identity_check.lua`` (the counters per account and per caller, and the audit entry),
turning its reply into a typed refusal. On a Cluster the two counters are two steps at once
(``check_count.lua``), then the entry (``check_entry.lua``), and a refused mismatch gives the other
counter's count back (docs/ARCHITECTURE.md, "3.6 Counters in two slots").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from idverify.flows.identity_check import BoundIdentity, CheckLimited, CheckStep, CheckTally
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.counter_steps import give_back
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import ChainStep, Scripts

__all__ = ["RedisIdentityChecks"]


class RedisIdentityChecks(ScriptedStore):
    """``flows.identity_check.IdentityCheckStore`` over Redis.

    Args:
        steps: runs the counters' steps; its ``step_by_step`` (the crash tests') runs them as on a
            Cluster on one node too.
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
        self._runner = steps or StepRunner(scripts)
        self._keys = keys

    async def bound_identity(self, tenant: str, account: str) -> BoundIdentity | None:
        """The account's binding and its identity record's fields (two reads: the record's key is the ref)."""
        keys = self._keys(tenant)
        async with translate_errors():
            ref, name_tag = await self._redis.hmget(keys.account(account), ["identity", "name_tag"])
            if ref is None:
                return None
            binding, params = await self._redis.hmget(keys.identity(as_text(ref)), ["name_binding", "pepper"])
        return BoundIdentity(
            identity_ref=as_text(ref),
            name_tag=as_text(name_tag) if name_tag is not None else None,
            name_binding=as_text(binding) if binding is not None else None,
            index_params=as_text(params) if params is not None else "",
        )

    async def tally(self, tally: CheckTally, step: CheckStep) -> CheckLimited | None:
        """The check's counts: ``identity_check.lua`` on one node, each counter's step at once elsewhere.

        Replies {'OK'} or {'LIMITED', reason, ttl ms}.
        """
        if self._runner.chained:
            answer = await self._scripts.run(
                "identity_check",
                [*self._counters(tally), self._keys(tally.tenant).audit_log()],
                [
                    step.value,
                    tally.per_account,
                    tally.per_principal,
                    tally.window_ms,
                    json.dumps(dict(tally.audit)),
                ],
            )
        else:
            answer = await self._tally_in_two_slots(tally, step)
        if answer[0] == b"LIMITED":
            return CheckLimited(reached=as_text(answer[1]), retry_after_ms=int(answer[2]))
        return None

    def _counters(self, tally: CheckTally) -> list[str]:
        """The account's counter (its own slot once counters move) and the principal's (the tenant's)."""
        keys = self._keys(tally.tenant)
        return [
            keys.check_mismatches("acct", tally.account),
            keys.check_mismatches("principal", tally.principal),
        ]

    async def _tally_in_two_slots(self, tally: CheckTally, step: CheckStep) -> list[Any]:
        """Both counters' steps at once; then the entry, and a refused mismatch's other count given back.

        Answers as ``identity_check.lua`` does: the account's limit named first, the later window's
        end to wait for, one entry a check (none for an admitted one).
        """
        keys = self._keys(tally.tenant)
        counters = self._counters(tally)
        steps = [
            ChainStep("check_count", [counter], [step.value, limit, tally.window_ms, scope])
            for counter, limit, scope in zip(
                counters, (tally.per_account, tally.per_principal), _SCOPES, strict=True
            )
        ]
        counted = await self._runner.run_at_once("identity_check", steps)
        refused = [reply for reply in counted if reply[0] == b"LIMITED"]
        entry = [json.dumps(dict(tally.audit))]
        if refused:
            answer = [b"LIMITED", refused[0][1], max(int(reply[2]) for reply in refused)]
            # A counted mismatch's OK names the end of the window it counted in.
            spent = [
                (counter, int(reply[1]))
                for counter, reply in zip(counters, counted, strict=True)
                if reply[0] == b"OK" and len(reply) > 1
            ]
            entry += ["refused", as_text(answer[1])]
        else:
            answer, spent = [b"OK"], []
            entry += [step.value, ""]
        writes: list[Awaitable[Any]] = []
        if spent:
            writes.append(give_back(self._scripts, keys, spent))
        if refused or step is not CheckStep.ADMIT:
            writes.append(self._scripts.run("check_entry", [keys.audit_log()], entry))
        await asyncio.gather(*writes)
        return answer


_SCOPES = ("acct", "principal")
"""The two counters, in the order their refusals are named: the account's first, when both refuse."""
