"""The audit log port over Redis and the tiles: nodes from the tiles, older entries from the bundles.

``TiledAuditLog`` is what a process with ``audit_tiles_dir`` set serves (``store.audit_logs``):
proofs read the tree of Redis's head from the tiles (``audit.tile_mirror``), entries below the
trim point come from the bundles (``audit.trimmed_entries``), and each integration, whose rounds
write the tiles before Redis's head moves, starts a trim of what the bundles now hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from idverify.audit.merkle import NodeId
from idverify.audit.query import run_query
from idverify.audit.tile_mirror import TileMirror, TilesStopped
from idverify.audit.tree_state import StoredHead, TreeState
from idverify.audit.trimmed_entries import KEPT, TrimmedEntries

if TYPE_CHECKING:
    from idverify.audit.query import EventFilter, IndexedLog, Posting, PostingSeek, QueryResult
    from idverify.audit.trimmed_entries import TrimmableLog
    from idverify.flows.audit import AuditLog

    class LogBeneath(AuditLog, IndexedLog, TrimmableLog, Protocol):
        """The log of record a ``TiledAuditLog`` wraps: the port, its queries' reads and its trims."""


__all__ = ["TiledAuditLog"]


class TiledAuditLog:
    """``flows.audit.AuditLog`` over another, whose nodes are read from the tiles at its head's size.

    Its entries are the log beneath's at and above the trim point and the bundles' below it
    (``audit.trimmed_entries``), and each integration trims what the bundles hold durably.
    """

    def __init__(self, log: LogBeneath, tiles: TileMirror, *, kept: int = KEPT) -> None:
        self._log = log
        self._tiles = tiles
        self._entries = TrimmedEntries(log, tiles, kept=kept)

    async def exists(self, tenant: str) -> bool:
        """The log beneath's."""
        return await self._log.exists(tenant)

    async def size(self, tenant: str) -> int:
        """The log beneath's."""
        return await self._log.size(tenant)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log beneath's at and above its trim point, the bundles' below it.

        Raises:
            EntriesUnreadable: an entry below the trim point cannot be read whole from its bundle.
        """
        return await self._entries.entries(tenant, indices)

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """Time seeks over the log beneath and, below its trim point, the bundles."""
        return await self._entries.seek_times(tenant, times_ms)

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """The log beneath's (index postings stay in Redis)."""
        return await self._log.seek_postings(tenant, postings, index)

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """The log beneath's."""
        return await self._log.read_posting(tenant, posting, position, count)

    async def tree_state(self, tenant: str) -> TreeState:
        """The log beneath's."""
        return await self._log.tree_state(tenant)

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """The nodes of the tree of Redis's head, from the tiles (Redis's, for a log not yet switched).

        One round trip (the head), then the tiles; None for a node that tree does not hold.

        Raises:
            TilesStopped: the tree is kept in tiles and they cannot give a node it holds, even
                rebuilt from Redis's entries.
            StoreUnavailable: Redis cannot be reached, or the tiles cannot be rebuilt now.
        """
        state = await self._log.tree_state(tenant)
        hashes = await self._tiles.read_nodes(tenant, state.size, nodes)
        missing = [at for at, value in enumerate(hashes) if value is None and _within(nodes[at], state.size)]
        if missing and state.tiled:
            # Tiles that lack the head's tree (a lost file, a backup of an external Redis's
            # earlier head) are rebuilt from Redis's entries, checked against the head, at once.
            await self._tiles.write_round(tenant, state, state, (), {})
            hashes = await self._tiles.read_nodes(tenant, state.size, nodes)
            if any(hashes[at] is None for at in missing):
                raise TilesStopped.lacking(tenant, state.size)
            return hashes
        if not missing:
            return hashes
        found = await self._log.read_nodes(tenant, [nodes[at] for at in missing])
        for at, value in zip(missing, found, strict=True):
            hashes[at] = value
        return hashes

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The integrated entries' leaf hashes, as the tree holds them; None for one not integrated.

        Raises:
            TilesStopped: the tree is kept in tiles and they cannot give one it holds.
        """
        return await self.read_nodes(tenant, [NodeId(0, index) for index in indices])

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """The log beneath's."""
        return await self._log.replace_signed_head(tenant, previous, signed)

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """The log beneath's integration, whose rounds write the tiles first.

        A trim of what the bundles now hold starts in the background.
        """
        state = await self._log.integrate(tenant, up_to=up_to)
        self._entries.keep_trimming(tenant, state.size)
        return state

    async def trim(self, tenant: str) -> int:
        """Trims the tenant's log now, as far as the bundles hold it durably; the trim point after."""
        return await self._entries.trim(tenant, (await self._log.tree_state(tenant)).size)

    async def idle(self) -> None:
        """Waits for the trims running to end."""
        await self._entries.idle()

    def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """``audit.query.run_query`` over this log: entries through the trim point, postings from Redis.

        Its leaf hashes are the tiles' (``leaf_hashes``), a level-0 tile per 256 entries.
        """
        return run_query(self, tenant, query)


def _within(node: NodeId, size: int) -> bool:
    """Whether the tree of ``size`` leaves holds the node completely."""
    return (node.index + 1) << node.level <= size
