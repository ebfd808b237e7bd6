"""An in-memory ``flows.tenant_removal.RemovalStore``: tenants, their clients, keys and logs as plain values.

A tenant holds clients (a role and whether revoked), other keys by name, and its audit log: each
entry a JSON object beginning as the scripts' do, its leaf hash stored as it is written (the
integrator's work, done at once here). Its keys are counted and erased as Redis holds them: a
hash per client and the set of them beside the others; the erasure walks them in the order they
were added, its cursor a position in that order. The global maps (``client_tenants``, ``erasure_tenants``) and
the list of removals are plain collections, and the store's clock is a number the test moves.
:class:`MemoryLogSigner` signs heads over these logs. ``tests/unit/usecases/
test_tenant_removal_contract.py`` holds the store and ``store.tenant_removals.RedisRemovalStore``
to the same assertions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from idverify.audit.checkpoint import SignedHead, TreeHead, TreeHeadSigner, public_key_pem
from idverify.audit.merkle import leaf_hash, root
from idverify.flows.audit import origin_of
from idverify.flows.tenant_removal import (
    CLOSED,
    ERASING,
    REMOVED,
    SCHEDULED,
    ErasedPage,
    ErasePosition,
    Removal,
    StepOutcome,
    StepReply,
)
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryLogSigner", "MemoryRemovalStore"]


@dataclass(slots=True)
class _Client:
    role: str
    revoked: bool = False


@dataclass(slots=True)
class _Tenant:
    clients: dict[str, _Client] = field(default_factory=dict)
    other_keys: list[str] = field(default_factory=list)
    order: list[str | None] = field(default_factory=list)  # every key as added; None once erased
    log: list[bytes] = field(default_factory=list)
    removal: Removal | None = None
    cursor: int = 0

    def add_key(self, name: str) -> None:
        if name not in self.order:
            self.order.append(name)


class MemoryRemovalStore:
    """Removals of every tenant, in memory."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self.client_tenants: dict[str, str] = {}
        self.erasure_tenants: set[str] = set()
        self.removals_listed: dict[str, int] = {}
        self._tenants: dict[str, _Tenant] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def _tenant(self, tenant: str) -> _Tenant:
        self._reach()
        return self._tenants.setdefault(tenant, _Tenant())

    def add_client(self, tenant: str, client_id: str, role: str, *, revoked: bool = False) -> None:
        """A client of the tenant, as ``ClientRegistry.create`` writes it."""
        held = self._tenant(tenant)
        held.clients[client_id] = _Client(role, revoked)
        held.add_key(f"client:{client_id}")
        held.add_key("clients")
        self.client_tenants[client_id] = tenant

    def add_keys(self, tenant: str, *names: str) -> None:
        """Other keys of the tenant (accounts, verifications...)."""
        held = self._tenant(tenant)
        for name in names:
            held.add_key(name)

    def live_clients(self, tenant: str) -> list[str]:
        """The tenant's clients not revoked (none once erased)."""
        held = self._tenant(tenant)
        return sorted(cid for cid, client in held.clients.items() if not client.revoked)

    def audit(self, tenant: str, request: Mapping[str, str], **fields: str) -> None:
        """Appends an entry, as the scripts' ``audit()`` does."""
        log = self._tenant(tenant).log
        rest = json.dumps({"time_ms": self.now, **request, **fields}, sort_keys=True, separators=(",", ":"))
        # As the prelude writes it: the version and sequence number first, then the rest.
        log.append(b'{"v":1,"seq":%d,' % len(log) + rest[1:].encode())

    def leaves(self, tenant: str) -> list[bytes]:
        """The tenant's log's leaf hashes."""
        return [leaf_hash(entry) for entry in self._tenant(tenant).log]

    async def now_ms(self) -> int:
        """The test's clock."""
        self._reach()
        return self.now

    async def known(self, tenant: str) -> bool:
        """Whether the tenant has a client or a log entry."""
        held = self._tenant(tenant)
        return bool(held.clients or held.log)

    async def read(self, tenant: str) -> Removal | None:
        """The tenant's record."""
        return self._tenant(tenant).removal

    async def listed(self) -> list[str]:
        """The list of removals, by due time."""
        self._reach()
        return sorted(self.removals_listed, key=lambda t: (self.removals_listed[t], t))

    async def enlist(self, tenant: str, due_ms: int) -> None:
        """Lists the tenant."""
        self._reach()
        self.removals_listed[tenant] = due_ms

    async def unlist(self, tenant: str) -> None:
        """Takes the tenant off the list."""
        self._reach()
        self.removals_listed.pop(tenant, None)

    async def schedule(
        self, tenant: str, request: Mapping[str, str], due_ms: int, grace_days: int
    ) -> StepReply:
        """Schedules as ``tenant_removal.lua`` does."""
        held = self._tenant(tenant)
        if held.removal is not None:
            return StepReply(StepOutcome.IN_STATE, state=held.removal.state)
        operators = tuple(
            cid
            for cid, client in sorted(held.clients.items())
            if client.role == "operator" and not client.revoked
        )
        if operators:
            return StepReply(StepOutcome.HOLDS_OPERATORS, operators=operators)
        held.removal = Removal(tenant, SCHEDULED, due_ms, request.get("principal", ""), 0, None)
        revoked = 0
        for client_id, client in sorted(held.clients.items()):
            if not client.revoked:
                client.revoked = True
                revoked += 1
                self.audit(tenant, request, type="client.revoked", outcome="revoked", client_id=client_id)
        self.audit(
            tenant,
            request,
            type="tenant.removal_scheduled",
            outcome="scheduled",
            due_ms=str(due_ms),
            grace_days=str(grace_days),
        )
        held.add_key("audit:removal")
        return StepReply(StepOutcome.DONE, revoked=revoked)

    async def cancel(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """Cancels as ``tenant_removal.lua`` does."""
        held = self._tenant(tenant)
        state = held.removal.state if held.removal is not None else ""
        if state != SCHEDULED:
            return StepReply(StepOutcome.IN_STATE, state=state)
        held.removal = None
        self.audit(tenant, request, type="tenant.removal_cancelled", outcome="cancelled")
        return StepReply(StepOutcome.DONE)

    async def close(self, tenant: str, request: Mapping[str, str]) -> StepReply:
        """Closes as ``tenant_removal.lua`` does."""
        held = self._tenant(tenant)
        removal = held.removal
        if removal is None or removal.state != SCHEDULED:
            return StepReply(StepOutcome.IN_STATE, state=removal.state if removal is not None else "")
        if self.now < removal.due_ms:
            return StepReply(StepOutcome.NOT_DUE, due_ms=removal.due_ms)
        self.audit(tenant, request, type="tenant.removed", outcome="removed")
        held.removal = replace(removal, state=CLOSED)
        return StepReply(StepOutcome.DONE)

    def _change(self, tenant: str, **changes: object) -> None:
        held = self._tenant(tenant)
        if held.removal is not None:
            held.removal = replace(held.removal, **changes)  # type: ignore[arg-type]

    async def keep_final_head(self, tenant: str, head: SignedHead) -> None:
        """Keeps the head in the record."""
        self._change(tenant, final_head=head)

    async def mark_erasing(self, tenant: str) -> None:
        """Moves the record to erasing."""
        self._change(tenant, state=ERASING)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's entries."""
        log = self._tenant(tenant).log
        return [log[i] if i < len(log) else None for i in indices]

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's leaf hashes."""
        log = self._tenant(tenant).log
        return [leaf_hash(log[i]) if i < len(log) else None for i in indices]

    def _doomed(self, name: str | None) -> bool:
        return name is not None and not name.startswith("audit:")

    async def count_remaining(self, tenant: str) -> int:
        """The tenant's keys but its log's."""
        return sum(self._doomed(name) for name in self._tenant(tenant).order)

    async def erase_position(self, tenant: str) -> ErasePosition:
        """The record's state and cursor."""
        held = self._tenant(tenant)
        return ErasePosition(held.removal.state if held.removal is not None else "", held.cursor)

    async def erase_pages(self, tenant: str, cursor: int, page_size: int) -> AsyncIterator[ErasedPage]:
        """Erases ``page_size`` positions of the order at a time, from ``cursor``."""
        held = self._tenant(tenant)
        while True:
            end = cursor + page_size
            doomed = [i for i in range(cursor, min(end, len(held.order))) if self._doomed(held.order[i])]
            for index in doomed:
                name = held.order[index] or ""
                held.order[index] = None
                if name.startswith("client:"):
                    del held.clients[name.removeprefix("client:")]
            cursor = end if end < len(held.order) else 0
            held.cursor = cursor
            if held.removal is not None:
                held.removal = replace(held.removal, erased=held.removal.erased + len(doomed))
            yield ErasedPage(len(doomed), more=cursor != 0)
            if cursor == 0:
                return

    async def forget(self, tenant: str) -> None:
        """Drops the tenant from the global collections; the record moves to removed."""
        self._reach()
        for client_id in [cid for cid, owner in self.client_tenants.items() if owner == tenant]:
            del self.client_tenants[client_id]
        self.erasure_tenants.discard(tenant)
        self.removals_listed.pop(tenant, None)
        self._change(tenant, state=REMOVED)
        self._tenant(tenant).cursor = 0


class MemoryLogSigner:
    """``flows.tenant_log_export.LogSigner`` over a :class:`MemoryRemovalStore`'s logs."""

    def __init__(self, store: MemoryRemovalStore, signer: TreeHeadSigner) -> None:
        self._store = store
        self._signer = signer

    @property
    def public_key_pem(self) -> str:
        """The signer's public key."""
        return public_key_pem(self._signer.public_key).decode("ascii")

    async def signed_head(self, tenant: str) -> SignedHead:
        """A head over the whole log, signed now."""
        leaves = self._store.leaves(tenant)
        return self._signer.sign(TreeHead(origin_of(tenant), len(leaves), root(leaves), self._store.now))
