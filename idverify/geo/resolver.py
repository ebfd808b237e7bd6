"""Answers "where is this IP address" from the loaded databases, and swaps in new files live.

Each load builds an immutable snapshot: a compact range table per IP version that answers a
lookup with one bisection (two for an IPv6 alias of the IPv4 data, such as 6to4), and the
providers only where a table leaves addresses to them. With a table cache, the tables are built
once per database file and mapped from the cache by every process (see ``table_cache``). A
lookup reads the current snapshot once, so a reload that swaps it in never disturbs a call in
flight.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, cast

from idverify.geo import database
from idverify.geo._range_table import RangeTable, RangeTableBuilder
from idverify.geo.address import parse_address
from idverify.geo.database import DEFAULT_DATABASE_WARNING, DigestedFile, FileIdentity, provider_from_bytes
from idverify.geo.location import UNKNOWN, IpLocation
from idverify.geo.policy import CountryNames, display_location, is_special
from idverify.geo.provider import DatabaseInfo, GeoDatabaseError, GeoProvider, Ipv4Alias, RawGeo
from idverify.geo.table_cache import MappedTables, TableCache, tables_key
from idverify.priority import run_in_background

__all__ = ["GeoResolver"]

logger = logging.getLogger("idverify.geo")

# Networks smaller than a /64 are rare in every database seen; keying IPv6 on its top 64 bits
# keeps the table in a C array, and the few split /64s get small tables of their own.
_IPV6_KEY_BITS = 64


class _Snapshot:
    """Everything one load produced; never changed after it is built.

    Where the range tables answer every address, the snapshot keeps no provider: a provider
    holds its whole file (tens of MB in every worker), and it would never be asked.
    """

    def __init__(
        self,
        providers: Sequence[GeoProvider],
        identities: tuple[FileIdentity | None, ...],
        country_names_from: CountryNames,
    ) -> None:
        self.identities = identities
        self.infos = tuple(provider.info() for provider in providers)
        self._country_names_from = country_names_from
        self._labels: dict[tuple[int, RawGeo | None], IpLocation] = {}
        self._distinct: dict[IpLocation, IpLocation] = {}
        self._by_version: dict[int, tuple[GeoProvider | None, DatabaseInfo | None]] = {}
        tables: dict[int, RangeTable[IpLocation | Ipv4Alias]] = {}
        for version, bits, key_bits in ((4, 32, 32), (6, 128, _IPV6_KEY_BITS)):
            chosen = next(
                (
                    (provider, info)
                    for provider, info in zip(providers, self.infos, strict=True)
                    if version in info.ip_versions
                ),
                (None, None),
            )
            self._by_version[version] = chosen
            builder: RangeTableBuilder[IpLocation | Ipv4Alias] = RangeTableBuilder(bits, key_bits)
            provider, info = chosen
            if provider is None or info is None:
                builder.add(0, (1 << bits) - 1, UNKNOWN)
            else:
                # An alias answers from the IPv4 table only where that table is the same file's
                # (and an IPv4 range that calls itself one is left to its provider).
                aliases_resolvable = version == 6 and provider is self._by_version[4][0]  # noqa: PLR2004
                for first, last, raw in provider.ranges(4 if version == 4 else 6):  # noqa: PLR2004
                    if isinstance(raw, Ipv4Alias):
                        builder.add(first, last, raw if aliases_resolvable else None)
                    else:
                        builder.add(first, last, self._label(version, raw))
            tables[version] = builder.build()
        # No alias went into the IPv4 table.
        self.table_v4 = cast("RangeTable[IpLocation]", tables[4])
        self.table_v6 = tables[6]
        self.answers_from_tables_alone = self.table_v4.complete and self.table_v6.complete
        if self.answers_from_tables_alone:
            self._by_version = {version: (None, info) for version, (_, info) in self._by_version.items()}

    @classmethod
    def mapped(
        cls, tables: MappedTables, identities: tuple[FileIdentity | None, ...], paths: Sequence[Path]
    ) -> _Snapshot:
        """The snapshot of tables that answer every address, read from a table cache."""
        snapshot = cls.__new__(cls)
        snapshot.identities = identities
        snapshot.infos = tuple(
            replace(info, path=path) for info, path in zip(tables.infos, paths, strict=True)
        )
        snapshot.table_v4 = tables.table_v4
        snapshot.table_v6 = tables.table_v6
        snapshot.answers_from_tables_alone = True
        snapshot.mapped_from = tables.path
        snapshot._by_version = {  # noqa: SLF001 - its own class, built another way
            version: (None, next((info for info in snapshot.infos if version in info.ip_versions), None))
            for version in (4, 6)
        }
        return snapshot

    #: The table cache file the tables are mapped from; None when they are this process's own.
    mapped_from: Path | None = None

    def locate(self, version: int, value: int) -> IpLocation:
        if version == 4:  # noqa: PLR2004 - an IP version
            if is_special(4, value):
                return UNKNOWN
            found = self.table_v4.find(value)
        else:
            if is_special(6, value):
                return UNKNOWN
            in_v6 = self.table_v6.find(value)
            if isinstance(in_v6, Ipv4Alias):
                # As the file's own reader does: the IPv4 answer, with no special-purpose check
                # of the embedded address (the file decides what a 6to4 or Teredo address shows).
                found = self.table_v4.find((value >> in_v6.shift) & 0xFFFFFFFF)
            else:
                found = in_v6
        if found is None:
            return self._ask_provider(version, value)
        return found

    def _ask_provider(self, version: int, value: int) -> IpLocation:
        provider = self._by_version[version][0]
        if provider is None:
            return UNKNOWN
        address = IPv4Address(value) if version == 4 else IPv6Address(value)  # noqa: PLR2004
        return self._label(version, provider.lookup(address))

    def _label(self, version: int, raw: RawGeo | None) -> IpLocation:
        key = (version, raw)
        label = self._labels.get(key)
        if label is None:
            info = self._by_version[version][1]
            label = display_location(
                raw,
                source=info.name if info else "",
                build_date=info.build_date if info else None,
                country_names_from=self._country_names_from,
            )
            # Equal labels share one object, so the range table merges their neighbours.
            label = self._labels[key] = self._distinct.setdefault(label, label)
        return label


class GeoResolver:
    """Turns IP addresses into the location labels the display policy allows.

    Args:
        databases: database files, each IPv4, IPv6 or both; for each IP version the first file
            that has it answers. Empty (and no providers): the bundled GeoLite2 City of
            December 2019 (a warning is logged that it is out of date), never reloaded.
        kind: ``mmdb`` or ``xdb`` for every file; None to tell each from its contents.
        providers: providers already in memory, instead of files; nothing to watch or reload.
        country_names_from: ``database`` to show a database's own Chinese country names where
            it has them, ``table`` to always show the ISO 3166 table's.
        check_interval: seconds between checks of the files for a new version, made by
            lookups (a stat call); 0 turns the checks off (``reload`` still works).
        table_cache: a directory where the tables of each database file are built once and
            mapped by every process that loads the same file (see ``table_cache``); None to
            build them in this process alone.
        clock: a monotonic clock, replaceable in tests.

    Raises:
        GeoDatabaseError: a file cannot be read or is not a usable database.
        ValueError: both files and providers given.
    """

    def __init__(
        self,
        databases: Sequence[Path] = (),
        *,
        kind: str | None = None,
        providers: Sequence[GeoProvider] = (),
        country_names_from: CountryNames = "database",
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        table_cache: Path | None = None,
    ) -> None:
        if databases and providers:
            raise ValueError("give database files or providers, not both")
        self._paths = tuple(Path(path) for path in databases)
        self._kind = kind
        self._country_names_from: CountryNames = country_names_from
        self._interval = check_interval
        self._watching = bool(self._paths) and check_interval > 0
        self._clock = clock
        self._cache = TableCache(table_cache) if table_cache is not None else None
        self._next_check = clock() + check_interval
        self._check_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._background: threading.Thread | None = None
        self._changed: tuple[FileIdentity | None, ...] | None = None
        self._refused: tuple[FileIdentity | None, ...] | None = None
        self._closed = False
        self._snapshot = _Snapshot(providers, (), country_names_from) if providers else self._load()

    def lookup(self, ip: str, *, field: str = "ip") -> IpLocation:
        """The location label of an address.

        Args:
            ip: IPv4 or IPv6 text; IPv4-mapped IPv6 addresses answer as their IPv4 address.
            field: the request field the address came from, named in errors.

        Returns:
            The location: 未知 for special-purpose addresses and for ones no database knows.

        Raises:
            InvalidArgument: ``ip`` is not an IP address (reason ``BAD_IP``, ``field`` set).
        """
        if self._watching:
            now = self._clock()
            if now >= self._next_check:
                self._check_files(now)
        version, value = parse_address(ip, field)
        return self._snapshot.locate(version, value)

    def info(self) -> tuple[DatabaseInfo, ...]:
        """The databases in use, in the order given."""
        return self._snapshot.infos

    @property
    def answers_from_tables_alone(self) -> bool:
        """Whether the range tables answer every address, so that no file stayed in memory.

        True for an mmdb or xdb file that covers its whole address space (IPv4 aliases
        included): after the load only the tables (a few MB) remain, not the file.
        """
        return self._snapshot.answers_from_tables_alone

    @property
    def mapped_from(self) -> Path | None:
        """The table cache file the current tables are mapped from, or None if they are private."""
        return self._snapshot.mapped_from

    def reload(self) -> bool:
        """Read the database files again now and switch to them if they are usable.

        Blocks for the load (seconds for a full GeoLite2 City file); lookups go on meanwhile
        on the current data. For a signal handler use ``request_reload``.

        Returns:
            True if the new files are in use; False if one was unusable, which is logged as an
            error while the previous data stays in use.
        """
        if not self._paths:
            return False
        with self._reload_lock:
            try:
                snapshot = self._load()
            except _RefusedLoadError as refused:
                self._refused = refused.identities
                logger.error(  # noqa: TRY400 - the cause is in the message; a traceback adds nothing
                    "refused the new IP database, still serving the previous one: %s", refused.reason
                )
                return False
            self._snapshot = snapshot
            self._changed = None
            for info in snapshot.infos:
                logger.info(
                    "IP database loaded: %s %s built %s from %s (%d ranges)",
                    info.type,
                    info.name,
                    info.build_date,
                    info.path,
                    info.record_count,
                )
            return True

    def request_reload(self) -> None:
        """Start ``reload`` in a background thread unless one is running; returns at once."""
        if not self._paths or self._closed:
            return
        with self._check_lock:
            if self._background is not None and self._background.is_alive():
                return
            self._background = threading.Thread(
                target=self._reload_quietly, name="idverify-geo-reload", daemon=True
            )
            self._background.start()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no background reload is running (for shutdown and tests)."""
        background = self._background
        if background is not None:
            background.join(timeout)

    def close(self) -> None:
        """Stop checking the files and wait for a running reload to end."""
        self._closed = True
        self._watching = False
        self.wait_idle()

    def _reload_quietly(self) -> None:
        # A rebuild is seconds of CPU on the worker's one core: the calls' event loop goes first.
        run_in_background("idverify-geo")
        try:
            self.reload()
        except Exception:  # a background thread has no caller to raise to
            logger.exception("IP database reload failed; still serving the previous one")

    def _check_files(self, now: float) -> None:
        if not self._check_lock.acquire(blocking=False):
            return
        try:
            if now < self._next_check:
                return
            self._next_check = now + self._interval
            current = tuple(_identity_of(path) for path in self._paths)
            if current in (self._snapshot.identities, self._refused):
                self._changed = None
                return
            if current != self._changed:
                # Wait until the file has held still for one interval: a copy may be under way.
                self._changed = current
                return
        finally:
            self._check_lock.release()
        self.request_reload()

    def _load(self) -> _Snapshot:
        paths: Sequence[Path | None] = self._paths or (None,)
        try:
            with contextlib.ExitStack() as stack:
                files = [stack.enter_context(DigestedFile(self._resolve(path))) for path in paths]
                identities = tuple(
                    file.identity if path is not None else None
                    for file, path in zip(files, paths, strict=True)
                )
                if self._cache is None:
                    return self._build(files, identities)
                built: list[_Snapshot] = []
                mapped = self._load_mapped(self._cache, files, identities, built)
                if mapped is None:
                    return built[0] if built else self._build(files, identities)
                if built:
                    built.clear()
                    _return_freed_heap()
                return mapped
        except GeoDatabaseError as error:
            if not hasattr(self, "_snapshot"):
                raise  # the first load: the caller is starting up and must know
            identities = tuple(_identity_of(path) for path in paths if path is not None)
            raise _RefusedLoadError(identities, str(error)) from error

    @staticmethod
    def _resolve(path: Path | None) -> Path:
        """The file to read: None is the bundled file (with its warning), never reloaded."""
        if path is not None:
            return path
        logger.warning(DEFAULT_DATABASE_WARNING)
        return database.default_database_path()  # looked up at each load, where tests replace it

    def _build(self, files: Sequence[DigestedFile], identities: tuple[FileIdentity | None, ...]) -> _Snapshot:
        return build_snapshot(files, identities, self._kind, self._country_names_from)

    def _load_mapped(
        self,
        cache: TableCache,
        files: Sequence[DigestedFile],
        identities: tuple[FileIdentity | None, ...],
        built: list[_Snapshot],
    ) -> _Snapshot | None:
        """The snapshot mapped from the cache, or None where it cannot answer alone.

        What this process built on a miss is left in ``built``.
        """
        key = tables_key([file.digest for file in files], self._kind, self._country_names_from)

        def build() -> None:
            with _large_blocks_mapped_apart():
                built.append(self._build(files, identities))
            cache.write(key, built[0].infos, built[0].table_v4, built[0].table_v6)

        try:
            tables = cache.load_or_build(key, build)
        except OSError as error:
            logger.warning(
                "geo: cannot use the table cache in %s (%s); building the tables in this process",
                cache.directory,
                error.strerror or error,
            )
            return None
        if not tables.complete:
            # Tables with holes leave addresses to the files, which every process must then hold.
            return None
        return _Snapshot.mapped(tables, identities, [file.path for file in files])


