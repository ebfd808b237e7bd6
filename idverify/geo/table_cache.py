"""Range tables built once per database file and mapped read-only by every worker.

Building the tables of a GeoLite2 City file takes seconds of CPU and about 16 MiB. The first
process that needs them builds them under a file lock and writes them to
``<directory>/<key>.tables`` (a temporary file renamed into place); every other process, and every
later start, maps that file instead: the kernel shares its pages between the workers, and a
worker answers lookups a fraction of a second after it starts.

The key is a digest of the database files' contents, how they are read (type, country names)
and the code that turns them into tables, so a new file or a new release never meets an old
table. The file holds a header (magic, format version, length of the description), a JSON
description (the database infos, the answers of every table, where each array lies, a digest of
the arrays) and the arrays themselves as fixed-width integers in the machine's byte order.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, cast

from idverify.geo._range_table import IntArray, RangeTable
from idverify.geo.location import IpLocation
from idverify.geo.provider import DatabaseInfo, Ipv4Alias

__all__ = ["FORMAT_VERSION", "MappedTables", "TableCache", "tables_key"]

logger = logging.getLogger("idverify.geo")

#: Bumped whenever the layout of a cache file changes (the code digest in the key covers the rest).
FORMAT_VERSION = 1
_MAGIC = b"IVGEOTBL"
_PREFIX = struct.Struct("<8sII")
_ALIGN = 8
_SUFFIX = ".tables"
_LOCK_NAME = "tables.lock"

Answer = IpLocation | Ipv4Alias
Label = Answer | None


@dataclass(frozen=True, slots=True)
class MappedTables:
    """Tables read from a cache file (or just written to one).

    Attributes:
        infos: the database infos, as the files said at the build (paths as then).
        table_v4: the IPv4 table.
        table_v6: the IPv6 table (IPv4 aliases included).
        path: the cache file.
    """

    infos: tuple[DatabaseInfo, ...]
    table_v4: RangeTable[IpLocation]
    table_v6: RangeTable[IpLocation | Ipv4Alias]
    path: Path

    @property
    def complete(self) -> bool:
        """Whether the tables answer every address (else the database files must be asked too)."""
        return self.table_v4.complete and self.table_v6.complete


@cache
def _code_digest() -> str:
    """A digest of the geo package's source: a change to any of it may change the tables."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def tables_key(file_digests: Sequence[str], kind: str | None, country_names_from: str) -> str:
    """The cache key of the tables of database files (their SHA-256s, in order) read this way."""
    digest = hashlib.sha256()
    parts = [str(FORMAT_VERSION), sys.byteorder, _code_digest(), kind or "", country_names_from]
    parts += file_digests
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()


