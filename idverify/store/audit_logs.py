"""The tenants' audit logs in Redis, for ``flows.audit``.

``flows.audit`` decides (which tenant a caller reads, which positions exist, when a head is
signed afresh); this adapter answers its port over ``store.audit_store.AuditStore`` (the log's
hashes, its chunked tree strings and ``audit_nodes.lua``, ``audit_head.lua``), the integrator
that folds entries into the tree (``audit_integrate.lua``), and the paged queries over the
index postings (``audit.query``). With ``audit_tiles_dir`` or ``audit_tiles_url`` set the
integrator writes each round's tiles first and Redis keeps no node (``audit.tile_mirror``); without
them, a log whose tree is kept in tiles is refused (``TreeInTiles``, FAILED_PRECONDITION naming
the settings).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from idverify.audit.integrator import RoundWriter, TreeIntegrator
from idverify.audit.query import EventFilter, QueryResult, run_query
from idverify.audit.tile_mirror import EntriesUnreadable, TileMirror
from idverify.audit.tile_volume import DirectoryVolume, TileVolume
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.audit.tree_state import TreeInTiles, TreeState
from idverify.audit.trimmed_entries import TrimmedEntries
from idverify.config import Settings
from idverify.data_dir import prepare_tiles_dir
from idverify.domain.errors import ConfigError
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys
from idverify.store.scripts import Scripts

if TYPE_CHECKING:
    from idverify.audit.bucket_tiles import BucketVolume

__all__ = [
    "RedisAuditLog",
    "UntiledAuditLog",
    "check_tiles_bucket",
    "configured_audit_log",
    "configured_tiles",
    "opened_tiles",
    "refuse_trimmed_logs",
]


class RedisAuditLog(AuditStore):
    """``flows.audit.AuditLog`` over Redis: an ``AuditStore``, integrated and queried.

    The store answers the port's reads and its signed head; the integrator's rounds run over it
    (writing the tiles first, given ``write_round``) and the paged queries over its postings.

    Every method may raise StoreUnavailable when Redis cannot be reached, and, without
    ``write_round``, TreeInTiles for a log whose tree is kept in tiles.
    """

    def __init__(
        self, redis: RedisClient, scripts: Scripts, *, write_round: RoundWriter | None = None
    ) -> None:
        super().__init__(redis, scripts)
        self._tiled = write_round is not None
        self._integrator = TreeIntegrator(self, write_round=write_round)

    async def tree_state(self, tenant: str) -> TreeState:
        """The stored tree; refused when it is kept in tiles and this log has none."""
        state = await super().tree_state(tenant)
        if state.tiled and not self._tiled:
            raise TreeInTiles.of(tenant)
        return state

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        """The integrator's round(s), ``audit_integrate.lua`` writing each."""
        return await self._integrator.integrate(tenant, up_to=up_to)

    async def query(self, tenant: str, query: EventFilter) -> AsyncIterator[QueryResult]:
        """``audit.query.run_query`` over the postings (refused as ``tree_state`` is)."""
        if not self._tiled:
            await self.tree_state(tenant)  # no entry is answered as "not integrated" that is
        async for result in run_query(self, tenant, query):
            yield result


class UntiledAuditLog(RedisAuditLog):
    """The log of a process without ``audit_tiles_dir``: a trimmed entry is refused, never missing.

    Such a process refuses to start over trimmed logs (:func:`refuse_trimmed_logs`); this is
    for one that started while Redis was away, or a log trimmed by a replica with tiles since:
    reads and time seeks that reach below a trim point answer ``AUDIT_ENTRIES_UNREADABLE``
    rather than an entry missing (INTERNAL) or a query silently cut short.
    """

    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        super().__init__(redis, scripts)
        self._through_trim = TrimmedEntries(AuditStore(redis, scripts), _NoTiles())

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """Redis's; ``EntriesUnreadable`` for an entry below the trim point."""
        return await self._through_trim.entries(tenant, indices)

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """Redis's; ``EntriesUnreadable`` for a time at or below the trim point."""
        return await self._through_trim.seek_times(tenant, times_ms)


class _NoTiles:
    """The bundles of a process without ``audit_tiles_dir``: none to read, none to trim."""

    async def durable_size(self, tenant: str) -> int:
        del tenant
        return 0

    async def read_entries(self, tenant: str, indices: Sequence[int], trimmed: int) -> list[bytes]:
        del indices
        raise EntriesUnreadable(
            f"audit entries of {tenant} below {trimmed} are kept in audit tiles alone, "
            "and this process has no audit_tiles_dir"
        )


