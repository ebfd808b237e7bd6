"""A log found behind the last head it published: refused, reported exactly, until acknowledged.

A Redis restored from an older backup holds fewer entries than heads already handed out commit
to. Signing on would publish a second history beside the first (a fork that auditors holding
the old head would detect only later, if ever). So before a head is signed or handed out, the
log is compared with the head recorded outside Redis (``idverify.audit.published_heads``):

- a log with fewer entries than the head lost the entries from its size on;
- a log at least as long must extend the head: the same root at the head's size (checked with
  a consistency proof from the stored tree, or at once when Redis still holds that very head).

A server that finds either keeps answering reads, proofs and verifications, but answers head
requests FAILED_PRECONDITION (``AUDIT_LOG_ROLLED_BACK``, naming the lost range), until an
operator runs ``idverify audit acknowledge-rollback``, which records the loss in the log itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from idverify.audit.checkpoint import SignedHead, TreeHead
from idverify.audit.merkle import NodeId, ProofError, consistency_plan, verify_consistency
from idverify.audit.published_heads import PublishedHeads
from idverify.audit.tree_state import TreeState
from idverify.domain.errors import FailedPrecondition

__all__ = ["ROLLED_BACK", "GuardedLog", "LogIntegration", "Rollback", "RollbackGuard"]

ROLLED_BACK = "AUDIT_LOG_ROLLED_BACK"

log = logging.getLogger("idverify.audit")


@dataclass(frozen=True, slots=True)
class Rollback:
    """What a tenant's log lost against the head it published.

    Attributes:
        tenant: whose log.
        head: the published head.
        found_size: the log's size when the loss was found; -1 when the log does not extend
            the head at all (then which of its entries differ is unknown).
    """

    tenant: str
    head: TreeHead
    found_size: int

    @property
    def lost_range(self) -> str:
        """The entries lost, ``first-last`` inclusive (``0-<last>`` when unknown)."""
        first = max(self.found_size, 0)
        return f"{first}-{self.head.size - 1}"

    def describe(self) -> str:
        """One line for operators and callers: which head, which entries."""
        size = self.head.size
        when = datetime.fromtimestamp(self.head.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
        published = f"the head of size {size} published at {when}"
        if self.found_size < 0:
            return (
                f"the audit log of tenant {self.tenant} does not extend {published}: some of entries "
                f"{self.lost_range} differ from what was published"
            )
        lost = size - self.found_size
        return (
            f"the audit log of tenant {self.tenant} holds {self.found_size} entries, behind {published}: "
            f"entries {self.lost_range} ({lost}) are lost (restored from an older backup?)"
        )

    def error(self) -> FailedPrecondition:
        """The answer to a head request while the loss is not acknowledged."""
        error = FailedPrecondition(
            f"{self.describe()}; no head is signed until an operator runs "
            "`idverify audit acknowledge-rollback`",
            reason=ROLLED_BACK,
        )
        error.metadata.update({"lost_entries": self.lost_range, "published_size": str(self.head.size)})
        return error


class GuardedLog(Protocol):
    """The reads a guard makes of the logs (``store.audit_store.AuditStore`` is one)."""

    async def size(self, tenant: str) -> int:
        """Entries in the log."""
        ...

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree."""
        ...

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Stored node hashes."""
        ...


class LogIntegration(Protocol):
    """What brings a tree up to a size (``audit.integrator.TreeIntegrator`` is one)."""

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """The tree after folding in entries up to ``up_to`` at least."""
        ...


class RollbackGuard:
    """Compares each tenant's log with its published head, and records heads handed out."""

    def __init__(self, store: GuardedLog, integrator: LogIntegration, heads: PublishedHeads) -> None:
        self._store = store
        self._integrator = integrator
        self._heads = heads
        # Heads this process found the log to extend: checked once, not at every signature.
        self._extended: dict[str, bytes] = {}
        self._refused: set[str] = set()

    async def check(self, tenant: str, state: TreeState | None = None) -> Rollback | None:
        """The tenant's rollback, if its log is behind (or beside) its published head.

        A rollback found is recorded in the heads file (the first finding: a log that grows
        since would no longer say where the loss begins) and logged once.

        Args:
            tenant: whose log.
            state: the tree as just integrated, if the caller has it.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            HeadsFileError, OSError: when the heads file cannot be read or written.
        """
        record = self._heads.get(tenant)
        if record is None or record.found_size is None:
            self._announce_acknowledged(tenant)
        if record is None:
            return None
        head = record.signed.head
        if record.found_size is not None:
            return self._refuse(Rollback(tenant, head, record.found_size), newly=False)
        if self._extended.get(tenant) == record.signed.checkpoint:
            return None
        state = state or await self._store.tree_state(tenant)
        if state.last_head is not None and state.last_head.checkpoint == record.signed.checkpoint:
            # Redis holds this very head over its tree: the tree extends it.
            self._extended[tenant] = record.signed.checkpoint
            return None
        size = await self._store.size(tenant)
        if size < head.size:
            found = size
        elif await self._extends(tenant, head, state):
            self._extended[tenant] = record.signed.checkpoint
            return None
        else:
            found = -1
        newly = await asyncio.to_thread(self._heads.mark_rolled_back, tenant, record.signed.checkpoint, found)
        current = self._heads.get(tenant)
        if current is not None and current.found_size is not None:
            found = current.found_size  # another worker's finding came first
        return self._refuse(Rollback(tenant, head, found), newly=newly)

    async def find_all(self) -> list[Rollback]:
        """:meth:`check` of every tenant that has a published head."""
        found = [await self.check(tenant) for tenant in sorted(self._heads.read())]
        return [rollback for rollback in found if rollback is not None]

    async def require(self, tenant: str, state: TreeState) -> None:
        """Raises the tenant's rollback as a FAILED_PRECONDITION, if there is one."""
        rollback = await self.check(tenant, state)
        if rollback is not None:
            raise rollback.error()

    async def publish(self, tenant: str, signed: SignedHead) -> None:
        """Records a head before it is handed out (a head not recorded is not handed out).

        Raises:
            OSError: when the heads file cannot be written.
        """
        record = self._heads.get(tenant)
        if record is not None and record.signed.head.size >= signed.head.size:
            return
        await asyncio.to_thread(self._heads.record, tenant, signed)
        self._extended[tenant] = signed.checkpoint

    async def _extends(self, tenant: str, head: TreeHead, state: TreeState) -> bool:
        """Whether the stored tree, at least ``head.size`` entries, extends ``head``."""
        if head.size == 0:
            return True
        if state.size < head.size:
            state = await self._integrator.integrate(tenant, up_to=head.size)
        if state.size == head.size:
            return state.root == head.root_hash
        plan = consistency_plan(head.size, state.size)
        try:
            proof = plan.assemble(await self._store.read_nodes(tenant, plan.nodes))
            verify_consistency(head.size, state.size, proof, head.root_hash, state.root)
        except (ValueError, ProofError):
            return False
        return True

    def _refuse(self, rollback: Rollback, *, newly: bool) -> Rollback:
        if newly or rollback.tenant not in self._refused:
            log.error(
                "%s; heads are not signed until `idverify audit acknowledge-rollback`", rollback.describe()
            )
        self._refused.add(rollback.tenant)
        return rollback

    def _announce_acknowledged(self, tenant: str) -> None:
        if tenant in self._refused:
            self._refused.discard(tenant)
            self._extended.pop(tenant, None)
            log.warning(
                "the rollback of the audit log of tenant %s was acknowledged; heads are signed again", tenant
            )
