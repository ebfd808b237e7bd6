"""The audit log's tree and entries as tiles: names, widths, and which hashes a tile holds.

The layout is the tiled transparency log's (C2SP tlog-tiles, which transparency-dev's Tessera
writes): a tile is a row of at most 256 consecutive hashes of one height of the RFC 6962 tree.
Tile ``(level L, index N)`` holds the nodes of height ``8 * L`` numbered ``256 * N`` onwards, as
many as are complete in the tree it was written for; 256 make a full tile, which never changes
again, fewer a partial one, written anew under its width as the tree grows. Every perfect
subtree a proof asks for (``merkle.ProofPlan``) is in one tile, or is at most seven levels of
hashing above consecutive hashes of one tile, so a proof reads one tile per level band and no
node is stored twice. An entry bundle is the same for entries: bundle ``N`` holds entries
``256 * N`` onwards, each as a two-byte big-endian length and its bytes.

Pure functions only: which tiles exist at a size, what a tile's bytes must become after an
integration, and a node's hash from a tile's bytes. Reading and writing files is
``audit/tile_store.py``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from idverify.audit.merkle import HASH_SIZE, NodeId, node_hash

__all__ = [
    "ENTRY_MAX_BYTES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "BundleId",
    "TileAppend",
    "TileId",
    "bundle_entries",
    "cut_to_width",
    "encode_index",
    "is_tile_path",
    "node_from_tile",
    "node_in_tile",
    "parse_path",
    "read_bundle",
    "tile_appends",
    "tile_width",
    "tiles_of",
]

TILE_HEIGHT = 8
"""Tree levels a tile spans: a tile holds ``2**TILE_HEIGHT`` hashes of its lowest level."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes (or entries) in a full tile (or bundle)."""

ENTRY_MAX_BYTES = 0xFFFF
"""The longest entry a bundle can hold: its length is written in two bytes."""

_INDEX_GROUP = re.compile(r"^(?:x\d{3}/)*\d{3}$")


def encode_index(index: int) -> str:
    """A tile's index as its path: groups of three digits, all but the last prefixed by ``x``.

    ``1234067`` is ``x001/x234/067``: no directory holds more than a thousand names.

    Raises:
        ValueError: the index is negative.
    """
    if index < 0:
        raise ValueError(f"tile index {index} is negative")
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{group}" for group in groups[:-1]), groups[-1]])


def _decode_index(text: str) -> int:
    if not _INDEX_GROUP.match(text):
        raise ValueError(f"tile index {text!r} is not groups of three digits")
    groups = text.split("/")
    if len(groups) > 1 and groups[0] == "x000":
        raise ValueError(f"tile index {text!r} has a leading group of zeros")
    return int("".join(group.removeprefix("x") for group in groups))


