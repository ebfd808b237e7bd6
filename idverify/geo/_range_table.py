"""A compact sorted table of address ranges and their answers, searched by bisection.

It is built once per database load, so that a lookup is one ``bisect`` over a C array
instead of a walk through the database's own index.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Hashable, Iterable
from typing import Generic, TypeAlias, TypeVar

__all__ = ["IntArray", "RangeTable", "RangeTableBuilder"]

T = TypeVar("T", bound=Hashable)
#: A table's integers: an array while it is built, a memoryview over a mapped cache file after.
IntArray: TypeAlias = "array[int] | memoryview"

# Array type codes that hold a key of each width.
_KEY_BITS = {32: "I", 64: "Q"}
# Label id 0 means "no answer here": a gap the caller must ask the database about, or a key
# block shared by several ranges, which a block table of its own then answers.
_NONE = 0


class RangeTable(Generic[T]):
    """Maps every address of one IP version to an answer, or to None where the ranges had none.

    Keys are the top ``key_bits`` of an address. A key block shared by several ranges (an IPv6
    /64 split into smaller networks) gets a table of its own, keyed by the remaining bits.
    """

    __slots__ = ("_blocks", "_labels", "_low_mask", "_shift", "_starts", "_values", "complete")

    def __init__(
        self,
        starts: IntArray,
        values: IntArray,
        labels: tuple[T | None, ...],
        shift: int,
        blocks: dict[int, RangeTable[T]],
        *,
        complete: bool,
    ) -> None:
        #: True when every address has an answer: ``find`` never returns None.
        self.complete = complete
        self._starts = starts
        self._values = values
        self._labels = labels
        self._shift = shift
        self._low_mask = (1 << shift) - 1
        self._blocks = blocks

    def find(self, address: int) -> T | None:
        """The answer for an address, or None where no range covered it."""
        key = address >> self._shift
        label = self._labels[self._values[bisect_right(self._starts, key) - 1]]
        if label is None and self._blocks:
            block = self._blocks.get(key)
            if block is not None:
                return block.find(address & self._low_mask)
        return label

    @property
    def starts(self) -> IntArray:
        """The first key of each run, ascending."""
        return self._starts

    @property
    def values(self) -> IntArray:
        """The label id of each run (an index into ``labels``; 0 for none)."""
        return self._values

    @property
    def labels(self) -> tuple[T | None, ...]:
        """The answers, by label id."""
        return self._labels

    @property
    def shift(self) -> int:
        """How far an address is shifted right to make its key."""
        return self._shift

    @property
    def blocks(self) -> dict[int, RangeTable[T]]:
        """The tables of key blocks shared by several ranges, by key."""
        return self._blocks

    def __len__(self) -> int:
        return len(self._starts) + sum(len(block) for block in self._blocks.values())

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, block tables included (the labels are shared objects)."""
        own = self._starts.itemsize * len(self._starts) + self._values.itemsize * len(self._values)
        return own + sum(block.nbytes for block in self._blocks.values())


class RangeTableBuilder(Generic[T]):
    """Collects ascending ranges and merges neighbours with equal answers.

    Args:
        address_bits: 32 or 128 (any width up to ``key_bits + 64``).
        key_bits: bits of an address the table keys on: 32 for IPv4, 64 for IPv6 (the rest
            of an IPv6 address only matters inside the few /64s split into smaller networks).

    Raises:
        ValueError: unsupported widths.
    """

    def __init__(self, address_bits: int, key_bits: int) -> None:
        shift = max(0, address_bits - key_bits)
        if key_bits not in _KEY_BITS or shift > max(_KEY_BITS):
            raise ValueError(f"key_bits must be 32 or 64, and address_bits at most 64 more ({address_bits})")
        self._shift = shift
        self._low_mask = (1 << shift) - 1
        self._address_end = 1 << address_bits
        self._starts = array(_KEY_BITS[key_bits])
        self._values = array("I")
        self._ids: dict[T | None, int] = {None: _NONE}
        self._labels: list[T | None] = [None]
        self._block_ranges: dict[int, list[tuple[int, int, T]]] = {}
        self._next = 0
        self._gaps = False

    def add(self, first: int, last: int, label: T | None) -> None:
        """Add the range ``first..last`` (inclusive); ranges must come in ascending order.

        Raises:
            ValueError: the range overlaps or precedes the previous one, or is out of bounds.
        """
        if first < self._next or last < first or last >= self._address_end:
            raise ValueError("ranges must ascend without overlapping, inside the address space")
        if first > self._next:
            self._gaps = True
            self._put_range(self._next, first - 1, _NONE, None)
        if label is None:
            self._gaps = True
        label_id = self._ids.get(label)
        if label_id is None:
            label_id = self._ids[label] = len(self._labels)
            self._labels.append(label)
        self._put_range(first, last, label_id, label)
        self._next = last + 1

    def add_all(self, ranges: Iterable[tuple[int, int, T | None]]) -> RangeTableBuilder[T]:
        """Add every range of an ascending iterable; returns the builder."""
        for first, last, label in ranges:
            self.add(first, last, label)
        return self

    def build(self) -> RangeTable[T]:
        """The table; addresses no range covered map to None."""
        if self._next < self._address_end:
            self._gaps = True
            self._put_range(self._next, self._address_end - 1, _NONE, None)
            self._next = self._address_end
        blocks: dict[int, RangeTable[T]] = {}
        for key, ranges in self._block_ranges.items():
            builder: RangeTableBuilder[T] = RangeTableBuilder(
                self._shift, min(key for key in _KEY_BITS if key >= self._shift)
            )
            blocks[key] = builder.add_all(ranges).build()
        # A split block's ranges are the parent's, so a gap in one was a gap here too.
        complete = not self._gaps
        return RangeTable(
            self._starts, self._values, tuple(self._labels), self._shift, blocks, complete=complete
        )

    def _put_range(self, first: int, last: int, label_id: int, label: T | None) -> None:
        shift, low_mask = self._shift, self._low_mask
        first_key, last_key = first >> shift, last >> shift
        head_partial = first & low_mask != 0
        tail_partial = last & low_mask != low_mask
        if first_key == last_key and (head_partial or tail_partial):
            self._share(first_key, first & low_mask, last & low_mask, label)
            return
        if head_partial:
            self._share(first_key, first & low_mask, low_mask, label)
            first_key += 1
        if tail_partial:
            last_key -= 1
        if first_key <= last_key:
            self._put(first_key, label_id)
        if tail_partial:
            self._share(last_key + 1, 0, last & low_mask, label)

    def _share(self, key: int, low_first: int, low_last: int, label: T | None) -> None:
        """Part of a key block: the block answers from a table of its own."""
        self._put(key, _NONE)
        if label is not None:
            self._block_ranges.setdefault(key, []).append((low_first, low_last, label))

    def _put(self, key: int, label_id: int) -> None:
        """Start ``label_id`` at ``key``; every block from 0 on is put in order, gaps included."""
        starts, values = self._starts, self._values
        if values and values[-1] == label_id:
            return
        if starts and starts[-1] == key:
            # Only shared blocks are put twice, and they answer from their block table.
            values[-1] = _NONE
            return
        starts.append(key)
        values.append(label_id)
