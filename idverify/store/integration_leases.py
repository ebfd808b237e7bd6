"""The leases to integrate tenants' audit logs in Redis, for ``flows.audit_setup``.

``flows.audit_setup`` decides who asks and how long a lease lasts; this adapter keeps each
tenant's lease as one string in its slot (``audit_integration_lease()``: the holder's token, with
the lease as its TTL) and runs ``audit_integration_lease.lua`` over it, one round trip a call.
"""

from __future__ import annotations

from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["RedisIntegrationLeases"]

_SCRIPT = "audit_integration_lease"


class RedisIntegrationLeases:
    """``flows.audit_setup.IntegrationLeases`` over the scripts of one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts

    async def hold(self, tenant: str, token: str, lease_ms: int) -> bool:
        """Takes or renews the tenant's lease for ``token``: False while another token holds it."""
        key = TenantKeys(tenant).audit_integration_lease()
        return bool(int(await self._scripts.run(_SCRIPT, [key], ["hold", token, lease_ms])))

    async def give(self, tenant: str, token: str) -> None:
        """Gives the tenant's lease back, if ``token`` holds it."""
        key = TenantKeys(tenant).audit_integration_lease()
        await self._scripts.run(_SCRIPT, [key], ["give", token, 0])
