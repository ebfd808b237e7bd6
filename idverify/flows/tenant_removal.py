"""A tenant leaves: everything it stored is erased, but its audit log, closed and exported.

Its clients are revoked at once; after a grace period the log gets its last entry and a final
signed head, is exported for the tenant, and every other key of the tenant is erased.

The steps, each safe to repeat, so that a run stopped anywhere is finished by running again:

1. ``schedule``: one step in the tenant's slot writes the removal record (state ``scheduled``,
   due time), revokes every client and audits both. A tenant that holds a live operator is
   refused: operators administer every tenant, and removing theirs would leave no one to.
2. ``cancel``: while the record is still ``scheduled``, deletes it (audited). Revoked clients
   stay revoked; the tenant's admins get new tokens from an operator.
3. ``close``: once due, appends ``tenant.removed`` (the log's last entry) and moves to
   ``closed``; the final head is signed over the whole log and kept in the record.
4. ``export``: the log up to the final head, as ``idverify audit export`` writes it, and the
   public key, into a directory the operator names; the file is verified before anything is
   erased.
5. ``erase``: SCAN pages of ``iv1:{t:T}:*`` (one hash slot, so one shard on Cluster), deleting
   every key but ``audit:*``, with the SCAN cursor kept in the record after each page; then the
   tenant's entries in the global maps, and the record moves to ``removed``.

The record stays with the log (``iv1:{t:T}:audit:removal``): the tenant's name takes no new
client again, since a new tenant of that name would append to a closed log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from idverify.audit.checkpoint import SignedHead, load_public_key, parse_checkpoint
from idverify.audit.export import VerifyReport, entry_line, head_line, verify_export
from idverify.audit.integrator import BATCH
from idverify.audit.log_store import AuditStore
from idverify.domain.errors import FailedPrecondition, NotFound
from idverify.flows.audit import AuditFlow, origin_of
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import PREFIX, GlobalKeys, TenantKeys
from idverify.store.scan import scan_pages
from idverify.store.scripts import Scripts
from idverify.store.topology import is_cluster

__all__ = ["EraseReport", "Removal", "TenantRemoval", "export_paths"]

MS_PER_DAY = 86_400_000
SCHEDULED, CLOSED, ERASING, REMOVED = "scheduled", "closed", "erasing", "removed"


@dataclass(frozen=True, slots=True)
class Removal:
    """A tenant's removal record.

    Attributes:
        tenant: whose.
        state: ``scheduled``, ``closed`` (log closed), ``erasing`` (exported) or ``removed``.
        due_ms: when the grace period ends.
        scheduled_by: the principal that scheduled it.
        erased: keys erased so far.
        final_head: the log's final signed head, once closed and signed.
    """

    tenant: str
    state: str
    due_ms: int
    scheduled_by: str
    erased: int
    final_head: SignedHead | None


@dataclass(frozen=True, slots=True)
class EraseReport:
    """What one run of the erasure did: keys erased, and whether the tenant is now removed."""

    erased: int
    finished: bool


def export_paths(directory: Path, tenant: str) -> tuple[Path, Path]:
    """Where the export of a tenant's log and the key that verifies it are written."""
    return directory / f"audit-{tenant}.jsonl", directory / "audit-public-key.pem"


