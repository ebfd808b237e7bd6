"""``idverify migrate legacy``: what older servers left that makes a step reach a second family, moved once.

Two kinds of data older servers wrote make this release's steps cross a bucket they are not in
(docs/ARCHITECTURE.md, "Buckets: the plan", §1 and §6): an identity's member 0.1.0 bound, which
has no ``m:`` field (the place step reads its account's tag), and the ``events:acct`` map builds of
main kept the accounts' event ids in (every entry with an outbox record falls back to it, an
erasure empties its field). Every step moves such data on touch; this walk moves the rest of a
tenant's, online, in three steps of the tenant's slot:

1. the identity records, a ``SCAN`` page at a time (``legacy_members.lua``);
2. the accounts, likewise, only while the map exists (``legacy_event_ids.lua``);
3. the map's leftovers deleted with it, and the log's head marked (``legacy_done.lua``), after
   which the tenant's steps no longer touch the map.

A log created by a process that found no older server reporting in is born with the mark
(``flows.born_walked``; its value :data:`BORN_MARK`, the walk's ``1``): its tenant counts as walked.

Each page's script writes its counts and the cursor after it into the run's record
(``TenantKeys.legacy_move``), so a walk killed anywhere resumes after its last page and counts
nothing twice. On Redis Cluster a scan cannot be resumed (``store.scan``) and starts over, which
writes nothing twice either: a page writes only what is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scan import scan_pages
from idverify.store.scripts import Scripts

__all__ = ["BORN_MARK", "LegacyCheck", "LegacyCounts", "LegacyState", "RedisLegacyMove"]

_PAGE = 256
"""Records a page: one script holds the tenant's slot for about a millisecond."""
_MEMBER_FIELD = "m:"
_MARK_FIELD = "legacy_moved"
BORN_MARK = "born"
"""The head's mark in a log born walked (``_prelude.lua``'s ``LEGACY_BORN``); the walk writes ``1``."""


class LegacyState(StrEnum):
    """Whether a tenant's steps still read the legacy map, by its log's head."""

    NO_LOG = "no log"
    """Nothing written yet: its first entry decides."""
    NOT_WALKED = "not walked"
    """The head is unmarked: ``migrate legacy`` has yet to walk it."""
    WALKED = "walked"
    """``migrate legacy`` marked it."""
    BORN_WALKED = "born walked"
    """Its log was created marked, with no older server reporting in: nothing to walk."""


class _Phase(StrEnum):
    MEMBERS = "members"
    EVENT_IDS = "event_ids"
    FINISH = "finish"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class LegacyCounts:
    """What one run wrote in a tenant, over its kills and resumptions."""

    records: int
    """Identity records read (a record the scan returned twice counts twice)."""
    fields_written: int
    """Members given their ``m:`` field."""
    in_motion: int
    """Records left to a re-indexing in flight: a later run writes what their members lack."""
    ids_moved: int
    """Account ids moved from the legacy map into their accounts."""
    ids_dropped: int
    """Map fields deleted without a move: the account held its own id, or no account is theirs."""
    resumed: bool
    """Whether the run went on from a killed one's checkpoint."""

    @property
    def changed(self) -> bool:
        """Whether the run wrote anything."""
        return self.fields_written + self.ids_moved + self.ids_dropped > 0

    def as_json(self) -> dict[str, int | bool]:
        """The counts as ``--json`` prints them."""
        return {
            "records": self.records,
            "fields_written": self.fields_written,
            "in_motion": self.in_motion,
            "ids_moved": self.ids_moved,
            "ids_dropped": self.ids_dropped,
            "resumed": self.resumed,
        }


@dataclass(frozen=True, slots=True)
class LegacyCheck:
    """A tenant's state as ``--verify`` reads it, writing nothing."""

    records: int
    members: int
    members_without_field: int
    map_fields: int
    """Fields of the legacy ``events:acct`` map still there."""
    head_marked: bool
    """Whether the log's head tells the steps the map is gone."""
    born: bool = False
    """Whether the mark was written with the log's first entry (born walked), not by a walk."""

    @property
    def ok(self) -> bool:
        """No member without its field, no map left, the head marked."""
        return self.members_without_field == 0 and self.map_fields == 0 and self.head_marked

    def as_json(self) -> dict[str, int | bool]:
        """The check as ``--json`` prints it."""
        return {
            "ok": self.ok,
            "records": self.records,
            "members": self.members,
            "members_without_field": self.members_without_field,
            "map_fields": self.map_fields,
            "head_marked": self.head_marked,
            "born_walked": self.born,
        }


