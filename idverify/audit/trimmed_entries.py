"""A tiled log's entries read from one place: Redis at and above its trim point, bundles below it.

With ``audit_tiles_dir`` set, an integrated entry that the entry bundles hold durably (counted
by the tiles' size file, within Redis's integrated tree) leaves Redis's ``audit:log`` hash
(issue 26): :meth:`TrimmedEntries.trim` moves the log's trim point (``audit:head`` field
``trimmed``) forward with ``audit_trim.lua``, which deletes at most a batch a call and records
how far it got in the same step, so a crash between calls leaves the point where the deletions
stand and any worker's next trim goes on from there. The point stays ``KEPT`` entries behind the
bundles' size: the readers of recent entries (events, webhooks, the console's newest page, a
head's new entries) stay on one Redis read.

Every reader of entries goes through :meth:`TrimmedEntries.entries`: one ``HMGET`` as before,
then, for what Redis no longer holds, the trim point, then the bundles below it, each entry
checked against its leaf in the level-0 tile (``TileMirror.read_entries``). The order matters:
the trim script deletes and moves the point in one step, so an entry found missing is below
the point read after it. A point seen before is asked of Redis again before entries below it
are taken from the bundles: a failover or a restore that lost a trim moves it back, and the
entries above it are then Redis's, whose numbers new entries may have taken with other bytes.
Time seeks (``audit_seek.lua``) search Redis from the trim point up; when a time falls at or
below it, the bundles are searched by their first entries' times (a few bundle reads; no index
of times is kept, so trimming adds nothing to Redis). Index postings stay in Redis for now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from idverify.audit.events import EntryFormatError, parse_entry
from idverify.audit.tiles import TILE_WIDTH
from idverify.domain.errors import IdverifyError

__all__ = ["KEPT", "TRIM_BATCH", "BundledEntries", "RecentSeek", "TrimmableLog", "TrimmedEntries"]

KEPT = 4096
"""Durable entries left in Redis behind the bundles' size (16 bundles; about 1.5 MB a tenant).

Enough for the readers of the newest entries (an event stream or a webhook a little behind, the
console's first page, a head's new entries) to stay on one Redis read; a reader further back
reads the bundles, correctly and a little slower.
"""

TRIM_BATCH = 1024
"""Entries one ``audit_trim.lua`` call deletes at most: well under a millisecond of Redis."""

log = logging.getLogger("idverify.audit")


@dataclass(frozen=True, slots=True)
class RecentSeek:
    """Where times fall among the entries Redis holds (``audit_seek.lua`` ``time``).

    Attributes:
        trimmed: the trim point the search began at (entries below it are in the bundles alone).
        indices: per time, the first entry at or above ``trimmed`` at or after it; an index equal
            to a ``trimmed`` above 0 may be too high, the bundles below it not searched.
    """

    trimmed: int
    indices: list[int]


class TrimmableLog(Protocol):
    """The log of record's side of a trim (``store.audit_store.AuditStore``, ``MemoryAuditLog``)."""

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes it still holds, in order; None where it holds none."""
        ...

    async def trimmed(self, tenant: str) -> int:
        """The trim point: entries below it are held by the bundles alone."""
        ...

    async def trim(self, tenant: str, target: int, batch: int) -> int:
        """Drops up to ``batch`` entries below ``target`` and the integrated tree; the point after."""
        ...

    async def mark_trimmed(self, tenant: str) -> None:
        """Lists the tenant's log as trimmed (a server without tiles then refuses to start)."""
        ...

    async def seek_recent_times(self, tenant: str, times_ms: Sequence[int]) -> RecentSeek:
        """Time seeks among the entries at and above the trim point."""
        ...


class BundledEntries(Protocol):
    """The tiles' side (``audit.tile_mirror.TileMirror``)."""

    async def durable_size(self, tenant: str) -> int:
        """Entries the bundles hold durably, vouched for against the log (0: none, or stopped)."""
        ...

    async def read_entries(self, tenant: str, indices: Sequence[int], trimmed: int) -> list[bytes]:
        """Entries below the trim point, checked (``EntriesUnreadable`` otherwise)."""
        ...