class _RefusedLoadError(Exception):
    """A reload found an unusable file; carries the file versions it saw."""

    def __init__(self, identities: tuple[FileIdentity | None, ...], reason: str) -> None:
        super().__init__(reason)
        self.identities = identities
        self.reason = reason


def build_snapshot(
    files: Sequence[DigestedFile],
    identities: tuple[FileIdentity | None, ...],
    kind: str | None,
    country_names_from: CountryNames,
) -> _Snapshot:
    """The tables of database files, built in this process.

    Raises:
        GeoDatabaseError: a file is unusable (named in the message) or changed while read.
    """
    providers: list[GeoProvider] = []
    for file in files:
        data = file.contents()
        try:
            providers.append(provider_from_bytes(data, kind, file.path))
        except GeoDatabaseError as error:
            raise GeoDatabaseError(f"{file.path}: {error}") from error
    return _Snapshot(providers, identities, country_names_from)


# glibc's mallopt parameters, and the ceiling its own adjustment of the mmap threshold reaches
# (64-bit); its adjustment keeps the trim threshold at twice the mmap threshold.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_CEILING = 32 * 1024 * 1024


@contextlib.contextmanager
def _large_blocks_mapped_apart() -> Iterator[None]:
    """During a build, blocks over 128 KiB get mappings of their own, which go back when freed.

    glibc raises that threshold by itself once a large block is freed; in a build's thread arena
    the large blocks then stay in a heap it does not give back (≈ 10 MiB more in the worker that
    built the tables than in the ones that map them). After the build both thresholds are set
    where glibc's adjustment would have taken them, so argon2id's working memory is reused as
    before. Setting one by hand stops glibc adjusting either: with the trim threshold left at its
    128 KiB the hashing thread's heap was cut back after every hash and each hash faulted its
    19 MiB in again (~4,900 page faults, ~6 ms of system CPU a hash, in the worker that built).
    """
    libc: Any = None
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(None)
    if libc is None or not hasattr(libc, "mallopt"):  # not glibc: nothing to do
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_CEILING)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_CEILING)


def _return_freed_heap() -> None:
    """Hands the heap a build used back to the kernel, which glibc would otherwise keep."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def _identity_of(path: Path) -> FileIdentity | None:
    try:
        return FileIdentity.of(path.stat())
    except OSError:
        return None
