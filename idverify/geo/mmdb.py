"""MaxMind-format ``.mmdb`` databases (GeoIP2/GeoLite2 City, DB-IP City Lite) held in memory.

Lookups go through the ``maxminddb`` reader over the bytes read at load; the search tree is
also walked once at load, which checks it and yields the ranges for the resolver's fast table.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, Literal

import maxminddb

from idverify.geo._mmdb_data import DataSection
from idverify.geo.provider import DatabaseInfo, GeoDatabaseError, IpRange, Ipv4Alias, RawGeo, build_date_of

__all__ = ["METADATA_MARKER", "MmdbProvider"]

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
# The specification puts the metadata within the last 128 KiB of the file.
_METADATA_WINDOW = 128 * 1024
_SEPARATOR = 16


class MmdbProvider:
    """An mmdb file, read fully into memory and checked at load.

    Use ``MmdbProvider.from_bytes``; the file on disk is not touched again, so replacing or
    truncating it cannot disturb lookups.
    """

    def __init__(self, data: bytes, path: Path | None, reader: Any, metadata: Any) -> None:
        self._reader = reader
        self._path = path
        self._metadata = metadata
        node_count: int = metadata.node_count
        tree_size = node_count * metadata.record_size // 4
        marker = data.rfind(METADATA_MARKER, max(0, len(data) - _METADATA_WINDOW))
        if tree_size + _SEPARATOR > marker:
            raise GeoDatabaseError(
                "mmdb search tree runs into the metadata: the file is truncated or corrupt"
            )
        walker = _TreeWalker(
            data, node_count, metadata.record_size, DataSection(data, tree_size + _SEPARATOR, marker)
        )
        self._runs: dict[int, tuple[array[int] | list[int], list[RawGeo | Ipv4Alias | None]]] = {}
        self._record_count = 0
        for version in (4, 6):
            if version == 6 and metadata.ip_version != 6:  # noqa: PLR2004 - an IP version
                continue
            root, bits = walker.root(version, metadata.ip_version)
            starts: array[int] | list[int] = array("I") if version == 4 else []  # noqa: PLR2004
            answers: list[RawGeo | Ipv4Alias | None] = []
            self._record_count += walker.walk(root, bits, starts, answers)
            self._runs[version] = (starts, answers)

    @classmethod
    def from_bytes(cls, data: bytes, path: Path | None = None) -> MmdbProvider:
        """Load an mmdb file's contents.

        Args:
            data: the whole file.
            path: where it was read from, for ``info()``.

        Raises:
            GeoDatabaseError: it is not an mmdb file, or it is truncated or corrupt.
        """
        try:
            reader = maxminddb.open_database(io.BytesIO(data), maxminddb.MODE_FD)
            metadata = reader.metadata()
        except (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError, IndexError) as error:
            raise GeoDatabaseError(f"not a readable mmdb file: {error}") from error
        return cls(data, path, reader, metadata)

    def lookup(self, address: IPv4Address | IPv6Address) -> RawGeo | None:
        """What the file says about one address (see ``GeoProvider.lookup``)."""
        if address.version == 6 and self._metadata.ip_version != 6:  # noqa: PLR2004 - an IP version
            return None
        record = self._reader.get(address)
        return raw_geo_of_record(record) if isinstance(record, Mapping) else None

    def ranges(self, version: Literal[4, 6]) -> Iterator[IpRange]:
        """Every network of the file, neighbours with equal answers merged (see ``GeoProvider.ranges``)."""
        if version not in self._runs:
            yield (0, (1 << 128) - 1, None)
            return
        starts, answers = self._runs[version]
        end = 1 << (32 if version == 4 else 128)  # noqa: PLR2004 - an IP version
        for index, first in enumerate(starts):
            answer = answers[index]
            last = starts[index + 1] - 1 if index + 1 < len(starts) else end - 1
            yield (first, last, answer)

    def info(self) -> DatabaseInfo:
        """Which database this is (see ``GeoProvider.info``)."""
        metadata = self._metadata
        return DatabaseInfo(
            type="mmdb",
            path=self._path,
            name=str(metadata.database_type),
            build_date=build_date_of(metadata.build_epoch),
            record_count=self._record_count,
            ip_versions=frozenset(self._runs),
        )


def raw_geo_of_record(record: Mapping[str, Any]) -> RawGeo | None:
    """The country and first subdivision of a decoded GeoIP2-style record."""
    country = _place(record.get("country"))
    subdivisions = record.get("subdivisions")
    subdivision = _place(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else ("", "", "")
    if not any(country) and not any(subdivision):
        return None
    return RawGeo(country[0].upper(), country[1], country[2], *subdivision)


def _place(value: object) -> tuple[str, str, str]:
    if not isinstance(value, Mapping):
        return ("", "", "")
    names = value.get("names")
    names = names if isinstance(names, Mapping) else {}
    return tuple(  # type: ignore[return-value]
        item if isinstance(item, str) else ""
        for item in (value.get("iso_code"), names.get("zh-CN"), names.get("en"))
    )


_NOT_YET: Any = object()
# An alias of the IPv4 tree at depth d of the IPv6 tree reads the IPv4 address from the 32 bits
# after the first d; one object per depth, so that neighbouring aliases merge into one run.
_ALIASES = {depth: Ipv4Alias(96 - depth) for depth in range(97)}


class _TreeWalker:
    """Walks an mmdb search tree in address order, collecting runs of equal answers."""

    def __init__(self, data: bytes, node_count: int, record_size: int, section: DataSection) -> None:
        if record_size not in (24, 28, 32):
            raise GeoDatabaseError(f"unsupported mmdb record size {record_size}")
        self._data = data
        self._node_count = node_count
        self._record_size = record_size
        self._section = section
        self._ipv4_root = -1
        # Shared by the IPv4 and IPv6 walks: most records are reached from both trees.
        self._answer_of: dict[int, RawGeo | None] = {}

    def read_node(self, node: int) -> tuple[int, int]:  # used once per load: walk() inlines it
        """The left and right records of a node."""
        size = self._record_size
        offset = node * size // 4
        value = int.from_bytes(self._data[offset : offset + size // 4], "big")
        if size == 28:  # noqa: PLR2004 - the record size
            # The middle byte holds the top four bits of both records.
            return ((value >> 32) & 0xFFFFFF) | ((value >> 4) & 0xF000000), value & 0xFFFFFFF
        return value >> size, value & ((1 << size) - 1)

    def root(self, version: int, file_ip_version: int) -> tuple[int, int]:
        """The node where addresses of ``version`` start, and how many bits they have."""
        if version == 6:  # noqa: PLR2004 - an IP version
            return 0, 128
        if file_ip_version != 6:  # noqa: PLR2004 - an IP version
            return 0, 32
        node = 0
        for _ in range(96):
            if node >= self._node_count:
                break
            node = self.read_node(node)[0]
        self._ipv4_root = node
        return node, 32

    def walk(
        self, root: int, bits: int, starts: array[int] | list[int], answers: list[RawGeo | Ipv4Alias | None]
    ) -> int:
        """Append the runs under ``root`` to ``starts``/``answers``; returns the networks with data.

        Raises:
            GeoDatabaseError: the tree is deeper than the address, points outside the file, or
                reaches more nodes than it has (a cycle).
        """
        data, node_count, section = self._data, self._node_count, self._section
        width = self._record_size // 4
        shift = self._record_size
        mask = (1 << shift) - 1
        split_nibbles = self._record_size == 28  # noqa: PLR2004 - the record size
        stop = self._ipv4_root if bits == 128 else -1  # noqa: PLR2004 - IPv6 width
        budget = 2 * node_count + 2
        answer_of = self._answer_of
        networks = 0
        last_answer: object = _NOT_YET
        # Entries are (record, depth, prefix); a record below node_count is a node to expand.
        stack = [(root, 0, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            record, depth, prefix = pop()
            if record < node_count and record != stop:
                budget -= 1
                if depth == bits or budget < 0:
                    raise GeoDatabaseError("mmdb search tree is deeper than an address or has a cycle")
                offset = record * width
                value = int.from_bytes(data[offset : offset + width], "big")
                if split_nibbles:
                    # The middle byte holds the top four bits of both records.
                    left = ((value >> 32) & 0xFFFFFF) | ((value >> 4) & 0xF000000)
                    right = value & 0xFFFFFFF
                else:
                    left, right = value >> shift, value & mask
                depth += 1
                push((right, depth, prefix | (1 << (bits - depth))))
                push((left, depth, prefix))
                continue
            if record == stop:
                # Deeper than /96 leaves fewer than 32 bits for the IPv4 tree: no answer there.
                answer: object = _ALIASES.get(depth)
            elif record == node_count:
                answer = None
            else:
                networks += 1
                answer = answer_of.get(record, _NOT_YET)
                if answer is _NOT_YET:
                    answer = answer_of[record] = section.raw_geo(record - node_count - _SEPARATOR)
            if answer is not last_answer:
                starts.append(prefix)
                answers.append(answer)  # type: ignore[arg-type]
                last_answer = answer
        return networks