class TrimmedEntries:
    """Every tenant's entries over Redis and the bundles, and the trims that move them."""

    def __init__(
        self, log: TrimmableLog, bundles: BundledEntries, *, kept: int = KEPT, batch: int = TRIM_BATCH
    ) -> None:
        self._log = log
        self._bundles = bundles
        self._kept = kept
        self._batch = batch
        # The trim point last seen per tenant: entries below it are not asked of Redis's hash.
        self._trimmed: dict[str, int] = {}
        self._marked: set[str] = set()
        self._trims: dict[str, asyncio.Task[None]] = {}

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The entries' bytes, in order; None where the log has none.

        Raises:
            EntriesUnreadable: an entry below the trim point cannot be read whole from its bundle.
            StoreUnavailable: when Redis cannot be reached.
        """
        known = self._trimmed.get(tenant, 0)
        if any(index < known for index in indices):
            # The point holds only while Redis keeps it: a failover that lost a trim moved it
            # back, and the entries above it then are Redis's, not the bundles' (issue 26).
            known = await self._trim_point(tenant)
        recent = [index for index in indices if index >= known]
        found: dict[int, bytes | None] = dict(
            zip(recent, await self._log.entries(tenant, recent), strict=True)
        )
        missing = sorted({index for index in indices if found.get(index) is None and index >= 0})
        if missing:
            trimmed = await self._trim_point(tenant) if missing[-1] >= known else known
            below = [index for index in missing if index < trimmed]
            if below:
                read = await self._bundles.read_entries(tenant, below, trimmed)
                found.update(zip(below, read, strict=True))
        return [found.get(index) for index in indices]

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """For each time, the index of the first entry at or after it (the size if none).

        Raises:
            EntriesUnreadable: a bundle searched cannot be read whole.
            EntryFormatError: an entry searched does not decode.
            StoreUnavailable: when Redis cannot be reached.
        """
        seek = await self._log.seek_recent_times(tenant, times_ms)
        self._trimmed[tenant] = seek.trimmed
        return [
            await self._seek_bundles(tenant, time_ms, seek.trimmed)
            if index == seek.trimmed and seek.trimmed
            else index
            for time_ms, index in zip(times_ms, seek.indices, strict=True)
        ]

    async def _seek_bundles(self, tenant: str, time_ms: int, end: int) -> int:
        """The first entry below ``end`` at or after ``time_ms`` (``end`` if none): bundles first."""
        low, high = 0, (end + TILE_WIDTH - 1) // TILE_WIDTH
        while low < high:  # the first bundle whose first entry is at or after the time
            middle = (low + high) // 2
            if await self._time_of(tenant, middle * TILE_WIDTH) < time_ms:
                low = middle + 1
            else:
                high = middle
        if low == 0:
            return 0
        first = (low - 1) * TILE_WIDTH
        last = min(low * TILE_WIDTH, end)
        entries = await self.entries(tenant, range(first, last))
        for index, entry in zip(range(first, last), entries, strict=True):
            if _time_of(index, entry) >= time_ms:
                return index
        return last

    async def _time_of(self, tenant: str, index: int) -> int:
        (entry,) = await self.entries(tenant, [index])
        return _time_of(index, entry)

    async def _trim_point(self, tenant: str) -> int:
        trimmed = await self._log.trimmed(tenant)
        self._trimmed[tenant] = trimmed
        return trimmed

    async def trim(self, tenant: str, integrated: int) -> int:
        """Drops from Redis the entries the bundles hold durably, less the newest ``kept``.

        Calls ``audit_trim.lua`` a batch at a time until the point reaches its target; safe to
        run in every worker at once (each call starts from the point as stored).

        Returns:
            The trim point afterwards.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        durable = await self._bundles.durable_size(tenant)
        target = min(durable, integrated) - self._kept
        trimmed = self._trimmed.get(tenant, 0)
        if target <= trimmed:
            return trimmed
        if tenant not in self._marked:
            await self._log.mark_trimmed(tenant)
            self._marked.add(tenant)
        while trimmed < target:
            moved = await self._log.trim(tenant, target, self._batch)
            if moved <= trimmed:
                break  # another worker trimmed as far, or the target is past Redis's tree
            trimmed = moved
            self._trimmed[tenant] = max(moved, self._trimmed.get(tenant, 0))
        return trimmed

    def keep_trimming(self, tenant: str, integrated: int) -> None:
        """Starts a trim of the tenant's log in the background unless one is running."""
        running = self._trims.get(tenant)
        if running is None or running.done():
            self._trims[tenant] = asyncio.create_task(self._trim_logged(tenant, integrated))

    async def idle(self) -> None:
        """Waits for every trim running to end."""
        await asyncio.gather(*self._trims.values())

    async def _trim_logged(self, tenant: str, integrated: int) -> None:
        try:
            await self.trim(tenant, integrated)
        except IdverifyError as error:  # Redis away: the next integration trims again
            log.warning("audit entries of %s not trimmed yet: %s", tenant, error)


def _time_of(index: int, entry: bytes | None) -> int:
    if entry is None:
        raise EntryFormatError(f"audit entry {index} is missing")
    return parse_entry(entry).time_ms
