"""An in-memory ``flows.schema_version.SchemaStore``: the recorded schema version as a plain value.

``version`` is what the store records (None: nothing); ``newer_meanwhile`` stands for a server of
a newer release that raises the record between a start's read and its own raise. ``tests/unit/
usecases/test_schema_version_contract.py`` holds it and ``store.schema_versions.RedisSchemaStore``
to the same assertions.
"""

from __future__ import annotations

from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemorySchemaStore"]


class MemorySchemaStore:
    """The schema version of one store, in memory."""

    def __init__(self, version: int | None = None) -> None:
        self.version = version
        self.newer_meanwhile: int | None = None
        self.born_walked = False
        self.down = False  # every call raises StoreUnavailable, as an unreachable Redis would

    def _reach(self) -> None:
        refuse_if_down(self.down)

    async def recorded(self) -> int | None:
        """The version recorded."""
        self._reach()
        return self.version

    async def raise_to(self, version: int) -> int:
        """Raises as ``schema.lua`` does: never lowers; what was held (0: none)."""
        self._reach()
        if self.newer_meanwhile is not None:
            self.version, self.newer_meanwhile = self.newer_meanwhile, None
        held = self.version or 0
        if held < version:
            self.version = version
        return held

    async def logs_born_walked(self) -> bool:
        """Whether the born-walked mark is recorded."""
        self._reach()
        return self.born_walked

    async def mark_logs_born_walked(self) -> None:
        """Records the born-walked mark."""
        self._reach()
        self.born_walked = True
