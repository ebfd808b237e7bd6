"""An existing log moved into tiles online: copied, switched, trimmed and checked (``idverify migrate``).

A log whose tree Redis keeps (a deployment from before ``audit_tiles_dir``) is moved in three
steps, each the servers' own code, so the move needs no code path of its own to trust:

- *Copy* (:meth:`TilesMove.copy`, while servers run with or without the setting): the tiles are
  caught up to Redis's tree head by ``TileMirror.write_round`` (a round of no entries), which
  folds Redis's entries a batch at a time onto the tiles' own frontier and compares each batch
  with the nodes Redis keeps before writing it. Redis is not written. The head the first copy
  found is recorded once in the tenant's folder (``migrated-from``): the move's starting point,
  which a rerun keeps. A kill leaves write-once files and a size file; a rerun goes on from
  them and writes the same bytes.
- *Finish* (:meth:`TilesMove.finish`, once every server runs with the setting): a round of no
  entries (the tiles caught up, then ``audit_integrate.lua``'s check-and-set marking the head
  ``tiles`` and unlinking Redis's node chunks, exactly as a server's first round does), then
  the servers' trim (``TrimmedEntries.trim``) of the entries the bundles hold durably.
- *Verify* (:meth:`TilesMove.verify`, writes nothing): every entry read back from its bundle and
  compared with Redis's where Redis still keeps it, refolded and every node compared with its
  tile, the tiles' root at the recorded head equal to its root, a consistency proof from it to
  the head now checked with ``merkle.verify_consistency``, and the counts: Redis's entries and
  its trim point make the log's size, and the bundles hold every trimmed entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from idverify.audit.integrator import BATCH, fold
from idverify.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    ProofError,
    consistency_plan,
    verify_consistency,
)
from idverify.audit.tile_mirror import TileMirror, TilesDisagree, TileSource, tenant_directory
from idverify.audit.tile_store import DirectoryTiles, TiledLog, TileMissing
from idverify.audit.tiles import node_in_tile
from idverify.audit.tree_state import TreeState
from idverify.audit.trimmed_entries import TrimmableLog, TrimmedEntries
from idverify.security.durable_files import make_private_dirs, write_durable_file

__all__ = [
    "RECORD_FILE",
    "EntryCounts",
    "MoveRefused",
    "MoveReport",
    "MovedFrom",
    "MovedLog",
    "TilesMove",
]

RECORD_FILE = "migrated-from"
"""The file, in a tenant's tiles folder, holding the tree head the move started from."""

_POLL_SECONDS = 0.5

Progress = Callable[[int], None]
"""Told how many entries of the tenant's log are done so far."""


class MoveRefused(RuntimeError):
    """The move cannot start or go on as asked; nothing was written (one line for the operator)."""


@dataclass(frozen=True, slots=True)
class EntryCounts:
    """A log's entries, read at one moment: its size, its trim point and the entries Redis holds."""

    size: int
    trimmed: int
    in_redis: int


class MovedLog(TileSource, TrimmableLog, Protocol):
    """The log of record a move reads and, finishing, switches (``AuditStore`` plus one count)."""

    async def write_tree(
        self, tenant: str, old_size: int, state: TreeState, nodes: Mapping[NodeId, bytes]
    ) -> bool:
        """``audit_integrate.lua``'s check-and-set (a tiled state: marks the head, unlinks nodes)."""
        ...

    async def entry_counts(self, tenant: str) -> EntryCounts:
        """The log's size, trim point and entries in Redis, read in one step."""
        ...


@dataclass(frozen=True, slots=True)
class MovedFrom:
    """The tree head a tenant's move started from, as recorded in its folder."""

    size: int
    root: bytes

    def encode(self) -> bytes:
        """The record's bytes: the size and the root in hex, on one line."""
        return f"{self.size} {self.root.hex()}\n".encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> MovedFrom:
        """The record from its bytes.

        Raises:
            ValueError: they are not a record.
        """
        size, root = data.decode("ascii").split()
        return cls(int(size), bytes.fromhex(root))


