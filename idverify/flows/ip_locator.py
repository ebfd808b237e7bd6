"""The IP-location resolver as the server uses it: loaded off the start-up path, reloadable.

Building the range tables of the bundled GeoLite2 file takes a few seconds of CPU, once per file
with a table cache (the data directory's ``geo-tables``: the workers map what the first built),
so the server starts serving at once and loads the database in a thread; a lookup that arrives
before the tables are ready waits for them (bounded). SIGHUP reloads the files; a changed file
is also picked up by itself (see ``idverify.geo.resolver``). When the load at start fails, no
resolver exists to watch the files: the locator does it, and loads again on SIGHUP or when a
lookup finds the files changed since the failure (a file made readable, or replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from idverify.config import GeoSettings
from idverify.domain.errors import ConfigError, FailedPrecondition, StoreUnavailable
from idverify.geo import CountryNames, GeoDatabaseError, GeoResolver, IpLocation
from idverify.geo.address import parse_address
from idverify.geo.database import FileIdentity
from idverify.observability import telemetry
from idverify.priority import run_in_background

log = logging.getLogger("idverify.geo")
# How long a lookup waits for tables still loading before it is UNAVAILABLE (GEO_LOADING, retry):
# well inside the server's call limit ([grpc] rpc_timeout_seconds, 15 s by default) and the
# deadline callers commonly set (idverify.client's 10 s), so that a caller hears why and when to
# retry rather than a bare DEADLINE_EXCEEDED.
LOAD_WAIT_SECONDS = 5.0
#: The table cache's directory under the data directory.
GEO_TABLE_CACHE = "geo-tables"
# After a failed load, lookups look at the files (a stat each) at most this often.
RETRY_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Label:
    """A display location with its database build date as text (as the API carries it)."""

    display: str
    display_en: str
    country_code: str
    region_code: str
    source: str
    source_build_date: str

    @classmethod
    def of(cls, location: IpLocation) -> Label:
        """The label of a resolver answer."""
        built = location.source_build_date.isoformat() if location.source_build_date else ""
        return cls(
            location.display,
            location.display_en,
            location.country_code,
            location.region_code,
            location.source,
            built,
        )


class BackgroundLocator:
    """Owns the resolver: loads it in a thread, answers lookups, reloads on SIGHUP.

    Args:
        settings: the database files and how to read them.
        table_cache: the directory of the table cache; None to build the tables in this process.
        load_wait_seconds: how long a lookup waits for tables still loading.
    """

    def __init__(
        self,
        settings: GeoSettings,
        table_cache: Path | None = None,
        *,
        load_wait_seconds: float = LOAD_WAIT_SECONDS,
    ) -> None:
        self._load_wait_seconds = load_wait_seconds
        self._paths = [Path(p) for p in settings.database.split(",") if p.strip()]
        for path in self._paths:
            if not path.is_file():
                raise ConfigError(f"geo.database: {path} is not a file")
        self._kind = settings.type or None
        self._names: CountryNames = "table" if settings.country_names == "table" else "database"
        self._table_cache = table_cache
        self._resolver: GeoResolver | None = None
        self._error: Exception | None = None
        self._ready = threading.Event()
        # Lookups waiting on their event loops for the load under way (see _wait_ready).
        self._wakers: list[Callable[[], None]] = []
        self._loading_lock = threading.Lock()
        self._loading = False
        self._failed_files: tuple[FileIdentity | None, ...] = ()
        self._next_retry_check = 0.0
        self._start_load()

    def _start_load(self) -> None:
        """Loads the files in a thread, unless a load is under way or one has succeeded."""
        with self._loading_lock:
            if self._loading or self._resolver is not None:
                return
            self._loading = True
            self._ready.clear()
        threading.Thread(target=self._load, name="idverify-geo-load", daemon=True).start()

    def _load(self) -> None:
        # Seconds of CPU on the worker's one core: the calls' event loop goes first.
        run_in_background("idverify-geo")
        files = self._file_identities()
        started = time.monotonic()
        try:
            resolver = GeoResolver(
                self._paths, kind=self._kind, country_names_from=self._names, table_cache=self._table_cache
            )
            mapped = resolver.mapped_from
            log.info(
                "geo: IP tables ready in %.2f s, %s",
                time.monotonic() - started,
                f"mapped from {mapped}" if mapped else "built in this process",
            )
            self._resolver, self._error = resolver, None
        except GeoDatabaseError as exc:
            # The file's fault, and the message names it and says why: a traceback adds nothing.
            self._error, self._failed_files = exc, files
            log.error("geo: the IP database could not be loaded: %s", exc)  # noqa: TRY400
        except Exception as exc:
            self._error, self._failed_files = exc, files
            log.exception("geo: the IP database could not be loaded")
        finally:
            with self._loading_lock:
                self._loading = False
                self._ready.set()
                wakers, self._wakers = self._wakers, []
            for wake in wakers:
                wake()

    def _file_identities(self) -> tuple[FileIdentity | None, ...]:
        identities: list[FileIdentity | None] = []
        for path in self._paths:
            try:
                identities.append(FileIdentity.of(path.stat()))
            except OSError:
                identities.append(None)
        return tuple(identities)

    def _retry_if_files_changed(self) -> None:
        """After a failed load, loads again once the files differ from those that failed."""
        now = time.monotonic()
        if now < self._next_retry_check:
            return
        self._next_retry_check = now + RETRY_CHECK_SECONDS
        if self._file_identities() != self._failed_files:
            log.info("geo: the IP database files changed since they failed to load; loading them again")
            self._start_load()

    async def _wait_ready(self) -> None:
        """Waits (at most ``load_wait_seconds``) until the load under way has ended.

        A burst of lookups at start waits on the event loop, not in a thread each: the default
        executor's few threads would be held for the whole wait, and every other use of it too.
        """
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed meanwhile
                loop.call_soon_threadsafe(ended.set)

        with self._loading_lock:
            if self._ready.is_set():
                return
            self._wakers.append(wake)
        try:
            await asyncio.wait_for(ended.wait(), self._load_wait_seconds)
        except TimeoutError:
            pass
        finally:
            with self._loading_lock, contextlib.suppress(ValueError):
                self._wakers.remove(wake)

    async def _resolved(self) -> GeoResolver:
        if self._resolver is None and self._error is not None and self._ready.is_set():
            self._retry_if_files_changed()
        if not self._ready.is_set():
            await self._wait_ready()
        if self._resolver is None:
            if self._error is not None:
                raise FailedPrecondition("the IP database could not be loaded", reason="GEO_UNAVAILABLE")
            raise StoreUnavailable("the IP database is still loading", reason="GEO_LOADING")
        return self._resolver

    async def locate(self, ip: str, *, field: str = "ip") -> Label:
        """The display label of an address.

        Raises:
            InvalidArgument: on a malformed address (naming ``field``), checked before waiting.
            StoreUnavailable: when the database is still loading after the wait.
            FailedPrecondition: when it could not be loaded at all.
        """
        parse_address(ip, field=field)
        resolver = await self._resolved()
        with telemetry.leaf_span("geo.lookup") as current:
            location = Label.of(resolver.lookup(ip, field=field))
            current.set_attributes(telemetry.cached_safe_attributes({"idverify.provider": location.source}))
        telemetry.Instruments.add(telemetry.instruments.ip_lookups, provider=location.source or "policy")
        return location

    def reload(self) -> None:
        """Starts a reload of the database files (SIGHUP); the old data serves until it is done.

        When no database could be loaded yet, this loads it again (the files may be fixed now).
        """
        log.info("geo: reloading the IP database")
        if self._resolver is not None:
            self._resolver.request_reload()
        else:
            self._start_load()

    def install_sighup(self) -> None:
        """Reloads on SIGHUP (only possible from the main thread's event loop)."""
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    def close(self) -> None:
        """Stops the resolver's background work."""
        if self._resolver is not None:
            self._resolver.close()


def open_locator(
    settings: GeoSettings, table_cache: Path | None = None, *, call_limit_seconds: float | None = None
) -> BackgroundLocator:
    """The server's locator (call inside the running event loop to get SIGHUP reloads).

    Args:
        settings: the database files and how to read them.
        table_cache: the directory of the table cache (see ``BackgroundLocator``).
        call_limit_seconds: the server's limit on a call: a lookup waits for the tables at most
            two thirds of it (and at most ``LOAD_WAIT_SECONDS``), then answers GEO_LOADING.

    Raises:
        ConfigError: when a configured database file does not exist.
    """
    wait = (
        LOAD_WAIT_SECONDS
        if call_limit_seconds is None
        else min(LOAD_WAIT_SECONDS, call_limit_seconds * 2 / 3)
    )
    locator = BackgroundLocator(settings, table_cache, load_wait_seconds=wait)
    locator.install_sighup()
    return locator