class RedisLegacyMove:
    """The walk over one Redis client; every method may raise StoreUnavailable."""

    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def run(self, tenant: str, progress: Callable[[int], None]) -> LegacyCounts:
        """Moves the tenant's legacy data, from the checkpoint of a run killed before, if any.

        ``progress`` is given the records and accounts read so far.
        """
        keys = TenantKeys(tenant)
        run = keys.legacy_move()
        phase, cursor, resumed = await self._begin(keys)
        read = 0
        if phase is _Phase.MEMBERS:
            async for after, page, last in _pages(self._redis, keys.identity("*"), cursor):
                refs = _refs(keys, page)
                pairs = [k for ref in refs for k in (keys.identity(ref), keys.identity_accounts(ref))]
                then = _Phase.EVENT_IDS if last else _Phase.MEMBERS
                await self._scripts.run("legacy_members", [run, *pairs], [after, then.value])
                read += len(page)
                progress(read)
            phase, cursor = _Phase.EVENT_IDS, 0
        if phase is _Phase.EVENT_IDS:
            async with translate_errors():
                holds_map = bool(await self._redis.exists(keys.events_accounts()))
            if holds_map:
                async for after, page, last in _pages(self._redis, keys.account("*"), cursor):
                    accounts = [as_text(key) for key in page]
                    ahead = _Phase.FINISH if last else _Phase.EVENT_IDS
                    await self._scripts.run(
                        "legacy_event_ids", [run, keys.events_accounts(), *accounts], [after, ahead.value]
                    )
                    read += len(page)
                    progress(read)
        await self._scripts.run("legacy_done", [run, keys.events_accounts(), keys.audit_head()], [])
        return _counts(await self._record(keys), resumed=resumed)

    async def check(self, tenant: str, progress: Callable[[int], None]) -> LegacyCheck:
        """The tenant's identity records and legacy map as they are now, read a page at a time."""
        keys = TenantKeys(tenant)
        records = members = without = read = 0
        async for _, page in scan_pages(self._redis, keys.identity("*"), count=_PAGE):
            async with translate_errors():
                pipe = self._redis.pipeline(transaction=False)
                for key in page:
                    pipe.hkeys(key)
                    pipe.smembers(keys.identity_accounts(as_text(key).removeprefix(keys.identity(""))))
                replies: list[Any] = await pipe.execute()
            for fields, listed in zip(replies[::2], replies[1::2], strict=True):
                if not fields:
                    continue  # gone between the scan and the read
                records += 1
                names = (as_text(field) for field in fields)
                has_field = {
                    name.removeprefix(_MEMBER_FIELD) for name in names if name.startswith(_MEMBER_FIELD)
                }
                bound = {as_text(m) for m in listed}
                members += len(bound)
                without += len(bound - has_field)
            read += len(page)
            progress(read)
        async with translate_errors():
            map_fields = int(await self._redis.hlen(keys.events_accounts()))
        state = await self.state(tenant)
        marked = state in (LegacyState.WALKED, LegacyState.BORN_WALKED)
        return LegacyCheck(
            records, members, without, map_fields, marked, born=state is LegacyState.BORN_WALKED
        )

    async def state(self, tenant: str) -> LegacyState:
        """The tenant's log head's mark, one read."""
        async with translate_errors():
            size, mark = await self._redis.hmget(TenantKeys(tenant).audit_head(), ["size", _MARK_FIELD])
        if mark is not None:
            return LegacyState.BORN_WALKED if as_text(mark) == BORN_MARK else LegacyState.WALKED
        return LegacyState.NOT_WALKED if size is not None else LegacyState.NO_LOG

    async def _begin(self, keys: TenantKeys) -> tuple[_Phase, int, bool]:
        """The phase and cursor to go on from: a killed run's, else a new run's (its counts at zero)."""
        record = await self._record(keys)
        phase = record.get("phase", "")
        if phase in (_Phase.MEMBERS, _Phase.EVENT_IDS, _Phase.FINISH):
            return _Phase(phase), int(record.get("cursor", "0")), True
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(keys.legacy_move())
            pipe.hset(keys.legacy_move(), mapping={"phase": _Phase.MEMBERS.value, "cursor": "0"})
            await pipe.execute()
        return _Phase.MEMBERS, 0, False

    async def _record(self, keys: TenantKeys) -> dict[str, str]:
        async with translate_errors():
            raw = await self._redis.hgetall(keys.legacy_move())
        return {as_text(k): as_text(v) for k, v in raw.items()}


async def _pages(
    redis: RedisClient, pattern: str, cursor: int
) -> AsyncIterator[tuple[int, list[bytes], bool]]:
    """``scan_pages`` from ``cursor``, each page told whether it is the last.

    The cursor cannot say it on Cluster, where it is always 0 (``store.scan``), so the last page is
    the one the walk ends after.
    """
    held: tuple[int, list[bytes]] | None = None
    async for after, page in scan_pages(redis, pattern, cursor=cursor, count=_PAGE):
        if held is not None:
            yield held[0], held[1], False
        held = (after, page)
    if held is not None:
        yield held[0], held[1], True


def _refs(keys: TenantKeys, page: list[bytes]) -> list[str]:
    """The identity refs of a page of ``id:*`` keys."""
    prefix = keys.identity("")
    return [as_text(key).removeprefix(prefix) for key in page]


def _counts(record: dict[str, str], *, resumed: bool) -> LegacyCounts:
    def number(field: str) -> int:
        return int(record.get(field, "0"))

    return LegacyCounts(
        records=number("records"),
        fields_written=number("fields_written"),
        in_motion=number("in_motion"),
        ids_moved=number("ids_moved"),
        ids_dropped=number("ids_dropped"),
        resumed=resumed,
    )
