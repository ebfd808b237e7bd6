"""Consent records in Redis, for ``flows.consent``.

``flows.consent`` decides (which purposes a start needs, what a request's consents add, the
biometric cool-down, how often a changed record is judged again); this adapter reads and writes
an account's consent record (``{t}:consent:<account pseudonym>``, a hash of ``<purpose>:g``,
``:v`` and ``:w`` fields and a revision), runs ``consent_grant.lua``, ``consent_withdraw.lua`` and
``consent_start.lua`` and decodes their replies once.

A verification's start reads the record together with its other reads and admits it in the
chain of its other scripts (``store.verifications``): :meth:`RedisConsentStore.read_commands`,
:meth:`~RedisConsentStore.record_of`, :meth:`~RedisConsentStore.start_step` and
:meth:`~RedisConsentStore.reply_of` are those pieces, so that the start keeps its round trips.
"""

from __future__ import annotations

import json
from typing import Any, cast

from idverify.domain import consent as rules
from idverify.domain.consent import ConsentState
from idverify.flows.consent import (
    AdmitOutcome,
    AdmitReply,
    ConsentAdmission,
    ConsentGrant,
    ConsentRecord,
    ConsentWithdrawal,
)
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import ChainStep, decode_flat, hash_fields

__all__ = ["RedisConsentStore"]


class RedisConsentStore(ScriptedStore):
    """``flows.consent.ConsentStore`` over Redis."""

    @staticmethod
    def read_commands(tenant: str, account_ps: str, keys: TenantKeys | None = None) -> list[list[str]]:
        """The reads of an account's consent record (:meth:`record_of` reads their replies).

        A caller with other reads in the account's tenant sends them all together: one round trip.
        ``keys``: the caller's namer of the tenant's keys (today's ``TenantKeys`` by default).
        """
        keys = keys or TenantKeys(tenant)
        return [["HGETALL", keys.consent(account_ps)], ["HEXISTS", keys.account(account_ps), "cancelled_ms"]]

    @staticmethod
    def record_of(raw: object, cancelled: object) -> ConsentRecord:
        """The replies of :meth:`read_commands`' two reads as a record."""
        fields = hash_fields(raw)
        return ConsentRecord(rules.states_from_fields(fields), fields.get("rev", ""), bool(cancelled))

    async def read(self, tenant: str, account_ps: str) -> ConsentRecord:
        """The account's consent record, and whether the account is cancelled: one round trip."""
        raw, cancelled = await self._scripts.commands(*self.read_commands(tenant, account_ps))
        return self.record_of(raw, cancelled)

    async def grant(self, tenant: str, grant: ConsentGrant) -> ConsentState | None:
        """Runs ``consent_grant.lua``; the purpose's state after it, or None: the account is cancelled."""
        keys = TenantKeys(tenant)
        result = await self._scripts.run(
            "consent_grant",
            [keys.account(grant.account_pseudonym), keys.consent(grant.account_pseudonym), keys.audit_log()],
            [
                grant.purpose,
                grant.text_version,
                grant.request_json,
                grant.audit_pseudonym,
                "1" if grant.audit else "0",
            ],
        )
        # {'CANCELLED'} | {'OK', the record's fields}
        if result[0] == b"CANCELLED":
            return None
        return rules.states_from_fields(decode_flat(result[1]))[grant.purpose]

    async def withdraw(self, tenant: str, withdrawal: ConsentWithdrawal) -> ConsentState | None:
        """Runs ``consent_withdraw.lua`` over the live verifications as read just before.

        None when they changed in between (the caller tries again).
        """
        keys = TenantKeys(tenant)
        account_ps = withdrawal.account_pseudonym
        async with translate_errors():
            replies = await self._redis.zrangebyscore(
                keys.account_verifications(account_ps), await self._scripts.clock.now_ms(), "+inf"
            )
        live = [as_text(v) for v in cast("list[bytes]", replies)]
        result = await self._scripts.run(
            "consent_withdraw",
            [
                keys.consent(account_ps),
                keys.account_verifications(account_ps),
                keys.audit_log(),
                *(keys.verification(v) for v in live),
            ],
            [withdrawal.purpose, withdrawal.request_json, withdrawal.audit_pseudonym, json.dumps(live)],
        )
        # {'OK', the record's fields, verifications ended} | {'RETRY'}
        if result[0] == b"OK":
            return rules.states_from_fields(decode_flat(result[1]))[withdrawal.purpose]
        return None

    async def keep(self, tenant: str, account_ps: str) -> None:
        """Makes the record lasting (the consents given with a start expire with it until then)."""
        async with translate_errors():
            await self._redis.persist(TenantKeys(tenant).consent(account_ps))

    @staticmethod
    def start_step(tenant: str, admission: ConsentAdmission, keys: TenantKeys | None = None) -> ChainStep:
        """``consent_start.lua`` for ``admission``, as a step a chain goes on from when it answered OK.

        ``keys``: as :meth:`read_commands`'; the entry goes beside the account (its bucket's stage,
        for a bucketed tenant's namer).
        """
        keys = keys or TenantKeys(tenant)
        account_ps = admission.account_pseudonym
        account = keys.account(account_ps)
        return ChainStep(
            "consent_start",
            [
                account,
                keys.consent(account_ps),
                keys.account_verifications(account_ps),
                keys.audit_entries(account),
            ],
            [
                admission.verification_id,
                admission.lifetime_ms,
                admission.revision,
                json.dumps(
                    [{"purpose": purpose, "version": version} for purpose, version in admission.grants]
                ),
                admission.request_json,
                admission.audit_pseudonym,
                admission.method_id,
            ],
            proceed_on=("OK",),
        )

    @staticmethod
    def reply_of(reply: Any) -> AdmitReply:
        """``consent_start.lua``'s reply: {'OK'} | {'CANCELLED'} | {'CHANGED', the record's fields}."""
        if reply[0] == b"OK":
            return AdmitReply(AdmitOutcome.ADMITTED)
        if reply[0] == b"CANCELLED":
            return AdmitReply(AdmitOutcome.CANCELLED)
        # A CHANGED reply comes from the script, which refuses a cancelled account first.
        fields = decode_flat(reply[1])
        return AdmitReply(
            AdmitOutcome.CHANGED,
            ConsentRecord(rules.states_from_fields(fields), fields.get("rev", ""), cancelled=False),
        )

    async def admit(self, tenant: str, admission: ConsentAdmission) -> AdmitReply:
        """Runs ``consent_start.lua`` alone."""
        step = self.start_step(tenant, admission)
        return self.reply_of(await self._scripts.run(step.name, step.keys, step.args))