@dataclass(slots=True)
class MoveReport:
    """What a tenant's move holds, and what a check of it found wrong (nothing: ``ok``)."""

    tenant: str
    moved_from: MovedFrom | None = None
    tree_size: int = 0
    root: bytes = b""
    kept_in_tiles: bool = False
    counts: EntryCounts | None = None
    entries_in_bundles: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def as_json(self) -> dict[str, object]:
        """The report as the command's ``--json`` prints it."""
        counts = self.counts or EntryCounts(0, 0, 0)
        return {
            "tenant": self.tenant,
            "ok": self.ok,
            "moved_from": None
            if self.moved_from is None
            else {"size": self.moved_from.size, "root": self.moved_from.root.hex()},
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "kept_in_tiles": self.kept_in_tiles,
            "log_size": counts.size,
            "trimmed": counts.trimmed,
            "entries_in_redis": counts.in_redis,
            "entries_in_bundles": self.entries_in_bundles,
            "problems": self.problems,
        }


class TilesMove:
    """Every tenant's move into tiles below one directory (the servers' ``audit_tiles_dir``)."""

    def __init__(self, root: Path, log: MovedLog, *, batch: int = BATCH) -> None:
        self._root = root
        self._log = log
        self._batch = batch
        self._mirror = TileMirror(root, log, batch=batch)

    def _folder(self, tenant: str) -> Path:
        return self._root / tenant_directory(tenant)

    def moved_from(self, tenant: str) -> MovedFrom | None:
        """The head the tenant's move started from (None: no move started).

        Raises:
            MoveRefused: the record is not one.
        """
        try:
            return MovedFrom.decode((self._folder(tenant) / RECORD_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            raise MoveRefused(f"{self._folder(tenant) / RECORD_FILE} is not a move's record") from None

    async def refusal(self, tenant: str) -> str | None:
        """Why the tenant's log cannot be moved into this directory (None: it can); writes nothing.

        Tiles of another log (their tree differs from Redis's where both hold it), or a record
        of a move from a head this log does not hold, are refused; tiles that lack what their
        size file counts are not: the copy rebuilds them from Redis.
        """
        state = await self._log.tree_state(tenant)
        record = self.moved_from(tenant)
        if record is not None and record.size > state.size:
            return (
                f"tenant {tenant}: {self._folder(tenant)} records a move from {record.size} entries, "
                f"and the log's tree holds {state.size}: the folder is of another log"
            )
        with contextlib.suppress(TileMissing):
            try:
                await self._mirror.check(tenant)
            except TilesDisagree as error:
                return f"{error}: {self._folder(tenant)} holds another log's tiles; move it aside"
        return None

    async def copy(self, tenant: str, progress: Progress) -> TreeState:
        """Catches the tiles up to Redis's tree head, recording the head first found; Redis is not written.

        Servers without the setting keep growing the tree meanwhile: the copy goes again to the
        newer head until less than a batch was added, which the servers' first round catches up.

        Raises:
            TilesStopped: the tiles conflict with the log (the log says which file).
            StoreUnavailable: Redis or the tiles cannot be used now (run the command again).
        """
        state = await self._log.tree_state(tenant)
        if self.moved_from(tenant) is None:
            folder = self._folder(tenant)
            await asyncio.to_thread(make_private_dirs, folder)
            await asyncio.to_thread(
                write_durable_file,
                folder / RECORD_FILE,
                MovedFrom(state.size, state.root).encode(),
                overwrite=False,
            )
        while True:
            async with self._watching(tenant, progress):
                await self._mirror.write_round(tenant, state, state, (), {})
            progress(state.size)
            newer = await self._log.tree_state(tenant)
            if newer.tiled or newer.size - state.size < self._batch:
                return state
            state = newer

    async def finish(self, tenant: str, progress: Progress) -> TreeState:
        """Copies what is left, switches the head to tiles as a server's round does, and trims.

        Run once every server runs with the setting: the switch makes servers without it
        refuse the log (``AUDIT_TILES_REQUIRED``). A log never copied (a tenant created since
        the copy) is copied first, recording its head; one the servers already keep in tiles
        without a copy is only trimmed.

        Raises:
            TilesStopped: the tiles conflict with the log.
            StoreUnavailable: Redis or the tiles cannot be used now (run the command again).
        """
        if self.moved_from(tenant) is None and not (await self._log.tree_state(tenant)).tiled:
            await self.copy(tenant, progress)
        while True:
            state = await self._log.tree_state(tenant)
            if state.tiled:
                break
            async with self._watching(tenant, progress):
                await self._mirror.write_round(tenant, state, state, (), {})
            switched = TreeState(state.size, state.root, state.compact, tiled=True)
            if await self._log.write_tree(tenant, state.size, switched, {}):
                state = switched
                break
            # A server's round moved the head meanwhile (and may have switched it): again from there.
        progress(state.size)
        await TrimmedEntries(self._log, self._mirror).trim(tenant, state.size)
        return state

    async def verify(self, tenant: str, progress: Progress) -> MoveReport:
        """Checks a move's tiles against Redis and the recorded head; reads only.

        Raises:
            StoreUnavailable: Redis cannot be read.
        """
        report = MoveReport(tenant)
        report.moved_from = self.moved_from(tenant)
        state = await self._log.tree_state(tenant)
        report.tree_size, report.root, report.kept_in_tiles = state.size, state.root, state.tiled
        report.counts = await self._log.entry_counts(tenant)
        report.entries_in_bundles = await self._mirror.size(tenant)
        if report.moved_from is None and not state.tiled:
            report.problems.append(
                f"tenant {tenant}: its log was not copied (no {RECORD_FILE} in its folder)"
            )
            return report
        # A log the servers switched with no copy of this command's: its whole tree is checked.
        moved_from = report.moved_from or MovedFrom(0, EMPTY_ROOT)
        counts = report.counts
        if counts.trimmed + counts.in_redis != counts.size:
            report.problems.append(
                f"Redis holds {counts.in_redis} entries above the trim point {counts.trimmed}, "
                f"of a log of {counts.size}"
            )
        if report.entries_in_bundles < max(counts.trimmed, state.size):
            report.problems.append(
                f"the bundles hold {report.entries_in_bundles} entries, fewer than the tree's "
                f"{state.size} or the {counts.trimmed} trimmed from Redis (the copy is not done)"
            )
            return report
        tiles = TiledLog(DirectoryTiles(self._folder(tenant)))
        try:
            report.problems += await self._refold(tenant, tiles, state, moved_from, progress=progress)
            report.problems += await self._prove(tiles, state, moved_from)
        except (TileMissing, ValueError, OSError) as error:
            report.problems.append(f"the tiles cannot be read: {error}")
        return report

    async def _refold(
        self,
        tenant: str,
        tiles: TiledLog,
        state: TreeState,
        moved_from: MovedFrom,
        *,
        progress: Progress,
    ) -> list[str]:
        """Every entry from its bundle folded again, each node compared with its tile's; what differs."""
        problems: list[str] = []
        compact = CompactRange()
        bounds = sorted({*range(0, state.size, self._batch), moved_from.size, state.size})
        for start, end in itertools.pairwise(bounds):
            indices = range(start, end)
            bundled = await tiles.read_entries(state.size, indices)
            kept = await self._log.entries(tenant, indices)
            for index, ours, theirs in zip(indices, bundled, kept, strict=True):
                if ours is None or (theirs is not None and theirs != ours):
                    return [f"entry {index} in its bundle differs from Redis's"]
            compact, completed = await fold(compact, [entry for entry in bundled if entry is not None])
            nodes = list(completed)
            for node, held in zip(nodes, await tiles.read_nodes(state.size, nodes), strict=True):
                if held != completed[node]:
                    level, index, _, _ = node_in_tile(node)
                    where = f"in the tile at level {level}, number {index}"
                    how = "is missing" if held is None else "differs from the entries'"
                    return [f"node {node.level}/{node.index} {how} ({where})"]
            if end == moved_from.size and compact.root() != moved_from.root:
                problems.append(f"the entries' root at {end} differs from the recorded head's")
            progress(end)
        if compact.root() != state.root:
            problems.append(f"the entries' root at {state.size} differs from Redis's tree head")
        return problems

    @staticmethod
    async def _prove(tiles: TiledLog, state: TreeState, moved_from: MovedFrom) -> list[str]:
        """The tiles' root at the recorded head and a consistency proof from it to the head; what fails."""
        problems: list[str] = []
        if await tiles.root(moved_from.size) != moved_from.root:
            problems.append(f"the tiles' root at {moved_from.size} entries is not the recorded head's")
        proof: list[bytes] = []
        if 0 < moved_from.size < state.size:
            plan = consistency_plan(moved_from.size, state.size)
            proof = plan.assemble(await tiles.read_nodes(state.size, plan.nodes))
        try:
            verify_consistency(moved_from.size, state.size, proof, moved_from.root, state.root)
        except ProofError as error:
            problems.append(f"no consistency from the recorded head to the head now: {error}")
        return problems

    @contextlib.asynccontextmanager
    async def _watching(self, tenant: str, progress: Progress) -> AsyncIterator[None]:
        """Reports the tiles' size file (raised after each checked batch) while a catch-up runs."""

        async def watch() -> None:
            while True:
                progress(await self._mirror.size(tenant))
                await asyncio.sleep(_POLL_SECONDS)

        watcher = asyncio.create_task(watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
