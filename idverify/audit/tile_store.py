"""The audit log's tiles and entry bundles kept as files, and the tree read back from them.

Every file is written once: a full tile never changes, and a partial tile is a new file for each
width it reaches (``audit/tiles.py`` names them), so a reader holding an old tree head still
finds what that head covered, and a crashed integration is repeated by writing the same bytes
again. A write that would give an existing name other bytes is refused (``TileConflict``): two
integrators that disagree mean the log or the store is corrupt, and overwriting would hide it.
Once a tile or bundle is full its partial files are removed (small rounds left several times the
log's size in them): every reader of a width falls back to the full file, which starts with the
same bytes.

A round's files are written in one call (``TileStore.write_all``): none is read back before the
round ends, and no reader trusts a file beyond the size file, which is raised only once they are
all durable, so the order among them does not matter, and any subset of them that a crash leaves
is taken again by the repeat. On a directory that spares a thread hop a file, and the directory
sync of each file: each directory is synced once, after all its new files.

``TileStore`` is the seam: ``DirectoryTiles`` keeps the files on a filesystem volume;
``audit.bucket_tiles.BucketTiles`` keeps them as objects of an S3-compatible bucket, write-once by
conditional PUTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from idverify.audit.merkle import EMPTY_ROOT, HASH_SIZE, NodeId, frontier_nodes, node_hash
from idverify.audit.tiles import (
    TILE_WIDTH,
    BundleId,
    TileId,
    bundle_entries,
    cut_to_width,
    node_from_tile,
    node_in_tile,
    parse_path,
    read_bundle,
    tile_appends,
    tile_width,
)
from idverify.security.durable_files import make_private_dirs, sync_directory, write_durable_file

__all__ = ["DirectoryTiles", "TileConflict", "TileMissing", "TileStore", "TiledLog", "TilesUnreachable"]

_WRITERS = 8
"""Files of a round written (and synced) at once: threads waiting for the disk, not computing."""


class TileConflict(RuntimeError):
    """A tile or bundle exists with other bytes than those being written."""


class TilesUnreachable(OSError):
    """The store of the tiles cannot be reached now (a bucket away): the next try may succeed."""


class TileMissing(RuntimeError):
    """A tile or bundle that the log's size says exists cannot be read, or is short."""


class TileStore(Protocol):
    """Write-once files by tile path (``TileId.path``, ``BundleId.path``)."""

    async def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is none."""
        ...

    async def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Stores each file unless it exists with the same bytes; all durable once it returns.

        Raises:
            TileConflict: one exists with other bytes (those before it may be stored).
        """
        ...

    async def drop_partials(self, full: str) -> None:
        """Removes the partial files of the full tile or bundle named ``full`` (if any)."""
        ...


