"""Where every tenant's tiles live: a folder of a filesystem volume, or a bucket's prefix.

``TileMirror`` keeps each tenant's tiles, entry bundles and size file in one place of its own,
named by :func:`tenant_directory`, and sets files beyond a tree aside beside it. A
``TileVolume`` is those places: :class:`DirectoryVolume` (``audit_tiles_dir``) here, the bucket
(``audit_tiles_url``) in ``audit.bucket_tiles``. What to set aside is decided here for both
(:func:`aside_plan`), so a bucket moves exactly the files a folder would.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from idverify.audit.tile_store import DirectoryTiles, TileStore
from idverify.audit.tiles import TILE_HEIGHT, TILE_WIDTH, BundleId, cut_to_width, parse_path, tiles_of
from idverify.security.durable_files import make_private_dirs, write_durable_file

__all__ = [
    "SIZE_FILE",
    "AsidePlan",
    "DirectoryVolume",
    "TileVolume",
    "aside_plan",
    "parse_size",
    "tenant_directory",
    "tree_files",
]

SIZE_FILE = "tiles-size"
"""The file, in a tenant's directory, that says how many entries its tiles hold."""

_SAFE = frozenset(string.ascii_lowercase + string.digits + "_-")


class TileVolume(Protocol):
    """Every tenant's write-once tiles and its size file, one place per tenant."""

    def tiles(self, tenant: str) -> TileStore:
        """The tenant's tiles and bundles."""
        ...

    async def read_size(self, tenant: str) -> int:
        """What the tenant's size file says (0: none, or not a number)."""
        ...

    async def write_size(self, tenant: str, size: int) -> None:
        """Replaces the tenant's size file, durably."""
        ...

    async def set_aside(self, tenant: str, keep: int) -> str | None:
        """Moves the tenant's files beyond the tree of ``keep`` entries beside them; says where.

        None when no file was beyond it. The size file then says ``keep``.
        """
        ...

    def where(self, tenant: str) -> str:
        """The tenant's place as an operator finds it (a folder, or an ``s3://`` prefix)."""
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


def tree_files(size: int) -> list[str]:
    """The files that hold the tree and entries of ``size`` entries, at that size's widths.

    What a reader of a head of that size needs, and all a backup of that head copies.
    """
    bundles = [
        BundleId(index, min(TILE_WIDTH, size - index * TILE_WIDTH)).path
        for index in range((size + TILE_WIDTH - 1) // TILE_WIDTH)
    ]
    return bundles + [tile.path for tile in tiles_of(size)]


def parse_size(data: bytes | None) -> int:
    """The count a size file holds; 0 for none or an unreadable one (rewritten from the start)."""
    text = (data or b"").decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else 0


@dataclass(frozen=True)
class AsidePlan:
    """What setting a tenant's files beyond ``keep`` entries aside does, by tile path."""

    beyond: list[str]
    """Files holding anything past the tree: moved aside."""
    cut: list[tuple[str, str]]
    """Files of the kept tree that only a full file beyond it holds, with that full file: cut
    from it first (a restored tree), so the tree of ``keep`` stays whole once it is moved."""


def aside_plan(names: Iterable[str], keep: int) -> AsidePlan:
    """The plan for a tenant whose files are ``names`` (tile paths; other names are not ours)."""
    held = set(names)
    kept = set(tree_files(keep))
    beyond = sorted(name for name in held if _beyond(name, keep, kept))
    cut = sorted(
        (name, name.split(".p/", 1)[0])
        for name in kept
        if name not in held and name.split(".p/", 1)[0] in held
    )
    return AsidePlan(beyond, cut if beyond else [])


def _beyond(name: str, keep: int, kept: set[str]) -> bool:
    """Whether a tile or bundle file holds anything past the tree of ``keep`` entries."""
    if name in kept:
        return False
    try:
        item = parse_path(name)
    except ValueError:
        return False  # not a tile: not ours to move
    if isinstance(item, BundleId):
        return item.index * TILE_WIDTH + item.width > keep
    return ((item.index * TILE_WIDTH + item.width) << (TILE_HEIGHT * item.level)) > keep


class DirectoryVolume:
    """Each tenant's tiles in a folder below one directory (``audit_tiles_dir``).

    The size file is read on the event loop, as tiles are: a few bytes from the page cache.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    def directory(self, tenant: str) -> Path:
        """The tenant's folder."""
        return self._root / tenant_directory(tenant)

    def tiles(self, tenant: str) -> TileStore:
        """The tenant's tiles and bundles, as files."""
        return DirectoryTiles(self.directory(tenant))

    def where(self, tenant: str) -> str:
        """The tenant's folder."""
        return str(self.directory(tenant))

    async def read_size(self, tenant: str) -> int:
        """What the tenant's size file says (0: none, or not a number)."""
        try:
            return parse_size((self.directory(tenant) / SIZE_FILE).read_bytes())
        except FileNotFoundError:
            return 0

    async def write_size(self, tenant: str, size: int) -> None:
        """Replaces the size file (synced, renamed into place)."""
        await asyncio.to_thread(
            write_durable_file, self.directory(tenant) / SIZE_FILE, b"%d\n" % size, overwrite=True
        )

    async def set_aside(self, tenant: str, keep: int) -> str | None:
        """Moves the files beyond ``keep`` into ``<tenant directory>.beyond-<keep>[-n]``."""
        moved = await asyncio.to_thread(self._set_aside, self.directory(tenant), keep)
        return None if moved is None else str(moved)

    @staticmethod
    def _set_aside(directory: Path, keep: int) -> Path | None:
        if not directory.is_dir():
            return None
        names = [path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()]
        plan = aside_plan(names, keep)
        if not plan.beyond:
            return None
        target = directory.with_name(f"{directory.name}.beyond-{keep}")
        number = 1
        while target.exists():
            number += 1
            target = directory.with_name(f"{directory.name}.beyond-{keep}-{number}")
        for kept_name, full in plan.cut:
            make_private_dirs((directory / kept_name).parent)
            cut = cut_to_width(kept_name, (directory / full).read_bytes())
            write_durable_file(directory / kept_name, cut, overwrite=False)
        for name in plan.beyond:
            make_private_dirs((target / name).parent)
            (directory / name).rename(target / name)
        write_durable_file(directory / SIZE_FILE, b"%d\n" % keep, overwrite=True)
        return target