class TableCache:
    """A directory of cache files, one per key; the newest written is the only one kept.

    Args:
        directory: where the files go (created, mode 0700, if missing; its parent must exist).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, key: str) -> Path:
        """The cache file of a key."""
        return self.directory / f"{key[:40]}{_SUFFIX}"

    def load(self, key: str) -> MappedTables | None:
        """The mapped tables of a key, or None when there is no usable file for it.

        A file that is damaged or of another format is logged and treated as missing.
        """
        path = self.path_of(key)
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning(
                "geo: cannot read the table cache %s (%s); building the tables", path, error.strerror
            )
            return None
        try:
            # The mapping outlives the descriptor; the memoryviews over it keep it alive.
            mapped = mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:  # ValueError: an empty file
            logger.warning("geo: the table cache %s is unusable (%s); building the tables", path, error)
            return None
        finally:
            os.close(descriptor)
        try:
            return _read(mapped, key, path)
        except (_DamagedError, ValueError, KeyError, TypeError, IndexError) as error:
            logger.warning("geo: the table cache %s is unusable (%s); building the tables", path, error)
            return None

    def load_or_build(self, key: str, build: Callable[[], None]) -> MappedTables:
        """The mapped tables of a key; the first process to miss builds them, the others wait.

        Args:
            key: from ``tables_key``.
            build: writes the key's file (with ``write``) when there is none; called under the
                directory's lock.

        Raises:
            OSError: the directory or the file cannot be made or written.
            GeoDatabaseError: from ``build``.
        """
        found = self.load(key)
        if found is not None:
            return found
        self._make_directory()
        with self._locked():
            # Another process may have written it while this one waited for the lock.
            found = self.load(key)
            if found is not None:
                return found
            started = time.monotonic()
            build()
            path = self.path_of(key)
            self._remove_all_but(path)
            logger.info("geo: built the IP tables into %s in %.2f s", path, time.monotonic() - started)
        found = self.load(key)
        if found is None:
            raise OSError(f"the table cache {path} just written cannot be read back")
        return found

    def _make_directory(self) -> None:
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir(mode=0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing drops the lock

    def write(
        self,
        key: str,
        infos: tuple[DatabaseInfo, ...],
        table_v4: RangeTable[IpLocation],
        table_v6: RangeTable[Answer],
    ) -> Path:
        """Writes the file of a key atomically (a temporary file renamed into place); returns its path.

        Raises:
            OSError: it cannot be written.
        """
        arrays = bytearray()
        pool = _LabelPool()
        description = {
            "key": key,
            "infos": [_info_to_json(info) for info in infos],
            "tables": {
                "4": _table_to_json(cast("RangeTable[Answer]", table_v4), arrays, pool),
                "6": _table_to_json(table_v6, arrays, pool),
            },
            "labels": pool.encoded,
            "arrays_sha256": hashlib.sha256(arrays).hexdigest(),
        }
        meta = json.dumps(description, ensure_ascii=False, separators=(",", ":")).encode()
        head = _PREFIX.pack(_MAGIC, FORMAT_VERSION, len(meta)) + meta
        head += bytes(-len(head) % _ALIGN)
        path = self.path_of(key)
        descriptor, temporary = tempfile.mkstemp(prefix=".tables-", dir=self.directory)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(head)
                file.write(arrays)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def _remove_all_but(self, keep: Path) -> None:
        """Old cache files: a process that still maps one keeps its pages until it lets go."""
        for other in self.directory.glob(f"*{_SUFFIX}"):
            if other != keep:
                with contextlib.suppress(OSError):
                    other.unlink()


class _DamagedError(Exception):
    """A cache file that does not hold what its header says."""


class _LabelPool:
    """Every distinct answer once, by index, in the JSON form a cache file keeps."""

    def __init__(self) -> None:
        self.encoded: list[Any] = []
        self._index: dict[Label, int] = {}

    def index_of(self, label: Label) -> int:
        found = self._index.get(label)
        if found is None:
            found = self._index[label] = len(self.encoded)
            self.encoded.append(_label_to_json(label))
        return found


def _label_to_json(label: Label) -> Any:
    if label is None:
        return None
    if isinstance(label, Ipv4Alias):
        return {"alias": label.shift}
    built = label.source_build_date.isoformat() if label.source_build_date else None
    return [label.display, label.display_en, label.country_code, label.region_code, label.source, built]


def _label_from_json(encoded: Any) -> Label:
    if encoded is None:
        return None
    if isinstance(encoded, dict):
        return Ipv4Alias(int(encoded["alias"]))
    display, display_en, country, region, source, built = encoded
    return IpLocation(
        str(display),
        str(display_en),
        str(country),
        str(region),
        str(source),
        date.fromisoformat(built) if built else None,
    )


def _array_to_json(values: IntArray, arrays: bytearray) -> list[Any]:
    arrays.extend(bytes(-len(arrays) % _ALIGN))
    where = [len(arrays), len(values), values.format if isinstance(values, memoryview) else values.typecode]
    arrays.extend(values.tobytes())
    return where


def _table_to_json(table: RangeTable[Answer], arrays: bytearray, pool: _LabelPool) -> dict[str, Any]:
    return {
        "shift": table.shift,
        "complete": table.complete,
        "starts": _array_to_json(table.starts, arrays),
        "values": _array_to_json(table.values, arrays),
        "labels": [pool.index_of(label) for label in table.labels],
        "blocks": [[key, _table_to_json(block, arrays, pool)] for key, block in table.blocks.items()],
    }


def _info_to_json(info: DatabaseInfo) -> dict[str, Any]:
    return {
        "type": info.type,
        "path": str(info.path) if info.path is not None else None,
        "name": info.name,
        "build_date": info.build_date.isoformat() if info.build_date else None,
        "record_count": info.record_count,
        "ip_versions": sorted(info.ip_versions),
    }


def _info_from_json(encoded: dict[str, Any]) -> DatabaseInfo:
    kind = encoded["type"]
    if kind not in ("mmdb", "xdb"):
        raise _DamagedError(f"unknown database type {kind!r}")
    return DatabaseInfo(
        type=kind,
        path=Path(encoded["path"]) if encoded["path"] is not None else None,
        name=str(encoded["name"]),
        build_date=date.fromisoformat(encoded["build_date"]) if encoded["build_date"] else None,
        record_count=int(encoded["record_count"]),
        ip_versions=frozenset(int(version) for version in encoded["ip_versions"]),
    )


def _read(mapped: mmap.mmap, key: str, path: Path) -> MappedTables:
    if len(mapped) < _PREFIX.size:
        raise _DamagedError("shorter than its header")
    magic, version, meta_length = _PREFIX.unpack_from(mapped)
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise _DamagedError(f"not a table cache of format {FORMAT_VERSION}")
    meta_end = _PREFIX.size + meta_length
    if meta_end > len(mapped):
        raise _DamagedError("truncated")
    description = json.loads(mapped[_PREFIX.size : meta_end])
    if description["key"] != key:
        raise _DamagedError("made for other database files")
    start = meta_end + (-meta_end % _ALIGN)
    whole = memoryview(mapped)
    arrays = whole[start:]
    if hashlib.sha256(arrays).hexdigest() != description["arrays_sha256"]:
        raise _DamagedError("its arrays do not match their digest")
    labels = tuple(_label_from_json(encoded) for encoded in description["labels"])
    tables = description["tables"]
    return MappedTables(
        infos=tuple(_info_from_json(info) for info in description["infos"]),
        table_v4=cast("RangeTable[IpLocation]", _table_from_json(tables["4"], arrays, labels)),
        table_v6=_table_from_json(tables["6"], arrays, labels),
        path=path,
    )


def _array_from_json(where: list[Any], arrays: memoryview) -> memoryview:
    offset, count, typecode = where
    if typecode not in ("I", "Q"):
        raise _DamagedError(f"unknown array type {typecode!r}")
    size = struct.calcsize(typecode) * int(count)
    if offset < 0 or offset % _ALIGN or offset + size > len(arrays):
        raise _DamagedError("an array lies outside the file")
    return arrays[offset : offset + size].cast(typecode)


def _table_from_json(
    encoded: dict[str, Any], arrays: memoryview, labels: tuple[Label, ...]
) -> RangeTable[Answer]:
    starts = _array_from_json(encoded["starts"], arrays)
    values = _array_from_json(encoded["values"], arrays)
    own_labels = tuple(labels[index] for index in encoded["labels"])
    if len(starts) != len(values) or not starts or (values and max(values) >= len(own_labels)):
        raise _DamagedError("a table's arrays do not fit together")
    blocks = {int(key): _table_from_json(block, arrays, labels) for key, block in encoded["blocks"]}
    return RangeTable(
        starts, values, own_labels, int(encoded["shift"]), blocks, complete=bool(encoded["complete"])
    )
