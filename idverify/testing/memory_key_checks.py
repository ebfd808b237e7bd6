"""An in-memory ``flows.key_check.KeyCheckStore``: the start-up guard's records without Redis.

``tests/unit/usecases/test_key_check.py`` runs the guard on it and checks it against
``store.key_checks.RedisKeyChecks`` with one contract suite, so what the guard is shown to do on
it holds over Redis too.
"""

from __future__ import annotations

from collections.abc import Mapping

from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryKeyChecks"]


class MemoryKeyChecks:
    """The guard's records; ``markers``, ``tenant_keys`` and ``audit_logs`` stand for a store's data.

    ``down`` makes every call raise StoreUnavailable, as an unreachable Redis would.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.audit_key: str | None = None
        self.markers = False  # the bootstrap marker or the client index
        self.tenant_keys = False
        self.audit_logs = False
        self.down = False

    def _reach(self) -> None:
        refuse_if_down(self.down)

    async def holds_markers(self) -> bool:
        """Whether a key-check value, the bootstrap marker or the client index is held."""
        self._reach()
        return self.markers or bool(self.values)

    async def any_tenant_key(self) -> bool:
        """Whether any tenant's key is held (an audit log is one)."""
        self._reach()
        return self.tenant_keys or self.audit_logs

    async def any_audit_log(self) -> bool:
        """Whether any tenant's audit log is held."""
        self._reach()
        return self.audit_logs

    async def recorded_values(self) -> dict[str, str]:
        """The key-check fields recorded so far."""
        self._reach()
        return dict(self.values)

    async def add_values(self, values: Mapping[str, str]) -> None:
        """Records key-check fields."""
        self._reach()
        self.values.update(values)

    async def forget_version(self, version: str) -> None:
        """Removes a version's ``p:`` and ``w:`` fields."""
        self._reach()
        self.values.pop(f"p:{version}", None)
        self.values.pop(f"w:{version}", None)

    async def signing_key(self) -> str | None:
        """The id of the recorded signing key, if any."""
        self._reach()
        return self.audit_key

    async def record_first_signing_key(self, key_id: str) -> None:
        """Records ``key_id`` unless a signing key is recorded already."""
        self._reach()
        if self.audit_key is None:
            self.audit_key = key_id

    async def replace_signing_key(self, key_id: str) -> str | None:
        """Records ``key_id``; returns the id it replaces."""
        self._reach()
        previous, self.audit_key = self.audit_key, key_id
        return previous
