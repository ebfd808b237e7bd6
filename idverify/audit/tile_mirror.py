"""The audit log's tree kept in tiles: each round written there before Redis's head moves.

With ``audit_tiles_dir`` set, every tenant's tree and entries are written as tiles and entry
bundles (``audit/tiles.py``'s layout, ``audit/tile_store.py``'s write-once files) below
``<audit_tiles_dir>/<tenant>`` or, with ``audit_tiles_url``, as objects below
``<prefix>/<tenant>/`` of a bucket (``audit/tile_volume.py``, ``audit/bucket_tiles.py``), and
Redis keeps the tree head alone (size, root, compact range, marked ``nodes`` = ``tiles``): no node.
Entries the bundles hold durably leave Redis too, but for the newest (``audit.trimmed_entries``).

Writing. :meth:`TileMirror.write_round` is the integrator's ``RoundWriter``, run before the
check-and-set that moves Redis's head (Tessera's order). It first checks that the tiles hold
the tree of the head the round read (the frontier read from the tiles equals the head's compact
range), then appends the round's entries and completed nodes from memory, then raises the size
file. Racing integrators write the same bytes and the loser's head write is refused; a crash
before the head moved leaves tiles ahead of it, which the next round writes again, byte for
byte. So a head a round moved always has its tiles, at its size's widths.

Catching up. Tiles that do not hold the tree of the round's head (the setting switched on for a
log whose nodes Redis kept; a tiles folder lost) are brought up to it first, in the same round:
Redis's entries a batch at a time, folded onto the tiles' own frontier, each batch's nodes
compared with the nodes Redis holds at its end (while it holds them) and the last with the
head's compact range, before anything of the batch is written. The round that then moves the
head marks it kept in tiles and unlinks Redis's nodes (``audit_integrate.lua``).

Their size. The tiles' size is a small file, ``tiles-size``, raised after the tiles it counts
are written (Tessera's checkpoint, without a signature yet), never lowered by this process. It
may be ahead of Redis's head (a crash before the head moved) or, after two processes raised it
in turn, behind it; readers do not trust it: they read at Redis's head's size.

The first look. Before this process first reads or writes a tenant's tiles, they are compared
with Redis's head: where they hold the tree of the head's size, it must be the head's (else
``TilesDisagree``: Redis restored from an older backup beside tiles of a later log, a failover
that lost integrated entries others then replaced). Tiles ahead of the head that agree at its
size are normal; should the entries after the head differ from theirs (Redis lost entries the
tiles hold), the next round meets a file with other bytes (``TileConflict``).

Failures. A file that exists with other bytes, or tiles that disagree with Redis, stop the
tenant's tiles in this process until it restarts: logged as an error naming the file, nothing
overwritten; the tenant's rounds are refused (``TilesStopped``, FAILED_PRECONDITION), so its
tree head stays where it is, and proofs at that head still read the tiles when they were found
to agree with it. The operator examines the files and sets aside those beyond the head
(:meth:`TileMirror.set_aside`, run by ``idverify audit acknowledge-rollback`` and
``idverify audit set-aside-tiles``), then restarts. Any other failure (a full disk, Redis away,
a tile missing) fails the round as ``StoreUnavailable`` and the next one tries again.

Reading. ``audit.tiled_audit_log.TiledAuditLog`` is the port over Redis and these tiles: it reads
Redis's head and takes every node of the tree of that size from the tiles (:meth:`read_nodes`);
a log whose nodes Redis still keeps (not yet switched) falls back to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from idverify.audit.integrator import BATCH, LogCorrupted, fold
from idverify.audit.merkle import CompactRange, NodeId, frontier_nodes, leaf_hash
from idverify.audit.tile_store import TileConflict, TiledLog, TileMissing, TilesUnreachable
from idverify.audit.tile_volume import SIZE_FILE, DirectoryVolume, TileVolume, tenant_directory, tree_files
from idverify.audit.tiles import TILE_WIDTH, BundleId
from idverify.audit.tree_state import TreeState
from idverify.domain.errors import FailedPrecondition, StoreUnavailable

__all__ = [
    "SIZE_FILE",
    "EntriesUnreadable",
    "TileMirror",
    "TileSource",
    "TilesDisagree",
    "TilesStopped",
    "tenant_directory",
    "tree_files",
]

log = logging.getLogger("idverify.audit")


class EntriesUnreadable(FailedPrecondition):
    """Audit entries the log trimmed from Redis cannot be read whole from the tiles.

    The log is intact in its tiles or it is not; either way an operator must look (the message
    names the tenant and the file or the reason), and no reader gets other bytes.
    """

    default_reason = "AUDIT_ENTRIES_UNREADABLE"


class TilesDisagree(RuntimeError):
    """The tiles' tree and the log of record's differ where both hold it."""


class TilesStopped(FailedPrecondition):
    """A tenant's tiles were stopped in this process (a conflict): its tree cannot grow or be read."""

    default_reason = "AUDIT_TILES_STOPPED"

    @classmethod
    def of(cls, tenant: str) -> TilesStopped:
        """The refusal for one tenant, pointing at the server's log and the operator's way out."""
        return TilesStopped(
            f"the audit tiles of tenant {tenant} conflict with its log (the server's error log names "
            "the file); nothing was overwritten: set the tiles beyond the log aside "
            "(`idverify audit set-aside-tiles`) and restart"
        )

    @classmethod
    def lacking(cls, tenant: str, size: int) -> TilesStopped:
        """The refusal of a read the tiles cannot give, of a tree kept in tiles alone."""
        return TilesStopped(
            f"the audit tiles of tenant {tenant} do not give the tree of {size} entries its head "
            "counts (the server's log says why): check its folder in audit_tiles_dir or its "
            "prefix in audit_tiles_url"
        )


