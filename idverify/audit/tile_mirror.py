"""The audit log's tiles kept beside Redis: each round written to files too, proofs read from them.

With ``audit_tiles_dir`` set, every tenant's log is also written as tiles and entry bundles
(``audit/tiles.py``'s layout, ``audit/tile_store.py``'s write-once files) below
``<audit_tiles_dir>/<tenant>``. Redis still holds every entry and node and stays the log of
record; the tiles are what the log's bulk moves to once Redis stops keeping it (issue 26).

Writing. :meth:`TileMirror.record_round` is the integrator's ``RoundListener``: a round Redis
took is appended to the tiles from the entries and nodes the round has in memory, when the tiles
stand exactly where the round began. Otherwise they lag behind Redis (the process died between
the two writes, a replica with its own volume won rounds, the directory was switched on for an
existing log), and a catch-up task brings them up to the integrated tree: Redis's entries a
batch at a time, folded onto the tiles' own frontier, the nodes so computed compared with the
nodes Redis holds at the batch's end (and with the tree head at the last) before anything is
written. A round never waits for a catch-up: one that finds a catch-up running leaves it the
tiles, and the next integration starts another if they still lag.

Their size. The tiles' size is a small file, ``tiles-size``, replaced after the tiles it counts
are written (Tessera's checkpoint, without a signature yet). It is not derived from the files
present: a ``TileStore`` has no listing (an object store's is slow and billed), and the highest
bundle may have been written by a round whose tiles a crash cut short. Written after them, the
file is never ahead of the tiles. It can fall behind (a crash just before it is replaced, or two
processes replacing it in turn), which costs only a rewrite of identical bytes next time.

The first look. Before this process first reads or writes a tenant's tiles, they are checked
against the log of record: tiles ahead of it (a restore from an older backup) or whose tree
differs from its where both hold it (a failover that lost entries others replaced) are refused
as below, so a proof never mixes two timelines.

Failures. A file that exists with other bytes (``TileConflict``) or tiles that disagree with
Redis stop the tenant's tiles in this process until it restarts: logged as an error naming the
file, nothing overwritten, proofs read from Redis alone. Any other failure (a full disk, Redis
away, a tile missing) is logged and retried by the next round or integration. None of them fails
an integration: Redis still holds everything.

Reading. :class:`TiledAuditLog` is ``flows.audit.AuditLog`` over another: nodes within the tiles'
size come from tiles, the rest (and any a tile cannot give) from the log beneath, so proofs are
the same bytes either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from idverify.audit.integrator import BATCH, LogCorrupted, fold
from idverify.audit.merkle import CompactRange, NodeId, frontier_nodes, leaf_hash
from idverify.audit.query import run_query
from idverify.audit.tile_store import DirectoryTiles, TileConflict, TiledLog, TileMissing
from idverify.audit.tree_state import StoredHead, TreeState
from idverify.audit.trimmed_entries import KEPT, TrimmedEntries
from idverify.domain.errors import FailedPrecondition, StoreUnavailable
from idverify.security.durable_files import write_durable_file

if TYPE_CHECKING:
    from idverify.audit.query import EventFilter, IndexedLog, Posting, PostingSeek, QueryResult
    from idverify.audit.trimmed_entries import TrimmableLog
    from idverify.flows.audit import AuditLog

    class LogBeneath(AuditLog, IndexedLog, TrimmableLog, Protocol):
        """The log of record a ``TiledAuditLog`` wraps: the port, its queries' reads and its trims."""


__all__ = [
    "SIZE_FILE",
    "EntriesUnreadable",
    "TileMirror",
    "TileSource",
    "TiledAuditLog",
    "TilesDisagree",
    "tenant_directory",
]

SIZE_FILE = "tiles-size"
"""The file, in a tenant's directory, that says how many entries its tiles hold."""

_SAFE = frozenset(string.ascii_lowercase + string.digits + "_-")

log = logging.getLogger("idverify.audit")


class EntriesUnreadable(FailedPrecondition):
    """Audit entries the log trimmed from Redis cannot be read whole from the tiles.

    The log is intact in its tiles or it is not; either way an operator must look (the message
    names the tenant and the file or the reason), and no reader gets other bytes.
    """

    default_reason = "AUDIT_ENTRIES_UNREADABLE"


class TilesDisagree(RuntimeError):
    """The tiles' tree and the log of record's differ where both hold it."""


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


def tenant_directory(tenant: str) -> str:
    """The name of a tenant's directory: its name, any character but ``[a-z0-9_-]`` as ``%XX``.

    Tenant names are made of those already (``domain.tenants``), so an operator sees them as
    they are; the escape keeps any other from naming ``..``, a path or a hidden file.

    Raises:
        ValueError: the name is empty.
    """
    if not tenant:
        raise ValueError("an empty tenant name names no directory")
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in tenant)


