"""The read ledger's records in Redis: the ``reads`` script, the open minutes, their closing.

``flows.read_accounting.ReadLedger`` decides what to record and when a minute may be closed;
this adapter runs the ``reads`` script (which records through the prelude's ``record_reads``, as
the scripts that read for themselves do: GetIpLocations records inside its own script), lists a
tenant's open minutes, reads a minute's accounts and runs ``reads_close``, in typed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from idverify.flows.read_accounting import Category, MinuteClose, Reader, read_spec
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisReadRecords"]


class RedisReadRecords(ScriptedStore):
    """``flows.read_accounting.ReadRecords`` over Redis."""

    async def record(
        self,
        tenant: str,
        reader: Reader,
        categories: Sequence[Category],
        retention_days: int,
        account_pseudonyms: Sequence[str],
        *,
        only_existing: bool,
    ) -> int:
        """Records a read of the accounts (none: a call); the number of accounts counted."""
        keys = TenantKeys(tenant)
        counted = await self._scripts.run(
            "reads",
            [keys.reads_open(), *keys.accounts(account_pseudonyms)],
            [*read_spec(reader, categories, retention_days), "1" if only_existing else "0"],
        )
        # A Redis refusing writes lets the script answer unrecorded (record_reads in the prelude).
        return int(counted)

    async def open_minutes(self, tenant: str, through_minute: int) -> list[str]:
        """The open minutes (``<minute>:<client id>``) up to ``through_minute``, oldest first."""
        async with translate_errors():
            members = cast(
                "list[bytes]",
                await self._redis.zrangebyscore(TenantKeys(tenant).reads_open(), "-inf", through_minute),
            )
        return [as_text(member) for member in members]

    async def minute_accounts(self, tenant: str, minute: str) -> frozenset[str]:
        """The account pseudonyms read in an open minute."""
        async with translate_errors():
            accounts = await self._redis.smembers(TenantKeys(tenant).reads_minute_accounts(minute))
        return frozenset(as_text(account) for account in accounts)

    async def close_minute(
        self, tenant: str, minute: str, accounts: int, digest: str, delay_ms: int
    ) -> MinuteClose:
        """Writes the minute's summary entry if it is still open, old enough and unchanged."""
        keys = TenantKeys(tenant)
        answer = await self._scripts.run(
            "reads_close",
            [
                keys.reads_open(),
                keys.reads_minute_accounts(minute),
                keys.reads_minute_counts(minute),
                keys.audit_log(),
            ],
            [minute, str(accounts), digest, str(delay_ms)],
        )
        return MinuteClose(as_text(answer))
