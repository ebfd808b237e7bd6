"""The schema version of the data in Redis: recorded at start, raised by upgrades, never lowered.

``iv1:{global}:schema`` holds the version of the newest release's data layout that has run on
the store. Version 1 is 0.1.0's layout, which recorded no version: a store with data and no
record is version 1. A server raises the record to its own version first thing at start
(after any migration that version needs), and refuses to start on a version newer than its own,
before it writes or generates anything: that data may hold records it would misread or
overwrite.

0.1.0 -> 0.2.0 (version 2) rewrites nothing: every change is read lazily from the old records,
which the code handles where it reads them (docs/ARCHITECTURE.md, "Upgrades"). A release whose
change cannot be read that way migrates in :func:`ensure_schema` before raising the version.

The version is read and raised through :class:`SchemaStore`, the port declared here;
``store.schema_versions.RedisSchemaStore`` implements it (the key and ``schema.lua``). Whether a
store holds data is the key check's rule (``flows.key_check.store_holds_data``), and the servers
still serving come from their keyring reports (``flows.keyring_watcher.ServerReports``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.flows.key_check import KeyCheckStore, store_holds_data
from idverify.flows.keyring_watcher import ServerKeyring, ServerReports

__all__ = [
    "FIRST_VERSION",
    "OLDEST_SCHEMA_BESIDE",
    "SCHEMA_VERSION",
    "SchemaStore",
    "ensure_schema",
    "older_servers",
    "refuse_newer_schema",
]

SCHEMA_VERSION = 2
"""This release's data layout (0.2.0)."""
FIRST_VERSION = 1
"""0.1.0's layout: what a store with data and no recorded version holds."""
OLDEST_SCHEMA_BESIDE = FIRST_VERSION
"""The oldest release, by schema version, whose servers may go on serving beside this one.

0.2.0 serves beside 0.1.0 (``tests/e2e/test_rolling_upgrade.py``). A release that cannot serve
beside the previous one sets this to its own version: its first start on older data then
refuses while a server of an older release still reports in (``flows.keyring_watcher.ServerReports``:
every release reports, 0.1.0 without a version), naming it, rather than raise the version
under a server that would misread what this release writes.
"""

log = logging.getLogger("idverify.schema")


class SchemaStore(Protocol):
    """The store's recorded schema version; every method may raise StoreUnavailable."""

    async def recorded(self) -> int | None:
        """The version recorded, or None when none is."""
        ...

    async def raise_to(self, version: int) -> int:
        """Records ``version`` unless a newer one is recorded, in one step; the version held before (0: none).

        A newer server may have raised it since the caller read it: the answer says so.
        """
        ...

    async def logs_born_walked(self) -> bool:
        """Whether the logs created from now on are born walked (``flows.born_walked``)."""
        ...

    async def mark_logs_born_walked(self) -> None:
        """Records that no server of an older release was found serving: new logs are born walked."""
        ...


async def ensure_schema(
    schema: SchemaStore,
    checks: KeyCheckStore,
    reports: ServerReports,
    *,
    oldest_beside: int = OLDEST_SCHEMA_BESIDE,
) -> int:
    """Reads the store's schema version, refuses a newer one, and records this release's.

    Raising an older version, it looks for servers of an older release still serving the store
    (a rolling upgrade): below ``oldest_beside`` they stop this start; otherwise they are logged.

    Returns:
        The version the store held before (0 for an empty store; ``FIRST_VERSION`` for 0.1.0's
        data), or -1 when Redis could not be reached (checked at the next start, like the keys).

    Raises:
        ConfigError: the store holds a schema newer than this release knows, or servers of a
            release older than ``oldest_beside`` still serve it.
    """
    try:
        recorded = await schema.recorded()
        held = recorded if recorded is not None else FIRST_VERSION if await store_holds_data(checks) else 0
        _refuse_newer(held)
        # Only while raising (or on an empty store, where the keyspace is the reports): once raised,
        # an older release restarted refuses by itself (from 0.2.0 on), and a start need not scan
        # the keyspace for reports every time.
        older = await older_servers(reports) if held < SCHEMA_VERSION else None
        if older and held > 0:
            _judge_older_servers(older, oldest_beside)
        # What the store held as it raised: a newer server may have started meanwhile.
        raced = await schema.raise_to(SCHEMA_VERSION)
        _refuse_newer(raced)
        if older == [] and raced < SCHEMA_VERSION:
            # This start raised the store (or found it empty) with no older server beside it: the
            # logs created from now on are born walked (flows.born_walked), read at every start.
            await schema.mark_logs_born_walked()
    except StoreUnavailable:
        log.warning("redis not reachable at start-up; the schema version is checked at the next start")
        return -1
    if 0 < held < SCHEMA_VERSION:
        log.info("store schema version %d raised to %d (no record needed rewriting)", held, SCHEMA_VERSION)
    return held


async def refuse_newer_schema(schema: SchemaStore) -> None:
    """Refuses data newer than this release for a command on the store, writing nothing.

    Commands (keys, erasure, tenants, audit, backup) leave raising the version to the servers.

    Raises:
        ConfigError: the store holds a schema newer than this release knows.
        StoreUnavailable: Redis is down.
    """
    recorded = await schema.recorded()
    if recorded is not None:
        _refuse_newer(recorded)


async def older_servers(reports: ServerReports) -> list[ServerKeyring]:
    """The running servers of a release older than this one, by their reports, in instance order.

    Raises:
        StoreUnavailable: Redis is down.
    """
    older = [server for server in await reports.running() if server.schema < SCHEMA_VERSION]
    return sorted(older, key=lambda server: server.instance)


def _judge_older_servers(older: list[ServerKeyring], oldest_beside: int) -> None:
    """Refuses servers of a release older than ``oldest_beside`` among ``older``; logs the others.

    Raises:
        ConfigError: naming the servers and their schema versions.
    """
    named = ", ".join(f"{server.instance} (schema {server.schema})" for server in older)
    if any(server.schema < oldest_beside for server in older):
        msg = (
            f"servers of an older release still serve this Redis: {named}; this release (schema "
            f"{SCHEMA_VERSION}) cannot serve beside a release older than schema {oldest_beside}: "
            "stop them, then start this one"
        )
        raise ConfigError(msg)
    log.warning(
        "servers of an older release serve this Redis beside this one: %s; their requests follow "
        "their own release's rules until they are replaced (`idverify keys status` lists them)",
        named,
    )


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        msg = (
            f"Redis holds data of schema version {version}, newer than this release's "
            f"{SCHEMA_VERSION}: run a release that knows it (an older one cannot read it safely)"
        )
        raise ConfigError(msg)
