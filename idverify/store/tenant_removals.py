"""A tenant's removal in Redis, for ``flows.tenant_removal``.

``flows.tenant_removal`` decides (what each state allows, when a removal is due, when an erasure
run stops); this adapter reads and writes the removal record (``iv1:{t:T}:audit:removal``, a hash
of its state, due time, final head and erasure cursor), the global list of removals (a sorted
set by due time), runs ``tenant_removal.lua`` and decodes its replies once, and erases the
tenant's keys a SCAN page at a time: every key of its slot but the audit log's and, named by a
bucketed tenant's namer, every key of its buckets (``scan.tenant_pages``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from idverify.audit.checkpoint import SignedHead, parse_checkpoint
from idverify.flows.tenant_removal import (
    ERASING,
    REMOVED,
    ErasedPage,
    ErasePosition,
    Removal,
    StepOutcome,
    StepReply,
)
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import PREFIX, GlobalKeys, TenantKeys
from idverify.store.scan import tenant_pages
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts
from idverify.store.topology import is_cluster

__all__ = ["RedisRemovalStore"]


class RedisRemovalStore(ScriptedStore):
    """``flows.tenant_removal.RemovalStore`` over Redis.

    Its log's entries and leaf hashes come from ``log`` when given: the server's configured log
    (``store.audit_logs.configured_audit_log``), which reads a trimmed log's bundles too. Its
    erasure walks the keys ``keys`` names: today's by default (the tenant's slot); a bucketed
    tenant's namer adds every bucket's keys (docs/ARCHITECTURE.md "Buckets: the plan", §6).
    """

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        *,
        log: LoggedEntries | None = None,
        keys: Callable[[str], TenantKeys] = TenantKeys,
    ) -> None:
        super().__init__(redis, scripts)
        self._log: LoggedEntries = log or AuditStore(redis, scripts)
        self._keys = keys

    async def known(self, tenant: str) -> bool:
        """Whether the tenant's client set or its log's head exists."""
        keys = TenantKeys(tenant)
        async with translate_errors():
            return bool(await self._redis.exists(keys.clients(), keys.audit_head()))

    async def read(self, tenant: str) -> Removal | None:
        """The record's hash as a Removal."""
        async with translate_errors():
            raw = await self._redis.hgetall(TenantKeys(tenant).removal())
        fields = {as_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}
        if not fields:
            return None
        head = None
        if "final_checkpoint" in fields:
            head = SignedHead(
                parse_checkpoint(fields["final_checkpoint"]),
                as_text(fields["final_key_id"]),
                fields["final_signature"],
            )
        return Removal(
            tenant=tenant,
            state=as_text(fields["state"]),
            due_ms=int(fields["due_ms"]),
            scheduled_by=as_text(fields.get("scheduled_by", b"")),
            erased=int(fields.get("erased", b"0")),
            final_head=head,
        )

    async def listed(self) -> list[str]:
        """The members of the removal list, by due time."""
        async with translate_errors():
            listed = await self._redis.zrange(GlobalKeys.TENANT_REMOVALS, 0, -1)
        return [as_text(tenant) for tenant in listed if isinstance(tenant, bytes | str)]

    async def enlist(self, tenant: str, due_ms: int) -> None:
        """Adds the tenant to the removal list, scored by its due time."""
        async with translate_errors():
            await self._redis.zadd(GlobalKeys.TENANT_REMOVALS, {tenant: due_ms})

    async def unlist(self, tenant: str) -> None:
        """Removes the tenant from the removal list."""
        async with translate_errors():
            await self._redis.zrem(GlobalKeys.TENANT_REMOVALS, tenant)

    async def schedule(
        self, tenant: str, request: Mapping[str, str], due_ms: int, grace_days: int
    ) -> StepReply:
        """``tenant_removal.lua`` schedule.

        Its reply: {'OK', now, revoked} | {'OPERATORS', ids joined by ','} | {'STATE', state, due}.
        """
        result = await self._run(tenant, "schedule", request, str(due_ms), str(grace_days))
        if result[0] == b"OPERATORS":
            return StepReply(StepOutcome.HOLDS_OPERATORS, operators=tuple(as_text(result[1]).split(",")))
        if result[0] == b"STATE":
            return StepReply(StepOutcome.IN_STATE, state=as_text(result[1]))
        return StepReply(StepOutcome.DONE, revoked=int(result[2]))

    async def cancel(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """``tenant_removal.lua`` cancel: {'OK'} | {'STATE', state or ''}."""
        result = await self._run(tenant, "cancel", request)
        if result[0] == b"STATE":
            return StepReply(StepOutcome.IN_STATE, state=as_text(result[1]))
        return StepReply(StepOutcome.DONE)

    async def close(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """``tenant_removal.lua`` close: {'OK', now} | {'STATE', state or ''} | {'NOT_DUE', due}."""
        result = await self._run(tenant, "close", request)
        if result[0] == b"STATE":
            return StepReply(StepOutcome.IN_STATE, state=as_text(result[1]))
        if result[0] == b"NOT_DUE":
            return StepReply(StepOutcome.NOT_DUE, due_ms=int(result[1]))
        return StepReply(StepOutcome.DONE)

    async def keep_final_head(self, tenant: str, head: SignedHead) -> None:
        """Writes the head's checkpoint, key id and signature into the record."""
        async with translate_errors():
            await self._redis.hset(
                TenantKeys(tenant).removal(),
                mapping={
                    "final_checkpoint": head.checkpoint,
                    "final_key_id": head.key_id,
                    "final_signature": head.signature,
                },
            )

    async def mark_erasing(self, tenant: str) -> None:
        """Sets the record's state to erasing."""
        async with translate_errors():
            await self._redis.hset(TenantKeys(tenant).removal(), "state", ERASING)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's entries."""
        return await self._log.entries(tenant, indices)

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's stored leaf hashes."""
        return await self._log.leaf_hashes(tenant, indices)

    async def count_remaining(self, tenant: str) -> int:
        """One SCAN over the tenant's keys, counting every key but the audit log's."""
        count = 0
        async for _, page in tenant_pages(self._redis, tenant, self._keys(tenant)):
            count += sum(not key.startswith(_kept_prefix(tenant)) for key in page)
        return count

    async def erase_position(self, tenant: str) -> ErasePosition:
        """The record's state and SCAN cursor."""
        async with translate_errors():
            state, cursor = (
                as_text(v) if v is not None else ""
                for v in await self._redis.hmget(TenantKeys(tenant).removal(), ["state", "cursor"])
            )
        return ErasePosition(state, int(cursor or 0))

    async def erase_pages(self, tenant: str, cursor: int, page_size: int) -> AsyncIterator[ErasedPage]:
        """UNLINKs each SCAN page's keys but the audit log's, then records the cursor and count."""
        record = TenantKeys(tenant).removal()
        kept = _kept_prefix(tenant)
        async for next_cursor, page in tenant_pages(
            self._redis, tenant, self._keys(tenant), cursor=cursor, count=page_size
        ):
            doomed = [key for key in page if not key.startswith(kept)]
            async with translate_errors():
                if doomed:
                    await self._redis.unlink(*doomed)
                await self._redis.hset(record, "cursor", str(next_cursor))
                await self._redis.hincrby(record, "erased", len(doomed))
            # A cursor of 0 ends a scan, except on Cluster, where it is always 0 (the next run
            # scans again from the start, and finds only what is left).
            yield ErasedPage(len(doomed), more=next_cursor != 0 or is_cluster(self._redis))

    async def forget(self, tenant: str) -> None:
        """Drops the tenant's client ids, erasure and removal listings; the record moves to removed."""
        async with translate_errors():
            owners = await self._redis.hgetall(GlobalKeys.CLIENT_TENANTS)
            ids = [client_id for client_id, owner in owners.items() if as_text(owner) == tenant]
            if ids:
                await self._redis.hdel(GlobalKeys.CLIENT_TENANTS, *ids)
            await self._redis.srem(GlobalKeys.ERASURE_TENANTS, tenant)
            await self._redis.zrem(GlobalKeys.TENANT_REMOVALS, tenant)
            await self._redis.hset(TenantKeys(tenant).removal(), mapping={"state": REMOVED, "cursor": "0"})

    async def _run(self, tenant: str, step: str, request: Mapping[str, str], *args: str) -> Any:
        keys = TenantKeys(tenant)
        return await self._scripts.run(
            "tenant_removal",
            [keys.removal(), keys.clients(), keys.audit_log()],
            [step, json.dumps(request), *args],
        )


class LoggedEntries(Protocol):
    """The reads of a log's export: ``AuditStore``, or a ``TiledAuditLog`` over it."""

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes; None where there is none."""
        ...

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' leaf hashes; None where not integrated."""
        ...


def _kept_prefix(tenant: str) -> bytes:
    """What stays: the audit log's keys (its entries, indexes, tree and this removal record).

    A bucket's stage (``iv1:{t:T:<label>}:audit:stage``) goes: the close sequenced it first.
    """
    return f"{PREFIX}:{{t:{tenant}}}:audit:".encode()