class TileSource(Protocol):
    """What a catch-up and the first look read of the log of record (``AuditStore``, ``MemoryAuditLog``)."""

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree as stored."""
        ...

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes, in order; None where there is none."""
        ...

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Stored node hashes; None for a node not stored."""
        ...


class TileMirror:
    """Every tenant's tiles in one volume, written before Redis's tree head moves.

    ``volume`` is a ``TileVolume``, or the directory of a ``DirectoryVolume``.
    """

    def __init__(self, volume: TileVolume | Path, source: TileSource, *, batch: int = BATCH) -> None:
        self._volume = DirectoryVolume(volume) if isinstance(volume, Path) else volume
        self._source = source
        self._batch = batch
        self._logs: dict[str, TiledLog] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stopped: set[str] = set()
        # Tenants whose tiles this process found to agree with the log before it first used them.
        self._vouched: set[str] = set()

    def _tiles(self, tenant: str) -> TiledLog:
        if tenant not in self._logs:
            self._logs[tenant] = TiledLog(self._volume.tiles(tenant))
        return self._logs[tenant]

    def stopped(self, tenant: str) -> bool:
        """Whether the tenant's tiles were found in conflict (no round is written since)."""
        return tenant in self._stopped

    async def size(self, tenant: str) -> int:
        """Entries the tenant's tiles hold, as their size file says (0: none yet, or unreadable)."""
        return await self._volume.read_size(tenant)

    async def read_nodes(self, tenant: str, size: int, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Node hashes of the tree of ``size`` entries (Redis's head) from the tiles.

        None for a node that tree does not hold, or that the tiles cannot give (their first
        look refused them, a file is missing).
        """
        if tenant not in self._vouched and tenant not in self._stopped:
            async with self._lock(tenant), self._reported(tenant):
                with contextlib.suppress(TileMissing):  # read as far as they reach; a round fills them
                    await self._vouch(tenant)
        if tenant in self._stopped and tenant not in self._vouched:
            return [None] * len(nodes)
        try:
            return await self._tiles(tenant).read_nodes(size, nodes)
        except TilesUnreachable as error:
            raise _unreachable(tenant, error) from None
        except (OSError, ValueError) as error:
            log.warning("audit tiles of %s not read: %s", tenant, error)
            return [None] * len(nodes)

    async def durable_size(self, tenant: str) -> int:
        """Entries the tenant's bundles hold durably, once vouched for (0: stopped, or none yet).

        The size file is replaced only after the tiles and bundles it counts are synced, so
        entries below it may leave Redis (``audit.trimmed_entries``).
        """
        if tenant not in self._vouched and tenant not in self._stopped:
            async with self._lock(tenant), self._reported(tenant):
                await self._vouch(tenant)
        if tenant not in self._vouched or tenant in self._stopped:
            return 0
        return await self.size(tenant)

    async def read_entries(self, tenant: str, indices: Sequence[int], trimmed: int) -> list[bytes]:
        """Entries below the log's trim point from their bundles, each checked against its leaf tile.

        Raises:
            EntriesUnreadable: the tiles were stopped or refused, hold fewer entries than the
                trim point, or a bundle is missing, short, malformed or differs from its leaves.
        """
        size = await self.durable_size(tenant)
        if size < trimmed:
            why = "stopped or refused (see the log)" if size == 0 else f"hold only {size}"
            raise EntriesUnreadable(
                f"audit entries of {tenant} below {trimmed} are kept in its tiles alone, which are {why}"
            )
        tiles = self._tiles(tenant)
        try:
            found = await tiles.read_entries(size, indices)
            leaves = await tiles.read_nodes(size, [NodeId(0, index) for index in indices])
        except TilesUnreachable as error:
            raise _unreachable(tenant, error) from None
        except (TileMissing, OSError, ValueError) as error:
            raise EntriesUnreadable(f"audit entries of {tenant}: {error}") from None
        checked: list[bytes] = []
        for index, entry, leaf in zip(indices, found, leaves, strict=True):
            if entry is None or leaf is None or leaf_hash(entry) != leaf:
                bundle = BundleId(index // TILE_WIDTH, TILE_WIDTH).path
                raise EntriesUnreadable(
                    f"audit entry {index} of {tenant} in its bundle ({bundle}[.p/*] in "
                    f"{self._volume.where(tenant)}) differs from its leaf tile "
                    "(the tiles were altered or damaged)"
                )
            checked.append(entry)
        return checked

    async def write_round(
        self,
        tenant: str,
        before: TreeState,
        after: TreeState,
        entries: Sequence[bytes],
        completed: Mapping[NodeId, bytes],
    ) -> None:
        """The integrator's ``RoundWriter``: the round's tiles, before Redis's head moves.

        Tiles that lack the tree of ``before`` are caught up to it first.

        Raises:
            TilesStopped: the tenant's tiles conflict with the log (logged, naming the file), or
                they lack its tree and Redis no longer holds the entries to rebuild it.
            StoreUnavailable: the tiles cannot be written now, or Redis cannot be read.
        """
        async with self._lock(tenant):
            if tenant in self._stopped:
                raise TilesStopped.of(tenant)
            async with self._reported(tenant):
                with contextlib.suppress(TileMissing):  # a catch-up fills what they lack
                    await self._vouch(tenant)
                if not await self._holds(tenant, before):
                    try:
                        await self._catch_up(tenant, before)
                    except LogCorrupted as error:
                        # Entries trimmed from Redis live in the bundles alone: only a backup's
                        # tiles bring the tree back, never a guess.
                        log.error(  # noqa: TRY400 - the tenant and the entries are the news
                            "audit tiles of %s lack the tree of %d entries, and Redis cannot rebuild it "
                            "(%s): restore the tenant's tiles from a backup",
                            tenant,
                            before.size,
                            error,
                        )
                        raise TilesStopped.lacking(tenant, before.size) from None
                await self._tiles(tenant).append(before.size, entries, completed)
                await self._raise_size(tenant, after.size)
                self._vouched.add(tenant)
                return
            if tenant in self._stopped:
                raise TilesStopped.of(tenant)
            raise StoreUnavailable(f"the audit tiles of tenant {tenant} cannot be written now")

    async def check(self, tenant: str) -> int:
        """The size at which the tiles were found to agree with the log of record (the first look).

        That is the head's size when the tiles hold its tree (whatever they hold beyond it), or
        the tiles' own size when they lag behind it: compared with the nodes Redis keeps there,
        or, for a tree kept in tiles (Redis holds no node), with the head itself after folding
        Redis's entries from their size to the head's onto their frontier (nothing is written).
        A server restored from a backup of an external Redis meets such tiles first.

        Raises:
            TilesDisagree: the tiles' tree differs from the log's where both hold it.
            TileMissing: the tiles lack the tree of the size their size file counts (or of the
                head, when they count as many), or Redis lacks an entry after them.
            StoreUnavailable: the log of record cannot be read.
        """
        state = await self._source.tree_state(tenant)
        held = await self.size(tenant)
        if await self._holds(tenant, state):
            return state.size
        if held >= state.size:
            raise TileMissing(f"the tiles of {tenant} lack the tree of {state.size} entries its head counts")
        frontier = await self._frontier(tenant, held)
        if not state.tiled:
            await self._check(tenant, frontier, state)
            return held
        size = held
        while size < state.size:
            end = min(state.size, size + self._batch)
            read = await self._source.entries(tenant, range(size, end))
            entries = [entry for entry in read if entry is not None]
            if len(entries) != end - size:
                raise TileMissing(f"the tiles of {tenant} lag its head, and Redis lacks entries before {end}")
            frontier, _ = await fold(frontier, entries)
            size = end
        await self._check(tenant, frontier, state)
        return held

    async def set_aside(self, tenant: str, keep: int) -> str | None:
        """Moves the tenant's files beyond the tree of ``keep`` entries into a folder beside them.

        An operator's step after Redis lost entries the tiles hold (a restore, a failover, an
        acknowledged rollback): the files a later round would give other bytes are kept, not
        overwritten, in ``<tenant directory>.beyond-<keep>[-n]`` (a folder, or a bucket's
        prefix); the size file then says ``keep``. Files of widths below ``keep``'s stay: they
        are prefixes of its tree.

        Returns:
            Where the files went, or None when none was beyond ``keep``.
        """
        async with self._lock(tenant):
            moved = await self._volume.set_aside(tenant, keep)
            self._stopped.discard(tenant)
            self._vouched.discard(tenant)
            return moved

    async def _vouch(self, tenant: str) -> None:
        """Checks the tiles against the log of record once per process (the module's first look).

        Raises:
            TilesDisagree: their trees differ (the tenant is then stopped by ``_reported``).
            TileMissing: the tiles cannot give the tree to compare (not vouched: a round fills them).
        """
        if tenant in self._vouched:
            return
        try:
            await self.check(tenant)
        except TilesDisagree as error:
            raise TilesDisagree(
                f"{error} (Redis restored from an older backup, or a failover lost entries? "
                "set the tiles beyond the log aside)"
            ) from None
        self._vouched.add(tenant)

    async def _holds(self, tenant: str, state: TreeState) -> bool:
        """Whether the tiles hold the tree of ``state`` (False when they lack it).

        Raises:
            TilesDisagree: they hold a tree of that size, and it is another.
        """
        try:
            frontier = await self._frontier(tenant, state.size)
        except TileMissing:
            return False
        if frontier.hashes != state.compact.hashes:
            raise TilesDisagree(f"the tiles of {tenant} and the log differ at {state.size} entries")
        return True

    async def _catch_up(self, tenant: str, target: TreeState) -> None:
        """Brings the tiles up to ``target`` from Redis's entries, a checked batch at a time."""
        tiles = self._tiles(tenant)
        size = min(await self.size(tenant), target.size)
        try:
            frontier = await self._frontier(tenant, size)
        except TileMissing:
            size, frontier = 0, CompactRange()  # the size file counts tiles that are gone: from the start
        log.info("audit tiles of %s: catching up from %d to %d entries", tenant, size, target.size)
        while size < target.size:
            end = min(target.size, size + self._batch)
            indices = list(range(size, end))
            read = await self._source.entries(tenant, indices)
            entries = [entry for entry in read if entry is not None]
            if len(entries) != len(indices):
                raise LogCorrupted(f"audit entries of tenant {tenant} before {end} are missing")
            compact, completed = await fold(frontier, entries)
            await self._check(tenant, compact, target)
            await tiles.append(size, entries, completed)
            await self._raise_size(tenant, end)
            size, frontier = end, compact

    async def _frontier(self, tenant: str, size: int) -> CompactRange:
        """The tiles' tree of ``size`` entries as a compact range (its frontier's hashes).

        Raises:
            TileMissing: the tiles cannot give it.
        """
        try:
            frontier = await self._tiles(tenant).read_nodes(size, frontier_nodes(size))
        except ValueError as error:
            raise TileMissing(f"the tiles of {tenant} cannot be read: {error}") from None
        held = tuple(value for value in frontier if value is not None)
        if len(held) != len(frontier):
            raise TileMissing(f"the tiles of {tenant} lack the tree of {size} entries")
        return CompactRange(size, held)

    async def _check(self, tenant: str, compact: CompactRange, target: TreeState) -> None:
        """Refuses a batch whose frontier differs from the one the log of record holds."""
        if compact.size == target.size:
            expected: Sequence[bytes | None] = target.compact.hashes
        else:
            expected = await self._source.read_nodes(tenant, frontier_nodes(compact.size))
        for theirs, ours in zip(expected, compact.hashes, strict=True):
            if theirs is not None and theirs != ours:
                raise TilesDisagree(f"the tiles of {tenant} and the log differ at {compact.size} entries")

    def _lock(self, tenant: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant, asyncio.Lock())

    async def _raise_size(self, tenant: str, size: int) -> None:
        """Raises the size file to ``size`` (never lowers it: another writer may be ahead)."""
        if await self.size(tenant) < size:
            await self._volume.write_size(tenant, size)

    @contextlib.asynccontextmanager
    async def _reported(self, tenant: str) -> AsyncIterator[None]:
        """Logs what stops a write or a first look, stopping the tenant's tiles on a conflict."""
        try:
            yield
        except TilesUnreachable as error:
            log.warning("audit tiles of %s not reached: %s; retried next integration", tenant, error)
            raise _unreachable(tenant, error) from None
        except (TileConflict, TilesDisagree) as error:
            self._stopped.add(tenant)
            log.error(  # noqa: TRY400 - the file and the tenant are the news, not a traceback
                "audit tiles of %s stopped, nothing overwritten: %s; its tree is not grown until the "
                "tiles are examined, those beyond the log set aside and the server restarted",
                tenant,
                error,
            )
        except (TileMissing, OSError, ValueError) as error:
            log.warning("audit tiles of %s not written yet: %s; retried next integration", tenant, error)


def _unreachable(tenant: str, error: TilesUnreachable) -> StoreUnavailable:
    """A store of tiles away (a bucket): UNAVAILABLE, as Redis away is; the next try may succeed."""
    return StoreUnavailable(f"the audit tiles of tenant {tenant} cannot be reached now: {error}")