class TileMirror:
    """Every tenant's tiles below one directory, kept up with the integrated tree."""

    def __init__(self, root: Path, source: TileSource, *, batch: int = BATCH) -> None:
        self._root = root
        self._source = source
        self._batch = batch
        self._logs: dict[str, TiledLog] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._catch_ups: dict[str, asyncio.Task[None]] = {}
        # The largest size this process read or wrote per tenant: tiles never shrink.
        self._sizes: dict[str, int] = {}
        self._stopped: set[str] = set()
        # Tenants whose tiles this process found to agree with the log before it first used them.
        self._vouched: set[str] = set()

    def _directory(self, tenant: str) -> Path:
        return self._root / tenant_directory(tenant)

    def _tiles(self, tenant: str) -> TiledLog:
        if tenant not in self._logs:
            self._logs[tenant] = TiledLog(DirectoryTiles(self._directory(tenant)))
        return self._logs[tenant]

    def stopped(self, tenant: str) -> bool:
        """Whether the tenant's tiles were found in conflict (neither written nor read since)."""
        return tenant in self._stopped

    async def size(self, tenant: str) -> int:
        """Entries the tenant's tiles hold, as their size file says (0: none yet).

        Read on the event loop, as tiles are: a few bytes from the page cache.
        """
        try:
            text = (self._directory(tenant) / SIZE_FILE).read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        size = int(text) if text.strip().isdigit() else 0  # unreadable: rewrite from the start
        self._sizes[tenant] = max(size, self._sizes.get(tenant, 0))
        return size

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Node hashes from the tiles; None for a node past their size or that they cannot give."""
        if tenant not in self._vouched and tenant not in self._stopped:
            async with self._lock(tenant), self._reported(tenant):
                await self._vouch(tenant)
        size = await self.size(tenant) if tenant in self._vouched and tenant not in self._stopped else 0
        if not size:
            return [None] * len(nodes)
        try:
            return await self._tiles(tenant).read_nodes(size, nodes)
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
        except (TileMissing, OSError, ValueError) as error:
            raise EntriesUnreadable(f"audit entries of {tenant}: {error}") from None
        checked: list[bytes] = []
        for index, entry, leaf in zip(indices, found, leaves, strict=True):
            if entry is None or leaf is None or leaf_hash(entry) != leaf:
                raise EntriesUnreadable(
                    f"audit entry {index} of {tenant} in its bundle differs from its leaf tile "
                    "(the tiles were altered or damaged)"
                )
            checked.append(entry)
        return checked

    async def record_round(
        self,
        tenant: str,
        old_size: int,
        state: TreeState,
        entries: Sequence[bytes],
        completed: Mapping[NodeId, bytes],
    ) -> None:
        """The integrator's ``RoundListener``: appends a round Redis took to the tiles.

        When the tiles do not stand at ``old_size``, a catch-up to ``state`` is started instead.
        """
        lock = self._lock(tenant)
        if tenant in self._stopped or lock.locked():
            return  # a catch-up is writing the tiles; it or the next integration's covers this round
        behind = False
        async with lock, self._reported(tenant):
            size = await self._vouch(tenant)
            if size == old_size:
                await self._tiles(tenant).append(old_size, entries, completed)
                await self._write_size(tenant, state.size)
                return
            behind = size < state.size
        if behind:
            self.keep_up(tenant, state)

    def keep_up(self, tenant: str, state: TreeState) -> None:
        """Starts a catch-up to ``state`` when the tiles may lag behind it and none is running."""
        if tenant in self._stopped or self._sizes.get(tenant, 0) >= state.size:
            return
        running = self._catch_ups.get(tenant)
        if running is None or running.done():
            self._catch_ups[tenant] = asyncio.create_task(self.catch_up(tenant, state))

    async def idle(self) -> None:
        """Waits for every catch-up running to end."""
        await asyncio.gather(*self._catch_ups.values())

    async def catch_up(self, tenant: str, target: TreeState) -> None:
        """Brings the tenant's tiles up to ``target`` from the log of record, a batch at a time.

        Whatever stops it is logged (see the module's docstring), never raised.
        """
        async with self._lock(tenant), self._reported(tenant):
            tiles = self._tiles(tenant)
            size = await self._vouch(tenant)
            while size < target.size:
                end = min(target.size, size + self._batch)
                frontier = await self._frontier(tenant, size)
                indices = list(range(size, end))
                read = await self._source.entries(tenant, indices)
                entries = [entry for entry in read if entry is not None]
                if len(entries) != len(indices):
                    raise LogCorrupted(f"audit entries of tenant {tenant} before {end} are missing")
                compact, completed = await fold(frontier, entries)
                await self._check(tenant, compact, target)
                await tiles.append(size, entries, completed)
                await self._write_size(tenant, end)
                size = end

    async def check(self, tenant: str) -> int:
        """The tiles' size, once they are found to agree with the log of record (the first look).

        ``idverify backup verify`` asks it of a backup's tiles over the backup's snapshot, so a
        backup whose restore this process would refuse fails verification instead.

        Raises:
            TilesDisagree: the tiles hold more entries than the log, or their tree differs from
                the log's at their size.
            TileMissing: the tiles lack the tree of the size their size file counts.
            StoreUnavailable: the log of record cannot be read.
        """
        size = await self.size(tenant)
        state = await self._source.tree_state(tenant)
        if size > state.size:
            raise TilesDisagree(
                f"the tiles of {tenant} hold {size} entries, more than the log's {state.size}"
            )
        if size:
            await self._check(tenant, await self._frontier(tenant, size), state)
        return size

    async def _vouch(self, tenant: str) -> int:
        """The tiles' size, once this process has checked them against the log of record.

        Tiles ahead of the log, or whose tree differs from the log's where both hold it, are
        refused (``TilesDisagree``): the log was restored from an older backup, or a failover
        lost entries that others then took the place of. Proofs read through them would be
        another log's, so until an operator moves the folder aside they come from the log alone.
        Checked once per process, before the tiles are first read or written; later rounds and
        catch-ups check each batch they add.
        """
        if tenant in self._vouched:
            return await self.size(tenant)
        try:
            size = await self.check(tenant)
        except TilesDisagree as error:
            raise TilesDisagree(f"{error} (restored from an older backup? move the folder aside)") from None
        self._vouched.add(tenant)
        return size

    async def _frontier(self, tenant: str, size: int) -> CompactRange:
        """The tiles' tree of ``size`` entries as a compact range (its frontier's hashes)."""
        frontier = await self._tiles(tenant).read_nodes(size, frontier_nodes(size))
        held = tuple(value for value in frontier if value is not None)
        if len(held) != len(frontier):
            raise TileMissing(f"the tiles of {tenant} lack the tree of {size} entries they count")
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

    async def _write_size(self, tenant: str, size: int) -> None:
        await asyncio.to_thread(
            write_durable_file, self._directory(tenant) / SIZE_FILE, b"%d\n" % size, overwrite=True
        )
        self._sizes[tenant] = max(size, self._sizes.get(tenant, 0))

    @contextlib.asynccontextmanager
    async def _reported(self, tenant: str) -> AsyncIterator[None]:
        """Logs what stops a write, stopping the tenant's tiles on a conflict."""
        try:
            yield
        except (TileConflict, TilesDisagree) as error:
            self._stopped.add(tenant)
            log.error(  # noqa: TRY400 - the file and the tenant are the news, not a traceback
                "audit tiles of %s stopped, nothing overwritten: %s; proofs read Redis alone "
                "until the tiles are examined and the server restarted",
                tenant,
                error,
            )
        except (TileMissing, LogCorrupted, StoreUnavailable, OSError, ValueError) as error:
            log.warning("audit tiles of %s not written yet: %s; retried next integration", tenant, error)


