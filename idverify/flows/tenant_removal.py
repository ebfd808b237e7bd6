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
   tenant's audit stage streams (``iv1:{t:T:<bucket>}:audit:stage``, when it has buckets; the
   close sequenced them first), the tenant's entries in the global maps, and the record moves
   to ``removed``.

The record stays with the log (``iv1:{t:T}:audit:removal``): the tenant's name takes no new
client again, since a new tenant of that name would append to a closed log.

The flow reads and writes through :class:`RemovalStore`, the port declared here, in typed values;
``store.tenant_removals.RedisRemovalStore`` implements it (the record's fields, the removal list,
``tenant_removal.lua`` and its replies, the SCAN pages of the erasure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from idverify.audit.checkpoint import SignedHead
from idverify.audit.sequencer import StageSequencer
from idverify.domain.errors import FailedPrecondition, NotFound
from idverify.flows.tenant_log_export import LogSigner, export_log, export_paths

__all__ = [
    "CLOSED",
    "ERASING",
    "REMOVED",
    "SCHEDULED",
    "ErasePosition",
    "EraseReport",
    "ErasedPage",
    "Removal",
    "RemovalStore",
    "StepOutcome",
    "StepReply",
    "TenantRemoval",
    "export_paths",
]

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


class StepOutcome(Enum):
    """How one of the removal's audited steps (schedule, cancel, close) went."""

    DONE = "done"
    IN_STATE = "in_state"  # the record is not in the state the step starts from
    HOLDS_OPERATORS = "holds_operators"  # schedule: the tenant holds live operators
    NOT_DUE = "not_due"  # close: the grace period has not ended


@dataclass(frozen=True, slots=True)
class StepReply:
    """A step's outcome, with what the flow tells of it.

    Attributes:
        outcome: how it went.
        state: IN_STATE: the record's state ('' when there is none).
        operators: HOLDS_OPERATORS: the live operators' client ids, sorted.
        due_ms: NOT_DUE: when the grace period ends.
        revoked: a schedule DONE: clients revoked.
    """

    outcome: StepOutcome
    state: str = ""
    operators: tuple[str, ...] = ()
    due_ms: int = 0
    revoked: int = 0


@dataclass(frozen=True, slots=True)
class ErasePosition:
    """Where an erasure stands: the record's state ('' for none) and the cursor to resume from."""

    state: str
    cursor: int


@dataclass(frozen=True, slots=True)
class ErasedPage:
    """One page of the tenant's keys erased, its cursor recorded.

    Attributes:
        erased: keys erased from the page.
        more: whether keys may be left after it (a run stopped here resumes after it).
    """

    erased: int
    more: bool


class RemovalStore(Protocol):
    """Removal records, the tenant's keys and its log's entries; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def known(self, tenant: str) -> bool:
        """Whether the tenant has a client or an audit log."""
        ...

    async def read(self, tenant: str) -> Removal | None:
        """The tenant's removal record, or None."""
        ...

    async def listed(self) -> list[str]:
        """The tenants on the list of removals, by due time."""
        ...

    async def enlist(self, tenant: str, due_ms: int) -> None:
        """Puts the tenant on the list of removals."""
        ...

    async def unlist(self, tenant: str) -> None:
        """Takes the tenant off the list of removals."""
        ...

    async def schedule(
        self, tenant: str, request: Mapping[str, str], due_ms: int, grace_days: int
    ) -> StepReply:
        """Records the removal as scheduled and revokes the tenant's clients, audited; in one step.

        Refused (IN_STATE) when a record exists, or (HOLDS_OPERATORS) for live operators.
        """
        ...

    async def cancel(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """Deletes a record still scheduled, audited; IN_STATE otherwise."""
        ...

    async def close(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """Appends the log's last entry and moves a due record to closed; IN_STATE or NOT_DUE otherwise."""
        ...

    async def keep_final_head(self, tenant: str, head: SignedHead) -> None:
        """Keeps the log's final signed head in the record."""
        ...

    async def mark_erasing(self, tenant: str) -> None:
        """Moves the record to erasing."""
        ...

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's entries, as stored; None where there is none."""
        ...

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's stored leaf hashes; None where there is none."""
        ...

    async def count_remaining(self, tenant: str) -> int:
        """The tenant's keys but its audit log's (one walk over them)."""
        ...

    async def erase_position(self, tenant: str) -> ErasePosition:
        """The record's state and the cursor its erasure resumes from."""
        ...

    def erase_pages(self, tenant: str, cursor: int, page_size: int) -> AsyncIterator[ErasedPage]:
        """Erases the tenant's keys but its audit log's, a page at a time from ``cursor``.

        Each page's erasure and next cursor are recorded before the page is yielded.
        """
        ...

    async def forget(self, tenant: str) -> None:
        """Drops the tenant from the global keys and moves its record to removed."""
        ...


class TenantRemoval:
    """Schedules, cancels and carries out the removal of tenants."""

    def __init__(
        self, store: RemovalStore, audit: LogSigner, *, sequencer: StageSequencer | None = None
    ) -> None:
        self._store = store
        self._audit = audit
        # Staged entries (audit_stage_buckets) join the log before its last entry; their
        # streams, in slots of their own that the erasure's SCAN of the tenant's slot misses,
        # are deleted with the tenant's keys.
        self._sequencer = sequencer

    async def get(self, tenant: str) -> Removal | None:
        """The tenant's removal record, or None when none is scheduled.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._store.read(tenant)

    async def pending(self) -> list[Removal]:
        """Removals scheduled or under way, by due time.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        found = [await self.get(tenant) for tenant in await self._store.listed()]
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
        store = self._store
        if not await store.known(tenant):
            raise NotFound(f"tenant {tenant} has no client and no audit log", field="tenant")
        due_ms = await store.now_ms() + grace_days * MS_PER_DAY
        if await self.get(tenant) is None:
            # Listed first, so that a crash after the tenant's step leaves it listed, never lost.
            await store.enlist(tenant, due_ms)
        reply = await store.schedule(tenant, request, due_ms, grace_days)
        if reply.outcome is StepOutcome.HOLDS_OPERATORS:
            await store.unlist(tenant)
            raise FailedPrecondition(
                f"tenant {tenant} holds operator client(s) {','.join(reply.operators)}: create an "
                "operator in another tenant and revoke these first",
                reason="HOLDS_OPERATORS",
                field="tenant",
            )
        if reply.outcome is StepOutcome.IN_STATE:
            raise _in_state(tenant, reply.state)
        return due_ms, reply.revoked

    async def cancel(self, tenant: str, request: dict[str, str]) -> None:
        """Cancels a removal whose log is not closed yet.

        Raises:
            FailedPrecondition: no removal is scheduled (``NO_REMOVAL``), or it has begun.
            StoreUnavailable: when Redis cannot be reached.
        """
        reply = await self._store.cancel(tenant, request)
        if reply.outcome is StepOutcome.IN_STATE:
            raise _in_state(tenant, reply.state)
        await self._store.unlist(tenant)

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
            if self._sequencer is not None:
                await self._sequencer.sequence(tenant)
            reply = await self._store.close(tenant, request)
            if reply.outcome is StepOutcome.NOT_DUE:
                raise FailedPrecondition(
                    f"the grace period of tenant {tenant}'s removal ends at {reply.due_ms} ms",
                    reason="REMOVAL_NOT_DUE",
                    field="tenant",
                )
        head = await self._audit.signed_head(tenant)
        await self._store.keep_final_head(tenant, head)
        return head

    async def export(
        self, tenant: str, head: SignedHead, directory: Path, progress: Callable[[int], object]
    ) -> Path:
        """The leaving tenant's log up to ``head``, written and verified: see ``export_log``."""
        return await export_log(self._store, self._audit, tenant, head, directory, progress=progress)

    async def start_erasing(self, tenant: str) -> None:
        """Marks the log exported: from now on runs erase (and need no export directory).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        await self._store.mark_erasing(tenant)

    async def count_remaining(self, tenant: str) -> int:
        """Keys of the tenant still to erase (one SCAN over its keys).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._store.count_remaining(tenant)

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
        position = await self._store.erase_position(tenant)
        if position.state != ERASING:
            raise _in_state(tenant, position.state)
        erased = 0
        async for page in self._store.erase_pages(tenant, position.cursor, page_size):
            erased += page.erased
            progress(page.erased)
            if limit and erased >= limit and page.more:
                return EraseReport(erased, finished=False)
        if self._sequencer is not None:
            await self._sequencer.drop_stages(tenant)
        await self._store.forget(tenant)
        return EraseReport(erased, finished=True)


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