class TenantRemoval:
    """Schedules, cancels and carries out the removal of tenants."""

    def __init__(self, redis: RedisClient, scripts: Scripts, audit: AuditFlow) -> None:
        self._redis = redis
        self._scripts = scripts
        self._audit = audit
        self._store = AuditStore(redis, scripts)

    async def get(self, tenant: str) -> Removal | None:
        """The tenant's removal record, or None when none is scheduled.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
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

    async def pending(self) -> list[Removal]:
        """Removals scheduled or under way, by due time.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            listed = await self._redis.zrange(GlobalKeys.tenant_removals(), 0, -1)
        tenants = [as_text(tenant) for tenant in listed if isinstance(tenant, bytes | str)]
        found = [await self.get(tenant) for tenant in tenants]
        # A tenant listed without a record: its scheduling failed or was cancelled part-way.
        return [removal for removal in found if removal is not None and removal.state != REMOVED]

    async def schedule(self, tenant: str, grace_days: int, request: dict[str, str]) -> tuple[int, int]:
        """Schedules the removal and revokes the tenant's clients; returns (due ms, clients revoked).

        Raises:
            NotFound: the tenant has no client and no audit log.
            FailedPrecondition: a removal is already recorded (``REMOVAL_SCHEDULED`` or
                ``TENANT_REMOVED``), or the tenant holds a live operator (``HOLDS_OPERATORS``).
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        async with translate_errors():
            if not await self._redis.exists(keys.clients(), keys.audit_head()):
                raise NotFound(f"tenant {tenant} has no client and no audit log", field="tenant")
        now_ms = await self._scripts.clock.now_ms()
        due_ms = now_ms + grace_days * MS_PER_DAY
        existing = await self.get(tenant)
        if existing is None:
            # Listed first, so that a crash after the tenant's step leaves it listed, never lost.
            async with translate_errors():
                await self._redis.zadd(GlobalKeys.tenant_removals(), {tenant: due_ms})
        result = await self._run(tenant, "schedule", request, str(due_ms), str(grace_days))
        if result[0] == b"OPERATORS":
            async with translate_errors():
                await self._redis.zrem(GlobalKeys.tenant_removals(), tenant)
            raise FailedPrecondition(
                f"tenant {tenant} holds operator client(s) {as_text(result[1])}: create an operator in "
                "another tenant and revoke these first",
                reason="HOLDS_OPERATORS",
                field="tenant",
            )
        if result[0] == b"STATE":
            raise _in_state(tenant, as_text(result[1]))
        return due_ms, int(result[2])

    async def cancel(self, tenant: str, request: dict[str, str]) -> None:
        """Cancels a removal whose log is not closed yet.

        Raises:
            FailedPrecondition: no removal is scheduled (``NO_REMOVAL``), or it has begun.
            StoreUnavailable: when Redis cannot be reached.
        """
        result = await self._run(tenant, "cancel", request)
        if result[0] == b"STATE":
            raise _in_state(tenant, as_text(result[1]))
        async with translate_errors():
            await self._redis.zrem(GlobalKeys.tenant_removals(), tenant)

    async def close(self, tenant: str, request: dict[str, str]) -> SignedHead:
        """Closes the log (once due) and returns its final signed head, signing it if need be.

        Raises:
            FailedPrecondition: no removal is scheduled, or its grace period has not ended
                (``REMOVAL_NOT_DUE``).
            StoreUnavailable: when Redis cannot be reached.
            LogCorrupted: when entries are missing from the store.
        """
        removal = await self.get(tenant)
        if removal is None:
            raise _in_state(tenant, "")
        if removal.final_head is not None:
            return removal.final_head
        if removal.state == SCHEDULED:
            result = await self._run(tenant, "close", request)
            if result[0] == b"NOT_DUE":
                raise FailedPrecondition(
                    f"the grace period of tenant {tenant}'s removal ends at {int(result[1])} ms",
                    reason="REMOVAL_NOT_DUE",
                    field="tenant",
                )
        head = await self._audit.signed_head(tenant)
        async with translate_errors():
            await self._redis.hset(
                TenantKeys(tenant).removal(),
                mapping={
                    "final_checkpoint": head.checkpoint,
                    "final_key_id": head.key_id,
                    "final_signature": head.signature,
                },
            )
        return head

    async def export(
        self, tenant: str, head: SignedHead, directory: Path, progress: Callable[[int], object]
    ) -> Path:
        """Writes the log up to ``head`` and the public key into ``directory``, and verifies it.

        Returns:
            The export file.

        Raises:
            FailedPrecondition: the written export does not verify (``EXPORT_DOES_NOT_VERIFY``).
            OSError: the directory or files cannot be written.
            StoreUnavailable: when Redis cannot be reached.
        """
        log_path, key_path = export_paths(directory, tenant)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        with _replacing(log_path) as out:
            out.write(head_line(head))
            for start in range(0, head.head.size, BATCH):
                indices = list(range(start, min(start + BATCH, head.head.size)))
                entries = await self._store.entries(tenant, indices)
                hashes = await self._store.leaf_hashes(tenant, indices)
                for index, entry, stored in zip(indices, entries, hashes, strict=True):
                    if entry is None or stored is None:
                        raise FailedPrecondition(
                            f"audit entry {index} of tenant {tenant} is missing from the store",
                            reason="EXPORT_DOES_NOT_VERIFY",
                        )
                    out.write(entry_line(index, entry, stored))
                progress(len(indices))
        pem = self._audit.public_key_pem.encode("ascii")
        with _replacing(key_path) as out:
            out.write(pem)
        report = await asyncio.to_thread(_verify_file, log_path, pem, origin_of(tenant))
        if not report.ok:
            raise FailedPrecondition(
                f"the export of tenant {tenant}'s log does not verify: {report.problem}",
                reason="EXPORT_DOES_NOT_VERIFY",
            )
        return log_path

    async def start_erasing(self, tenant: str) -> None:
        """Marks the log exported: from now on runs erase (and need no export directory).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            await self._redis.hset(TenantKeys(tenant).removal(), "state", ERASING)

    async def count_remaining(self, tenant: str) -> int:
        """Keys of the tenant still to erase (one SCAN over its keys).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        count = 0
        async for _, page in scan_pages(self._redis, _pattern(tenant)):
            count += sum(not key.startswith(_kept_prefix(tenant)) for key in page)
        return count

    async def erase(
        self, tenant: str, *, page_size: int, limit: int, progress: Callable[[int], object]
    ) -> EraseReport:
        """Erases the tenant's keys but its audit log, from the last checkpoint on.

        Args:
            tenant: whose keys; its removal must be ``erasing``.
            page_size: keys per SCAN page (and checkpoint).
            limit: stop after about this many keys (0: none), to resume later.
            progress: called with the keys erased by each page.

        Raises:
            FailedPrecondition: the removal is not at the erasing step.
            StoreUnavailable: when Redis cannot be reached.
        """
        record = TenantKeys(tenant).removal()
        async with translate_errors():
            state, cursor = (
                as_text(v) if v is not None else ""
                for v in await self._redis.hmget(record, ["state", "cursor"])
            )
        if state != ERASING:
            raise _in_state(tenant, state)
        erased = 0
        kept = _kept_prefix(tenant)
        async for next_cursor, page in scan_pages(
            self._redis, _pattern(tenant), cursor=int(cursor or 0), count=page_size
        ):
            doomed = [key for key in page if not key.startswith(kept)]
            async with translate_errors():
                if doomed:
                    await self._redis.unlink(*doomed)
                await self._redis.hset(record, "cursor", str(next_cursor))
                await self._redis.hincrby(record, "erased", len(doomed))
            erased += len(doomed)
            progress(len(doomed))
            # A cursor of 0 ends a scan, except on Cluster, where it is always 0 (the next run
            # scans again from the start, and finds only what is left).
            if limit and erased >= limit and (next_cursor != 0 or is_cluster(self._redis)):
                return EraseReport(erased, finished=False)
        await self._forget_globally(tenant)
        async with translate_errors():
            await self._redis.hset(record, mapping={"state": REMOVED, "cursor": "0"})
        return EraseReport(erased, finished=True)

    async def _forget_globally(self, tenant: str) -> None:
        """Drops the tenant from the global keys: its client ids, the erasure and removal lists."""
        async with translate_errors():
            owners = await self._redis.hgetall(GlobalKeys.client_tenants())
            ids = [client_id for client_id, owner in owners.items() if as_text(owner) == tenant]
            if ids:
                await self._redis.hdel(GlobalKeys.client_tenants(), *ids)
            await self._redis.srem(GlobalKeys.erasure_tenants(), tenant)
            await self._redis.zrem(GlobalKeys.tenant_removals(), tenant)

    async def _run(self, tenant: str, step: str, request: dict[str, str], *args: str) -> list[bytes]:
        keys = TenantKeys(tenant)
        result: list[bytes] = await self._scripts.run(
            "tenant_removal",
            [keys.removal(), keys.clients(), keys.audit_log()],
            [step, json.dumps(request), *args],
        )
        return result


def _verify_file(path: Path, pem: bytes, origin: str) -> VerifyReport:
    with path.open("rb") as handle:
        return verify_export(handle, load_public_key(pem), expected_origin=origin)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file that takes ``path``'s place whole once written (a stopped run leaves no half file)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            yield out
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _pattern(tenant: str) -> str:
    return f"{PREFIX}:{{t:{tenant}}}:*"


def _kept_prefix(tenant: str) -> bytes:
    """What stays: the audit log's keys (its entries, indexes, tree and this removal record)."""
    return f"{PREFIX}:{{t:{tenant}}}:audit:".encode()


def _in_state(tenant: str, state: str) -> FailedPrecondition:
    if not state:
        return FailedPrecondition(
            f"no removal of tenant {tenant} is scheduled", reason="NO_REMOVAL", field="tenant"
        )
    if state == SCHEDULED:
        return FailedPrecondition(
            f"the removal of tenant {tenant} is already scheduled", reason="REMOVAL_SCHEDULED", field="tenant"
        )
    if state == REMOVED:
        return FailedPrecondition(f"tenant {tenant} was removed", reason="TENANT_REMOVED", field="tenant")
    return FailedPrecondition(
        f"the removal of tenant {tenant} has begun ({state}): run it to the end",
        reason="REMOVAL_UNDER_WAY",
        field="tenant",
    )
