"""The read ledger's records in Redis: the ``reads`` script, the open minutes, their closing.

``flows.read_accounting.ReadLedger`` decides what to record and when a minute may be closed;
this adapter runs the ``reads`` script (which records through the prelude's ``record_reads``, as
the scripts that read for themselves do: GetIpLocations records inside its own script; step by
step the accounts' reads, then ``reads_record``: ``store.read_steps``), lists a tenant's open
minutes, reads a minute's accounts and runs ``reads_close``, in typed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from idverify.flows.read_accounting import Category, MinuteClose, Reader, read_spec
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.read_steps import record_read
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts

__all__ = ["RedisReadRecords"]


class RedisReadRecords(ScriptedStore):
    """``flows.read_accounting.ReadRecords`` over Redis.

    Args:
        redis: the client.
        scripts: its scripts.
        steps: runs a read's accounting; step by step (a Cluster, or the tests' runner) the
            accounts are read first, then ``reads_record.lua`` is given what they hold.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts, *, steps: StepRunner | None = None) -> None:
        super().__init__(redis, scripts)
        self._runner = steps or StepRunner(scripts)

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
        spec = read_spec(reader, categories, retention_days)
        # A Redis refusing writes lets the script answer unrecorded (record_reads in the prelude).
        if self._runner.chained:
            counted = await self._scripts.run(
                "reads",
                [keys.reads_open(), *keys.accounts(account_pseudonyms)],
                [*spec, "1" if only_existing else "0"],
            )
            return int(counted)
        read_ms = await self._scripts.clock.now_ms()
        accounts, identities = await self._accounts_read(
            keys, account_pseudonyms, only_existing=only_existing
        )
        done = 2 if account_pseudonyms else 1
        return await record_read(
            self._runner,
            "reads",
            done,
            keys,
            spec,
            read_ms=read_ms,
            accounts=accounts,
            identities=identities,
            leave_out_erased=only_existing,
        )

    async def _accounts_read(
        self, keys: TenantKeys, pseudonyms: Sequence[str], *, only_existing: bool
    ) -> tuple[list[str], list[str]]:
        """The accounts to count and their identity refs, read in their buckets in one round trip."""
        if not pseudonyms:
            return [], []
        account_keys = keys.accounts(pseudonyms)
        commands: list[tuple[str, ...]] = [("HGET", key, "identity") for key in account_keys]
        if only_existing:
            commands += [("EXISTS", key) for key in account_keys]
        replies = await self._runner.run_reads("reads", commands, 1)
        count = len(pseudonyms)
        exists = replies[count:] if only_existing else [1] * count
        accounts, identities = [], []
        for pseudonym, identity, existing in zip(pseudonyms, replies[:count], exists, strict=True):
            if identity is not None or existing:
                accounts.append(pseudonym)
                identities.append(as_text(identity) if identity is not None else "")
        return accounts, identities

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