def _suffix(width: int) -> str:
    if not 0 < width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is not between 1 and {TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


@dataclass(frozen=True, slots=True, order=True)
class TileId:
    """One tile of the tree, as written at one width.

    Attributes:
        level: the tile level; its hashes are tree nodes of height ``TILE_HEIGHT * level``.
        index: the tile's position in its level.
        width: how many hashes it holds (``TILE_WIDTH``: full, and immutable).
    """

    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        """The tile's name relative to the log's directory, e.g. ``tile/0/x001/234.p/7``."""
        return f"tile/{self.level}/{encode_index(self.index)}{_suffix(self.width)}"

    @property
    def full(self) -> bool:
        """Whether the tile holds all its hashes, so that it never changes again."""
        return self.width == TILE_WIDTH


@dataclass(frozen=True, slots=True, order=True)
class BundleId:
    """One bundle of entries, as written at one width.

    Attributes:
        index: the bundle's position: it starts with entry ``TILE_WIDTH * index``.
        width: how many entries it holds.
    """

    index: int
    width: int

    @property
    def path(self) -> str:
        """The bundle's name relative to the log's directory, e.g. ``tile/entries/005.p/3``."""
        return f"tile/entries/{encode_index(self.index)}{_suffix(self.width)}"

    @property
    def full(self) -> bool:
        """Whether the bundle holds all its entries, so that it never changes again."""
        return self.width == TILE_WIDTH


def parse_path(path: str) -> TileId | BundleId:
    """The tile or bundle a relative path names; the inverse of their ``path``.

    Raises:
        ValueError: the path names neither, or names a width or index in a non-canonical form.
    """
    parts = path.split("/")
    if len(parts) < len(("tile", "<level>", "<index>")) or parts[0] != "tile":
        raise ValueError(f"{path!r} is not a tile path")
    rest = "/".join(parts[2:])
    index_text, width = rest, TILE_WIDTH
    if ".p/" in rest:
        index_text, width_text = rest.split(".p/", 1)
        if not width_text.isdigit() or width_text != str(int(width_text)):
            raise ValueError(f"{path!r} has a malformed width")
        width = int(width_text)
        if width >= TILE_WIDTH:
            raise ValueError(f"{path!r} names a partial tile of width {width}")
    _suffix(width)
    index = _decode_index(index_text)
    if parts[1] == "entries":
        return BundleId(index, width)
    if not parts[1].isdigit() or parts[1] != str(int(parts[1])):
        raise ValueError(f"{path!r} has a malformed level")
    return TileId(int(parts[1]), index, width)


def is_tile_path(path: str) -> bool:
    """Whether a relative path is a tile's or bundle's canonical name (``parse_path`` takes it)."""
    try:
        parse_path(path)
    except ValueError:
        return False
    return True


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile ``(level, index)`` holds in the tree of ``size`` leaves (0: none)."""
    complete = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, complete - index * TILE_WIDTH))


def tiles_of(size: int) -> Iterator[TileId]:
    """Every tile of the tree of ``size`` leaves, level by level, left to right."""
    level = 0
    while size >> (TILE_HEIGHT * level):
        complete = size >> (TILE_HEIGHT * level)
        for index in range((complete + TILE_WIDTH - 1) // TILE_WIDTH):
            yield TileId(level, index, tile_width(level, index, size))
        level += 1


def node_in_tile(node: NodeId) -> tuple[int, int, int, int]:
    """Where a perfect subtree's hash comes from: ``(tile level, tile index, first, count)``.

    The node is the root over hashes ``first`` to ``first + count - 1`` (positions in the tile)
    of the tile's lowest level; ``count`` is 1 when the node is itself in the tile.
    """
    level, above = divmod(node.level, TILE_HEIGHT)
    first = node.index << above
    return level, first // TILE_WIDTH, first % TILE_WIDTH, 1 << above


def node_from_tile(data: bytes, first: int, count: int) -> bytes | None:
    """A node's hash from its tile's bytes (see ``node_in_tile``); None if the tile lacks it."""
    end = (first + count) * HASH_SIZE
    if len(data) < end:
        return None
    row = [data[at : at + HASH_SIZE] for at in range(first * HASH_SIZE, end, HASH_SIZE)]
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


@dataclass(frozen=True, slots=True)
class TileAppend:
    """What an integration adds to one tile: its hashes before, the hashes after them.

    Attributes:
        level: the tile level.
        index: the tile's index.
        old_width: hashes it held before (0: it did not exist); to be read back and kept.
        hashes: the new hashes, concatenated, to follow the old ones.
    """

    level: int
    index: int
    old_width: int
    hashes: bytes

    @property
    def new_width(self) -> int:
        """The tile's width after the append."""
        return self.old_width + len(self.hashes) // HASH_SIZE


def tile_appends(old_size: int, new_size: int, completed: Mapping[NodeId, bytes]) -> list[TileAppend]:
    """The tiles an integration from ``old_size`` to ``new_size`` leaves grows, and by what.

    Args:
        old_size: the tree's size before, whose tiles are written.
        new_size: the size after.
        completed: every perfect subtree the integration completed (``CompactRange.extend``'s
            second value); only those of a tile's height are kept in tiles.

    Raises:
        ValueError: a node a tile needs is missing from ``completed``: the integration and
            the sizes disagree, and writing would leave a hole.
    """
    appends: list[TileAppend] = []
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        height = TILE_HEIGHT * level
        old_count, new_count = old_size >> height, new_size >> height
        for index in range(old_count // TILE_WIDTH, (new_count + TILE_WIDTH - 1) // TILE_WIDTH):
            first = max(old_count, index * TILE_WIDTH)
            last = min(new_count, (index + 1) * TILE_WIDTH)
            if first >= last:
                continue
            hashes = []
            for node_index in range(first, last):
                value = completed.get(NodeId(height, node_index))
                if value is None:
                    raise ValueError(f"node ({height}, {node_index}) was not completed by the integration")
                hashes.append(value)
            appends.append(TileAppend(level, index, first - index * TILE_WIDTH, b"".join(hashes)))
        level += 1
    return appends


def bundle_entries(entries: Iterable[bytes]) -> bytes:
    """Entries in a bundle's form: each a two-byte big-endian length, then its bytes.

    Raises:
        ValueError: an entry is longer than ``ENTRY_MAX_BYTES``.
    """
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > ENTRY_MAX_BYTES:
            raise ValueError(f"an audit entry of {len(entry)} bytes does not fit a bundle")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def read_bundle(data: bytes) -> Sequence[bytes]:
    """The entries of a bundle's bytes, in order.

    Raises:
        ValueError: the bytes end inside an entry.
    """
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise ValueError("an entry bundle ends inside a length")
        length = int.from_bytes(data[at : at + 2], "big")
        at += 2
        if at + length > len(data):
            raise ValueError("an entry bundle ends inside an entry")
        entries.append(data[at : at + length])
        at += length
    return entries


def cut_to_width(path: str, full: bytes) -> bytes:
    """The bytes of the file ``path`` names, cut from those of its full tile or bundle.

    Raises:
        ValueError: ``path`` is not a tile's or bundle's name, or ``full`` holds fewer.
    """
    item = parse_path(path)
    if isinstance(item, BundleId):
        held = read_bundle(full)
        if len(held) < item.width:
            raise ValueError(f"the full bundle of {path} holds {len(held)} entries")
        return bundle_entries(held[: item.width])
    if len(full) < item.width * HASH_SIZE:
        raise ValueError(f"the full tile of {path} is {len(full)} bytes")
    return full[: item.width * HASH_SIZE]
