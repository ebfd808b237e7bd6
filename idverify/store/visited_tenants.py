"""The tenants the erasure workers and the intent repairers visit, named by whoever leaves them work.

A cancellation (its due erasure), a binding and a re-indexing run step by step (their intents)
each name their tenant in ``iv1:{global}:erasure:tenants`` before they write, so that a worker
looking for due work finds it. Naming is one SADD, acknowledged by the replicas as the steps
after it are: it is in another slot than their intents, and a failover that lost it while they
stayed would leave them to no one. A process names a tenant once: a tenant leaves the set only
when it is removed, and a removed tenant takes no new writes (``TENANT_REMOVED``), so a name
noted once stays true for the process's life.
"""

from __future__ import annotations

from idverify.store.keys import GlobalKeys
from idverify.store.scripts import Scripts

__all__ = ["VisitedTenants"]


class VisitedTenants:
    """Names tenants in the workers' set, once a process each."""

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts
        self._noted: set[str] = set()

    async def note(self, tenant: str) -> None:
        """Names ``tenant`` among those the workers visit (one round trip the first time).

        Raises:
            StoreUnavailable: when Redis cannot be reached; the tenant is not taken as noted.
        """
        if tenant not in self._noted:
            # Acknowledged as the steps after it are: a failover that kept their intent, in the
            # tenant's slot, and lost the name, in another, would leave the intent to no one.
            key = GlobalKeys.ERASURE_TENANTS
            await self._scripts.command_acknowledged(key, "SADD", key, tenant)
            self._noted.add(tenant)
