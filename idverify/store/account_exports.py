"""What an account export reads and writes in Redis: the account record, its export entry, what is held.

``flows.account_export`` decides what the bundle says; this adapter answers its questions in
typed values: the account record's fields the bundle needs, the ``account_export`` script that
appends the export's audit entry, and whether the bound identity record and any live
verification record exist (one round trip for both).
"""

from __future__ import annotations

from idverify.flows.account_export import AccountRecord, HeldRecords
from idverify.store.accounts import account_hash
from idverify.store.connection import translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisAccountExports"]


class RedisAccountExports(ScriptedStore):
    """``flows.account_export.AccountExportStore`` over Redis."""

    async def account(self, tenant: str, account_ps: str) -> AccountRecord | None:
        """The account record of pseudonym ``account_ps``, or None when there is none."""
        record = await account_hash(self._redis, tenant, account_ps)
        if record is None:
            return None
        return AccountRecord(
            audit_pseudonym=record.get("audit", ""),
            identity_ref=record.get("identity", ""),
            name_tag=bool(record.get("name_tag")),
            birth_sealed=bool(record.get("birth_sealed")),
            erasure_due=bool(record.get("erase_due_ms")),
        )

    async def append_export(
        self, tenant: str, request_fields: str, audit_pseudonym: str, start_index: int
    ) -> None:
        """Appends the ``account.exported`` entry (request fields as JSON) to the tenant's log."""
        await self._scripts.run(
            "account_export",
            [TenantKeys(tenant).audit_log()],
            [request_fields, audit_pseudonym, str(start_index)],
        )

    async def held_records(self, tenant: str, account_ps: str, identity_ref: str) -> HeldRecords:
        """Whether identity ``identity_ref`` (none when "") and a live verification of the account exist."""
        keys = TenantKeys(tenant)
        now_ms = await self._scripts.clock.now_ms()
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            if identity_ref:
                pipe.exists(keys.identity(identity_ref))
            # Ids stay listed past their records' lifetime; the live ones have records.
            pipe.zcount(keys.account_verifications(account_ps), now_ms, "+inf")
            replies = await pipe.execute()
        return HeldRecords(identity=bool(identity_ref) and bool(replies[0]), verifications=bool(replies[-1]))
