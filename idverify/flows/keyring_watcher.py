"""A server's keyring watcher, and the reports of the versions each running server holds.

A running server picks up a new keyring file on its own (:class:`KeyringWatcher`) and reports the
versions it holds, so that a reindex starts only once every server can read what it writes;
``idverify keys status`` and the schema check read those reports (:meth:`ServerReports.running`).

The reports are kept through :class:`ServerReports`, the port declared here, in typed values;
``store.server_reports.RedisServerReports`` implements it (the report's key, its JSON and expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from idverify.config import Settings
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.privacy.keyring import KEYRING_ENV_VAR, Keyring, LiveKeyring, load_keyring

__all__ = [
    "UNREPORTED_SCHEMA",
    "KeyringWatcher",
    "ServerKeyring",
    "ServerReports",
    "keyring_path",
]

# Named for key handling, as flows/key_check.py's is: log filters select "idverify.keys".
log = logging.getLogger("idverify.keys")


def keyring_path(settings: Settings, environ: Mapping[str, str] | None = None) -> Path | None:
    """The keyring file a server with these settings reads; None when it comes from the environment."""
    env = os.environ if environ is None else environ
    if env.get(KEYRING_ENV_VAR):
        return None
    return Path(settings.keyring_file) if settings.keyring_file else settings.data_dir / "keyring.json"


UNREPORTED_SCHEMA = 1
"""The schema of a report that names none: 0.1.0 wrote it (the field came in 0.2.0)."""


@dataclass(frozen=True, slots=True)
class ServerKeyring:
    """The keyring versions one running server reported, and its release's schema version.

    The schema version lets tools and later releases see which releases serve a Redis during a
    rolling upgrade: 0.1.0 reads no schema version and cannot refuse anything, but it does
    report its keyring, without this field, so it is never invisible.
    """

    instance: str
    wrapping_current: str
    wrapping: tuple[str, ...]
    pepper_current: str
    schema: int = UNREPORTED_SCHEMA


class ServerReports(Protocol):
    """The running servers' reports, each expiring unless repeated.

    Every method may raise StoreUnavailable.
    """

    async def publish(self, report: ServerKeyring, ttl_ms: int) -> None:
        """Stores ``report`` under its instance for ``ttl_ms``, replacing that instance's last one."""
        ...

    async def withdraw(self, instance: str) -> None:
        """Removes the instance's report."""
        ...

    async def running(self) -> list[ServerKeyring]:
        """The reports of every server that reported within its report's lifetime.

        Reports that cannot be read are left out.
        """
        ...


class KeyringWatcher:
    """Keeps a server's live keyring in step with its keyring file, and reports its versions.

    The file is polled (its size, inode and modification time), which works the same for an
    edited file and a remounted Kubernetes Secret; a keyring that would change the secret of a
    version the server holds is refused with an error in the log, and the old one stays.
    """

    def __init__(
        self,
        live: LiveKeyring,
        path: Path | None,
        reports: ServerReports,
        interval_seconds: float,
        *,
        record: Callable[[Keyring], Awaitable[None]] | None = None,
    ) -> None:
        """Watches ``path`` for ``live``.

        Args:
            live: the keyring the server uses.
            path: the keyring file; None when the keyring came from the environment.
            reports: where the report goes.
            interval_seconds: how often the file is looked at.
            record: checks a new keyring against the store's key-check values and records its
                new versions before it is taken (raises ConfigError to refuse it); without it
                a new keyring is taken unchecked.
        """
        self._live = live
        self._path = path
        self._reports = reports
        self._interval = interval_seconds
        self._record = record
        self._instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Nothing seen yet: the first look reads the file again, so that an edit made between
        # the server's start-up read and this watcher's birth is taken, not missed for good.
        self._seen: tuple[int, int, int] | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            info = self._path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    async def reload_if_changed(self) -> bool:
        """Reads the keyring file again if it changed; True when new versions were taken.

        A new version's key-check value is recorded before the server writes under it, so that a
        later start with a keyring that lacks it is refused, not silently started over; a keyring
        the store cannot check yet (Redis down) is read again at the next look.
        """
        stamp = self._stamp()
        if self._path is None or stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            candidate = load_keyring(path=self._path)
            if self._record is not None and self._adds_versions(candidate):
                await self._record(candidate)
            changed = self._live.replace(candidate)
        except ConfigError as exc:
            log.error("keyring file not taken: %s", exc)  # noqa: TRY400 - the message says it all, without key material
            return False
        except StoreUnavailable:
            log.warning("keyring file not taken yet: Redis cannot be reached to check it; trying again")
            self._seen = None
            return False
        if changed:
            log.info(
                "keyring reloaded: wrapping keys %s (write %s), peppers %s (write %s)",
                ",".join(self._live.wrapping_versions),
                self._live.wrapping_current,
                ",".join(self._live.pepper_versions),
                self._live.pepper_current,
            )
        return changed

    def _adds_versions(self, candidate: Keyring) -> bool:
        """Whether ``candidate`` holds a version the server does not: only those need recording."""
        return not (
            set(candidate.wrapping_versions) <= set(self._live.wrapping_versions)
            and set(candidate.pepper_versions) <= set(self._live.pepper_versions)
        )

    async def report(self) -> None:
        """Tells the tools which versions this server holds (expires unless repeated)."""
        # Imported here: schema_version imports this module (the ServerReports it reads).
        from idverify.flows.schema_version import SCHEMA_VERSION  # noqa: PLC0415

        report = ServerKeyring(
            instance=self._instance,
            wrapping_current=self._live.wrapping_current,
            wrapping=tuple(self._live.wrapping_versions),
            pepper_current=self._live.pepper_current,
            schema=SCHEMA_VERSION,
        )
        await self._reports.publish(report, int(max(self._interval * 3, 5.0) * 1000))

    async def run(self) -> None:
        """Polls and reports until cancelled."""
        while True:
            await self.reload_if_changed()
            with contextlib.suppress(StoreUnavailable):
                await self.report()
            await asyncio.sleep(self._interval)

    async def withdraw(self) -> None:
        """Removes this server's report (on shutdown)."""
        with contextlib.suppress(StoreUnavailable):
            await self._reports.withdraw(self._instance)