def configured_tiles(settings: Settings) -> TileVolume | None:
    """The volume ``audit_tiles_dir`` or ``audit_tiles_url`` names (None: neither is set).

    A bucket's client opens on first use; ``audit.bucket_tiles.check_write_once`` is start-up's
    check of it.

    Raises:
        ConfigError: when the tiles directory cannot be made or written.
    """
    if settings.audit_tiles_url:
        from idverify.audit.bucket_tiles import BucketLocation, BucketVolume  # noqa: PLC0415

        if importlib.util.find_spec("aiobotocore") is None:
            raise ConfigError(
                "audit_tiles_url: needs the s3 extra (pip install 'idverify[s3]'); the image has it"
            )
        return BucketVolume(
            BucketLocation.parse(settings.audit_tiles_url),
            endpoint=settings.audit_tiles_s3_endpoint,
            region=settings.audit_tiles_s3_region,
        )
    if settings.audit_tiles_dir:
        prepare_tiles_dir(settings.audit_tiles_dir)
        return DirectoryVolume(Path(settings.audit_tiles_dir))
    return None


async def check_tiles_bucket(settings: Settings) -> None:
    """Start-up's check of ``audit_tiles_url``: reached, and refusing to replace an object.

    Raises:
        ConfigError: in one line, naming the setting: the bucket cannot be reached or refused
            the probe (the store's code), or it ignores ``If-None-Match: *``.
    """
    if not settings.audit_tiles_url:
        return
    from idverify.audit.bucket_tiles import BucketUnavailable, check_write_once  # noqa: PLC0415

    async with opened_tiles(settings) as tiles:
        try:
            await check_write_once(cast("BucketVolume", tiles))
        except BucketUnavailable as error:
            raise ConfigError(f"audit_tiles_url: {error}") from None
        except ValueError as error:
            raise ConfigError(f"audit_tiles_url: {error}") from None


@contextlib.asynccontextmanager
async def opened_tiles(settings: Settings) -> AsyncIterator[TileVolume | None]:
    """``configured_tiles`` for one command: a bucket's client is closed at the end."""
    tiles = configured_tiles(settings)
    try:
        yield tiles
    finally:
        close = getattr(tiles, "aclose", None)  # a bucket's client; a directory holds nothing
        if close is not None:
            await close()


def configured_audit_log(
    redis: RedisClient, scripts: Scripts, tiles: TileVolume | str | None
) -> RedisAuditLog | TiledAuditLog:
    """The tenants' logs in Redis, and in ``tiles`` too when given (a volume, or a directory).

    The server and ``idverify tenants remove`` both build their logs here (``configured_tiles``),
    so every process that integrates a log writes its tiles.

    Raises:
        ConfigError: when a tiles directory cannot be made or written.
    """
    if not tiles:
        return UntiledAuditLog(redis, scripts)
    if isinstance(tiles, str):
        prepare_tiles_dir(tiles)
    volume = DirectoryVolume(Path(tiles)) if isinstance(tiles, str) else tiles
    mirror = TileMirror(volume, AuditStore(redis, scripts))
    return TiledAuditLog(RedisAuditLog(redis, scripts, write_round=mirror.write_round), mirror)


async def refuse_trimmed_logs(redis: RedisClient, tiles: TileVolume | str | None) -> None:
    """Refuses to serve trimmed logs without their tiles (neither tiles setting set).

    A trimmed log keeps its older entries in the entry bundles alone
    (``audit.trimmed_entries``): read from Redis alone, every export, query and backup of it
    would find entries missing. The trims list each tenant (``AuditStore.mark_trimmed``)
    before their first deletion, so one read here finds them all.

    Raises:
        ConfigError: ``tiles`` is empty and some tenant's log is trimmed.
        StoreUnavailable: when Redis cannot be reached.
    """
    if tiles:
        return
    async with translate_errors():
        tenants = sorted(as_text(member) for member in await redis.smembers(GlobalKeys.TRIMMED_AUDIT_LOGS))
    if tenants:
        raise ConfigError(
            f"audit_tiles_dir: the audit logs of {', '.join(tenants)} keep their older entries in "
            "audit tiles alone; set audit_tiles_dir (or audit_tiles_url) to where they are"
        )