class DirectoryTiles:
    """Tiles as files below one directory (a PersistentVolume in the chart).

    Reads run on the event loop: a tile is at most 8 KiB, read from the page cache in
    microseconds, less than handing it to a thread would cost. A round's writes go to a thread
    in one call, as they wait for the disk: each file is synced, then each directory that got a
    new name (or a new folder) once, before the call returns.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    def _file(self, path: str) -> Path:
        parse_path(path)  # only canonical tile names: nothing can climb out of the directory
        return self._root / path

    async def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is none."""
        try:
            return self._file(path).read_bytes()
        except FileNotFoundError:
            return None

    async def write(self, path: str, data: bytes) -> None:
        """Stores one file unless it exists with the same bytes (then ``TileConflict``)."""
        await self.write_all([(path, data)])

    async def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Stores each file unless it exists with the same bytes (then ``TileConflict``)."""
        targets = [(self._file(path), data) for path, data in files]
        await asyncio.to_thread(self._write_all, targets)

    async def drop_partials(self, full: str) -> None:
        """Removes the folder of the partial files of ``full`` (``<path>.p/``)."""
        await asyncio.to_thread(self._drop, Path(f"{self._file(full)}.p"))

    @staticmethod
    def _drop(partials: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(partials)

    @staticmethod
    def _write_all(targets: Sequence[tuple[Path, bytes]]) -> None:
        # Each file's fsync waits for the disk alone; side by side, the filesystem commits them
        # together (a round's thirty-odd files took thirty-odd waits one after another).
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="tiles") as pool:
            named = list(pool.map(DirectoryTiles._write_one, *zip(*targets, strict=True)))
        for directory in dict.fromkeys(path for paths in named for path in paths):
            sync_directory(directory)

    @staticmethod
    def _write_one(target: Path, data: bytes) -> list[Path]:
        """Writes one file (its bytes synced, not its name); the directories holding new names."""
        named = [created.parent for created in make_private_dirs(target.parent)]
        # Linked into place, never replaced: two writers never replace each other's file, and a
        # tile already there is taken only if it holds the same bytes.
        try:
            write_durable_file(target, data, overwrite=False, sync_parent=False)
        except FileExistsError:
            if target.read_bytes() != data:
                raise TileConflict(f"{target} exists with other bytes") from None
        return [*named, target.parent]


class TiledLog:
    """One log's tree and entries over a ``TileStore``: integrations in, nodes and entries out."""

    def __init__(self, store: TileStore) -> None:
        self._store = store

    async def append(
        self, old_size: int, entries: Sequence[bytes], completed: Mapping[NodeId, bytes]
    ) -> None:
        """Writes entries ``old_size`` onwards and the tree's growth over them.

        The files it grows are read first, then every new one is written in one call (see
        the module's docstring: whatever a crash leaves of them, a repeat writes again, byte
        for byte). The partial files of what became full are removed at the end.

        Args:
            old_size: entries already written.
            entries: the next entries, in order.
            completed: the perfect subtrees folding those entries completed
                (``CompactRange.extend``).

        Raises:
            TileMissing: a tile or bundle ``old_size`` promises is missing or short.
            TileConflict: a file exists with other bytes (see the module's docstring).
            ValueError: ``completed`` lacks a node the tiles need, or an entry is too long.
        """
        new_size = old_size + len(entries)
        first_bundle = old_size // TILE_WIDTH
        files: list[tuple[str, bytes]] = []
        filled: list[str] = []
        for index in range(first_bundle, (new_size + TILE_WIDTH - 1) // TILE_WIDTH):
            start = max(old_size, index * TILE_WIDTH)
            end = min(new_size, (index + 1) * TILE_WIDTH)
            kept = b""
            if start > index * TILE_WIDTH:
                kept = await self._at_width(BundleId(index, start - index * TILE_WIDTH))
            added = bundle_entries(entries[start - old_size : end - old_size])
            bundle = BundleId(index, end - index * TILE_WIDTH)
            files.append((bundle.path, kept + added))
            filled += [bundle.path] if bundle.full else []
        for grown in tile_appends(old_size, new_size, completed):
            kept = b""
            if grown.old_width:
                kept = await self._at_width(TileId(grown.level, grown.index, grown.old_width))
                if len(kept) != grown.old_width * HASH_SIZE:
                    raise TileMissing(f"tile {grown.level}/{grown.index} is {len(kept)} bytes")
            tile = TileId(grown.level, grown.index, grown.new_width)
            files.append((tile.path, kept + grown.hashes))
            filled += [tile.path] if tile.full else []
        await self._store.write_all(files)
        # Last, once every file of the round is there: a crash before leaves only garbage.
        for path in filled:
            await self._store.drop_partials(path)

    async def read_nodes(self, size: int, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """The hashes of perfect subtrees of the tree of ``size`` leaves, one tile read per tile.

        A node the tree of that size does not hold completely answers None.
        """
        tiles: dict[tuple[int, int], bytes | None] = {}
        hashes: list[bytes | None] = []
        for node in nodes:
            level, index, first, count = node_in_tile(node)
            width = tile_width(level, index, size)
            if first + count > width:
                hashes.append(None)
                continue
            if (level, index) not in tiles:
                tiles[level, index] = await self._read_at_least(TileId(level, index, width))
            data = tiles[level, index]
            hashes.append(None if data is None else node_from_tile(data, first, count))
        return hashes

    async def root(self, size: int) -> bytes:
        """The root of the tree of ``size`` leaves, from its tiles.

        Raises:
            TileMissing: a tile the size needs is missing or short.
        """
        nodes = frontier_nodes(size)
        hashes = await self.read_nodes(size, nodes)
        if any(value is None for value in hashes):
            raise TileMissing(f"the tiles do not hold a tree of {size} entries")
        checked = [value for value in hashes if value is not None]
        if not checked:
            return EMPTY_ROOT
        value = checked[-1]
        for left in reversed(checked[:-1]):
            value = node_hash(left, value)
        return value

    async def read_entries(self, size: int, indices: Sequence[int]) -> list[bytes | None]:
        """Entries by number, of a log of ``size`` entries; one bundle read per bundle.

        An index at or past ``size`` answers None.

        Raises:
            TileMissing: a bundle the size promises is missing or short.
            ValueError: a bundle's bytes are malformed.
        """
        bundles: dict[int, Sequence[bytes]] = {}
        found: list[bytes | None] = []
        for number in indices:
            if not 0 <= number < size:
                found.append(None)
                continue
            index, position = divmod(number, TILE_WIDTH)
            if index not in bundles:
                width = min(TILE_WIDTH, size - index * TILE_WIDTH)
                data = await self._read_at_least(BundleId(index, width))
                if data is None:
                    raise TileMissing(f"entry bundle {index} of a log of {size} is missing")
                bundles[index] = read_bundle(data)
            entries = bundles[index]
            if position >= len(entries):
                raise TileMissing(f"entry bundle {index} holds {len(entries)} entries, short of {number}")
            found.append(entries[position])
        return found

    async def _at_width(self, item: TileId | BundleId) -> bytes:
        """The file's bytes at its width: its own file, or cut from the full one.

        A tree restored or caught up to a size that no round ended at has only the full file.

        Raises:
            TileMissing: neither is there, or the full one is short.
        """
        data = await self._store.read(item.path)
        if data is not None:
            return data
        full = await self._read_at_least(item)
        if full is None:
            raise TileMissing(f"{item.path} is missing")
        try:
            return cut_to_width(item.path, full)
        except ValueError as error:
            raise TileMissing(str(error)) from None

    async def _read_at_least(self, tile: TileId | BundleId) -> bytes | None:
        """The file at that width, or the full one: a wider file starts with the same bytes."""
        data = await self._store.read(tile.path)
        if data is None and not tile.full:
            full = (
                TileId(tile.level, tile.index, TILE_WIDTH)
                if isinstance(tile, TileId)
                else BundleId(tile.index, TILE_WIDTH)
            )
            data = await self._store.read(full.path)
        return data
