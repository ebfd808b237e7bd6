"""An in-memory ``flows.erasure.ErasureStore``: the erasure queue and what it removes, as plain values.

It keeps what the use case can tell apart through the port: accounts and the identity each is
bound to, the identities' account sets, each tenant's queue and the audit entries written, and the
store's clock as a number the test moves. ``stale_reads`` stands for another request changing an
account between the read and the script: the next that many cancels or erasures answer "changed".
``tests/unit/usecases/test_erasure_contract.py`` holds it and ``store.erasures.RedisErasureStore``
to the same assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind, ScheduledErasure
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryAccount", "MemoryErasureStore"]


@dataclass(slots=True)
class MemoryAccount:
    """An account record: the identity it is bound to ('' when unbound) and its cancellation."""

    identity: str = ""
    due_ms: int | None = None  # set once cancelled


@dataclass(slots=True)
class _Tenant:
    accounts: dict[str, MemoryAccount] = field(default_factory=dict)
    identities: dict[str, set[str]] = field(default_factory=dict)  # ref -> bound account pseudonyms
    queue: dict[ErasureItem, int] = field(default_factory=dict)


class MemoryErasureStore:
    """The erasure queue of every tenant, in memory; ``audit`` lists ``(tenant, type, outcome)``."""

    def __init__(self, now_ms: int = 1_760_000_000_000) -> None:
        self.now = now_ms
        self.noted: set[str] = set()
        self.audit: list[tuple[str, str, str]] = []
        self.stale_reads = 0
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would
        self._tenants: dict[str, _Tenant] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def _tenant(self, tenant: str) -> _Tenant:
        self._reach()
        return self._tenants.setdefault(tenant, _Tenant())

    def bind(self, tenant: str, account_ps: str, ref: str) -> None:
        """Binds an account to an identity, as a verification's commit does."""
        held = self._tenant(tenant)
        held.accounts.setdefault(account_ps, MemoryAccount()).identity = ref
        held.identities.setdefault(ref, set()).add(account_ps)

    def holds_account(self, tenant: str, account_ps: str) -> bool:
        """Whether the account's record is stored."""
        return account_ps in self._tenant(tenant).accounts

    def holds_identity(self, tenant: str, ref: str) -> bool:
        """Whether the identity's account set is stored (it is, while an account is bound)."""
        return ref in self._tenant(tenant).identities

    def _stale(self) -> bool:
        if self.stale_reads:
            self.stale_reads -= 1
            return True
        return False

    async def now_ms(self) -> int:
        """The test's clock."""
        self._reach()
        return self.now

    async def note_tenant(self, tenant: str) -> None:
        """Names ``tenant`` among those the workers visit."""
        self._tenant(tenant)
        self.noted.add(tenant)

    async def tenants(self) -> list[str]:
        """The noted tenants, sorted."""
        self._reach()
        return sorted(self.noted)

    async def cancel(self, tenant: str, cancellation: Cancellation) -> int | None:
        """Unbinds, queues and audits as a cancellation's steps do; None while ``stale_reads`` lasts."""
        held = self._tenant(tenant)
        account = held.accounts.setdefault(cancellation.account_pseudonym, MemoryAccount())
        if account.due_ms is not None:
            return account.due_ms
        if self._stale():
            return None
        if account.identity:
            bound = held.identities.get(account.identity, set())
            bound.discard(cancellation.account_pseudonym)
            identity = ErasureItem(ErasureKind.IDENTITY, account.identity)
            if not bound:
                held.queue.setdefault(identity, cancellation.due_ms)
            account.identity = ""
        account.due_ms = cancellation.due_ms
        held.queue[ErasureItem(ErasureKind.ACCOUNT, cancellation.account_pseudonym)] = cancellation.due_ms
        self.audit.append((tenant, "account.cancelled", "cancelled"))
        return cancellation.due_ms

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[ErasureItem]:
        """Queued erasures due by ``until_ms``, soonest first, at most ``limit``."""
        return [scheduled.item for scheduled in await self.scheduled(tenant) if scheduled.due_ms <= until_ms][
            :limit
        ]

    async def erase(self, tenant: str, item: ErasureItem, request_json: str) -> EraseOutcome:
        """Erases as the store's erasure scripts do; CHANGED while ``stale_reads`` lasts for an account."""
        del request_json
        held = self._tenant(tenant)
        due = held.queue.get(item)
        if due is None or due > self.now:
            return EraseOutcome.GONE
        if item.kind is ErasureKind.ACCOUNT:
            if self._stale():
                return EraseOutcome.CHANGED
            held.accounts.pop(item.subject, None)
            self.audit.append((tenant, "account.erased", "erased"))
        elif not held.identities.get(item.subject):
            held.identities.pop(item.subject, None)
            self.audit.append((tenant, "identity.erased", "erased"))
        else:
            self.audit.append((tenant, "identity.erased", "kept"))
        del held.queue[item]
        return EraseOutcome.ERASED

    async def scheduled(self, tenant: str) -> list[ScheduledErasure]:
        """The tenant's queue, soonest first."""
        held = self._tenant(tenant)
        # A sorted set's order: by score, then by member.
        rows = sorted(
            held.queue.items(), key=lambda row: (row[1], row[0].kind is ErasureKind.IDENTITY, row[0].subject)
        )
        return [ScheduledErasure(item, due) for item, due in rows]

    async def count_due(self, tenant: str, until_ms: int) -> int:
        """How many queued erasures are due by ``until_ms``."""
        return sum(due <= until_ms for due in self._tenant(tenant).queue.values())