class TiledAuditLog:
    """``flows.audit.AuditLog`` over another, whose proofs read the tiles as far as they reach.

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

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' leaf hashes, from the tiles where they hold them (``read_nodes``)."""
        return await self.read_nodes(tenant, [NodeId(0, index) for index in indices])

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
        """From the tiles where they hold the node, else from the log beneath."""
        hashes = await self._tiles.read_nodes(tenant, nodes)
        missing = [at for at, value in enumerate(hashes) if value is None]
        if missing:
            found = await self._log.read_nodes(tenant, [nodes[at] for at in missing])
            for at, value in zip(missing, found, strict=True):
                hashes[at] = value
        return hashes

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """The log beneath's."""
        return await self._log.replace_signed_head(tenant, previous, signed)

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """The log beneath's integration; then a catch-up if the tiles lag behind its tree.

        A trim of what the bundles now hold starts in the background.
        """
        state = await self._log.integrate(tenant, up_to=up_to)
        self._tiles.keep_up(tenant, state)
        self._entries.keep_trimming(tenant, state.size)
        return state

    async def trim(self, tenant: str) -> int:
        """Trims the tenant's log now, as far as the bundles hold it durably; the trim point after."""
        return await self._entries.trim(tenant, (await self._log.tree_state(tenant)).size)

    async def idle(self) -> None:
        """Waits for the catch-ups and trims running to end."""
        await self._tiles.idle()
        await self._entries.idle()

    def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """``audit.query.run_query`` over this log: entries through the trim point, postings from Redis."""
        return run_query(self, tenant, query)
