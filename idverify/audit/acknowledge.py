"""``idverify audit acknowledge-rollback``: an operator accepts the entries a rollback lost.

Run on the server's host (it reads the data directory's heads file and the store, like
``idverify audit rotate-key``), while the server runs or not. For each tenant whose log is
behind the head it published, it first appends an ``audit.rollback_acknowledged`` entry to
that log (the published size, root and time, the lost entries, who ran it; once per lost head,
so a run that stopped part-way is simply run again), then forgets the lost head in the heads
file. Servers see the file change at their next head request, announce it in their log and sign
heads again, of the log as it is now.

The entry is appended through :class:`AcknowledgementLog` (``store.audit_rollbacks`` over Redis,
``audit_rollback.lua``); the command line builds it and the guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from idverify.audit.published_heads import PublishedHeads
from idverify.audit.rollback import Rollback, RollbackGuard
from idverify.security.break_glass import host_principal

__all__ = ["Acknowledged", "AcknowledgementEntry", "AcknowledgementLog", "acknowledge_rollbacks"]


@dataclass(frozen=True, slots=True)
class AcknowledgementEntry:
    """Where a rollback's ``audit.rollback_acknowledged`` entry is.

    Attributes:
        index: the entry's index in the tenant's log.
        written: False when an entry for the same published head was there already.
    """

    index: int
    written: bool


class AcknowledgementLog(Protocol):
    """Appends the entry that records a rollback's acknowledgement (may raise StoreUnavailable)."""

    async def append_acknowledgement(self, rollback: Rollback, principal: str) -> AcknowledgementEntry:
        """The rollback's entry, appended unless one for its published root is in the log."""
        ...


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """One tenant's acknowledged rollback.

    Attributes:
        rollback: what was lost.
        entry: the index of the ``audit.rollback_acknowledged`` entry in the tenant's log.
        written: False when an earlier run had written that entry already.
    """

    rollback: Rollback
    entry: int
    written: bool


async def acknowledge_rollbacks(
    guard: RollbackGuard, log: AcknowledgementLog, heads: PublishedHeads, tenant: str = ""
) -> list[Acknowledged]:
    """Audits and clears the rollback of every tenant (or of ``tenant``) whose log has one.

    Args:
        guard: the guard over the logs and ``heads``.
        log: where the acknowledgements are appended.
        heads: the heads file the guard reads, where each lost head is forgotten.
        tenant: only this tenant's rollback (empty: every tenant's).

    Raises:
        StoreUnavailable: when the store cannot be reached.
        HeadsFileError, OSError: when the heads file cannot be read or written.
    """
    principal = host_principal("audit-acknowledge-rollback")
    done: list[Acknowledged] = []
    for rollback in await guard.find_all():
        if tenant and rollback.tenant != tenant:
            continue
        entry = await log.append_acknowledgement(rollback, principal)
        # The entry first, then the file: a crash between them leaves the rollback standing,
        # and the next run finds its entry rather than writing another.
        record = heads.get(rollback.tenant)
        if record is not None:
            heads.acknowledge(rollback.tenant, record.signed.checkpoint)
        done.append(Acknowledged(rollback, entry.index, entry.written))
    return done
