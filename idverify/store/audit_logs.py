"""The tenants' audit logs in Redis, for ``flows.audit``.

``flows.audit`` decides (which tenant a caller reads, which positions exist, when a head is
signed afresh); this adapter answers its port over ``store.audit_store.AuditStore`` (the log's
hashes, its chunked tree strings and ``audit_nodes.lua``, ``audit_head.lua``), the integrator
that folds entries into the tree (``audit_integrate.lua``), and the paged queries over the
index postings (``audit.query``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from idverify.audit.integrator import TreeIntegrator
from idverify.audit.merkle import NodeId
from idverify.audit.query import EventFilter, QueryResult, run_query
from idverify.audit.tree_state import StoredHead, TreeState
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts

__all__ = ["RedisAuditLog"]


class RedisAuditLog:
    """``flows.audit.AuditLog`` over one AuditStore and its integrator.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, store: AuditStore, integrator: TreeIntegrator | None = None) -> None:
        self._store = store
        self._integrator = integrator or TreeIntegrator(store)

    @classmethod
    def over(cls, redis: RedisClient, scripts: Scripts) -> RedisAuditLog:
        """The logs of the store behind ``redis``."""
        return cls(AuditStore(redis, scripts))

    async def exists(self, tenant: str) -> bool:
        """Whether the log's head hash exists."""
        return await self._store.exists(tenant)

    async def size(self, tenant: str) -> int:
        """The head's size."""
        return await self._store.size(tenant)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """One HMGET of the log."""
        return await self._store.entries(tenant, indices)

    async def tree_state(self, tenant: str) -> TreeState:
        """The tree head's fields."""
        return await self._store.tree_state(tenant)

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """``audit_nodes.lua``."""
        return await self._store.read_nodes(tenant, nodes)

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """``audit_head.lua``."""
        return await self._store.replace_signed_head(tenant, previous, signed)

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """The integrator's round(s), ``audit_integrate.lua`` writing each."""
        return await self._integrator.integrate(tenant, up_to=up_to)

    def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """``audit.query.run_query`` over the postings."""
        return run_query(self._store, tenant, query)
