"""CheckIdentity's records in Redis: an account's binding, and the wrong claims of a day.

``flows.identity_check`` decides whether a claim matches; this adapter reads the account's
``identity`` and ``name_tag`` fields and its identity record's ``name_binding`` and ``pepper``,
and runs ``identity_check.lua`` (the counters per account and per caller, and the audit entry),
turning its reply into a typed refusal.
"""

from __future__ import annotations

import json

from idverify.flows.identity_check import BoundIdentity, CheckLimited, CheckStep, CheckTally
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisIdentityChecks"]


class RedisIdentityChecks(ScriptedStore):
    """``flows.identity_check.IdentityCheckStore`` over Redis."""

    async def bound_identity(self, tenant: str, account: str) -> BoundIdentity | None:
        """The account's binding and its identity record's fields (two reads: the record's key is the ref)."""
        keys = TenantKeys(tenant)
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
        """One run of ``identity_check.lua``: {'OK'} or {'LIMITED', reason, ttl ms}."""
        keys = TenantKeys(tally.tenant)
        answer = await self._scripts.run(
            "identity_check",
            [
                keys.check_mismatches("acct", tally.account),
                keys.check_mismatches("principal", tally.principal),
                keys.audit_log(),
            ],
            [
                step.value,
                tally.per_account,
                tally.per_principal,
                tally.window_ms,
                json.dumps(dict(tally.audit)),
            ],
        )
        if answer[0] == b"LIMITED":
            return CheckLimited(reached=as_text(answer[1]), retry_after_ms=int(answer[2]))
        return None
