"""Turns appended audit entries into Merkle tree nodes, incrementally and safely in parallel.

Appending an entry (in Lua, with the change it records) must stay cheap, and Redis's Lua has no
SHA-256; so entries are hashed into the tree afterwards, by every replica's background task and
on demand before a tree head is signed. Each round reads the tree head and up to ``BATCH``
new entries, folds them into the compact range (``merkle.CompactRange``), and writes the
completed perfect subtrees with a check-and-set on the tree size. Two integrators racing
compute the same nodes from the same entries; the loser's write is refused and it starts over
from the winner's head.

The log is read and the tree written through :class:`IntegratedLog` (``store.audit_store.AuditStore``
over Redis, ``audit_integrate.lua`` writing each round's nodes and head in one call). With a
:class:`RoundWriter` (``audit.tile_mirror`` with ``audit_tiles_dir`` set) the order is Tessera's:
the round's entries and nodes go to the tiles first, and only then does the check-and-set move
the tree head, carrying no node (``TreeState.tiled``). Racing integrators write the same files;
the loser's head write is refused as before. So the tiles never lag a head a round moved, and a
crash between the two leaves tiles ahead of the head, which the next round writes again, byte
for byte. A writer that fails stops the round before the head moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from idverify.audit.merkle import CompactRange, NodeId, leaf_hash
from idverify.audit.tree_state import TreeState

__all__ = ["BATCH", "FOLD_SLICE", "IntegratedLog", "LogCorrupted", "RoundWriter", "TreeIntegrator", "fold"]

BATCH = 4096
"""Entries hashed per round: a read of a few megabytes at most and two hashes an entry."""

FOLD_SLICE = 256
"""Entries folded between two turns of the event loop.

A whole round is tens of milliseconds of CPU in Python, and the integrator runs in every
worker's event loop: folded at once, it held back every call that arrived meanwhile (the longest
callback ``bench/verify.py --rate --loop-callbacks`` found; docs/PERFORMANCE.md). A slice is a
few milliseconds.
"""

log = logging.getLogger("idverify.audit")


class LogCorrupted(RuntimeError):
    """An entry below the log's size is missing: the store was altered or lost data."""


class IntegratedLog(Protocol):
    """The reads and the write a round makes (every method may raise StoreUnavailable)."""

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree as stored."""
        ...

    async def size(self, tenant: str) -> int:
        """Entries in the log (integrated or not)."""
        ...

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes, in order; None where there is none."""
        ...

    async def write_tree(
        self, tenant: str, old_size: int, state: TreeState, nodes: Mapping[NodeId, bytes]
    ) -> bool:
        """Stores the completed nodes and ``state`` as the tree, if it is still at ``old_size``.

        A ``state.tiled`` round stores no node: its tiles hold them (and the tree is marked so).

        Returns:
            False when another process moved the tree first (nothing was written).

        Raises:
            TreeInTiles: a round with nodes, of a tree kept in tiles.
        """
        ...


class RoundWriter(Protocol):
    """Writes each round where the tree is kept, before the tree head moves."""

    async def __call__(
        self,
        tenant: str,
        before: TreeState,
        after: TreeState,
        entries: Sequence[bytes],
        completed: Mapping[NodeId, bytes],
    ) -> None:
        """The round takes the tree from ``before`` to ``after``, folding ``entries``.

        Args:
            tenant: whose log.
            before: the tree head the round read.
            after: the tree after it.
            entries: the entries folded, from ``before.size`` on.
            completed: the perfect subtrees the round completed.

        Raises:
            Exception: whatever stops the round: the head is then not moved.
        """
        ...


class TreeIntegrator:
    """Brings the stored tree of a tenant's log up to the log's size."""

    def __init__(self, store: IntegratedLog, *, write_round: RoundWriter | None = None) -> None:
        self._store = store
        self._write_round = write_round
        self._locks: dict[str, asyncio.Lock] = {}

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """Integrates appended entries; returns the tree state afterwards.

        Args:
            tenant: whose log.
            up_to: stop once the tree holds at least this many entries (None: all of them).

        Raises:
            LogCorrupted: when an entry the log's size promises is missing.
            StoreUnavailable: when Redis cannot be reached (or the tiles cannot be written).
            TreeInTiles: the tree is kept in tiles and this integrator has no writer for them.
        """
        # One integrator per tenant in this process; other processes are handled by the CAS.
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            while True:
                state = await self._store.tree_state(tenant)
                size = await self._store.size(tenant)
                target = size if up_to is None else min(size, up_to)
                if state.size >= target:
                    return state
                end = min(size, state.size + BATCH)
                indices = list(range(state.size, end))
                entries = await self._store.entries(tenant, indices)
                missing = [i for i, entry in zip(indices, entries, strict=True) if entry is None]
                if missing:
                    raise LogCorrupted(f"audit entry {missing[0]} of tenant {tenant} is missing")
                folded = [e for e in entries if e is not None]
                compact, completed = await fold(state.compact, folded)
                tiled = self._write_round is not None
                new_state = TreeState(compact.size, compact.root(), compact, tiled=tiled)
                if self._write_round is not None:
                    await self._write_round(tenant, state, new_state, folded, completed)
                    completed = {}  # the tiles hold them; Redis keeps the head alone
                if not await self._store.write_tree(tenant, state.size, new_state, completed):
                    log.debug("audit tree of %s moved meanwhile; continuing from its new head", tenant)


async def fold(compact: CompactRange, entries: list[bytes]) -> tuple[CompactRange, dict[NodeId, bytes]]:
    """Entries folded into the range ``FOLD_SLICE`` at a time, letting the loop run in between."""
    completed: dict[NodeId, bytes] = {}
    for start in range(0, len(entries), FOLD_SLICE):
        if start:
            await asyncio.sleep(0)
        compact, nodes = compact.extend(leaf_hash(e) for e in entries[start : start + FOLD_SLICE])
        completed.update(nodes)
    return compact, completed
