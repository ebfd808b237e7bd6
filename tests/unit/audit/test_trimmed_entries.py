"""Trimmed audit logs on a real Redis: entries leave it for their bundles and read back the same.

Each test builds the log as ``store.audit_logs.configured_audit_log`` does with
``audit_tiles_dir`` set (a ``TiledAuditLog`` over ``RedisAuditLog``, tiles in a temporary
directory), appends entries as the Lua prelude does, integrates and trims, then reads through
the one port every reader uses.
"""

from __future__ import annotations

import asyncio
import bisect
from pathlib import Path

import pytest

from idverify.audit.events import parse_entry
from idverify.audit.query import EventFilter
from idverify.audit.tile_mirror import SIZE_FILE, EntriesUnreadable, TileMirror, tenant_directory
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.audit.tiles import BundleId
from idverify.domain.errors import ConfigError, FailedPrecondition, StatusKind
from idverify.store.audit_logs import RedisAuditLog, configured_audit_log, refuse_trimmed_logs
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.outbox import RedisOutbox
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender

REQUEST = {"principal": "acme/registrar/c1", "request_id": "r", "trace_id": ""}


def tiled_log(redis: RedisClient, directory: Path, *, kept: int) -> TiledAuditLog:
    """The log a server with ``audit_tiles_dir`` builds (``configured_audit_log``), keeping ``kept``."""
    scripts = Scripts(redis)
    tiles = TileMirror(directory, AuditStore(redis, scripts))
    return TiledAuditLog(RedisAuditLog(redis, scripts, write_round=tiles.write_round), tiles, kept=kept)


async def append(redis: RedisClient, tenant: str, count: int, *, batches: int = 10) -> list[bytes]:
    """Appends ``count`` entries in ``batches`` calls a little apart (so their times differ); all entries."""
    appender = SyntheticAppender(redis)
    for batch in range(batches):
        events = [
            (
                REQUEST,
                {"type": "client.created" if n % 2 else "consent.granted", "outcome": "ok", "n": str(n)},
            )
            for n in range(batch * count // batches, (batch + 1) * count // batches)
        ]
        await appender.append(tenant, events)
        await asyncio.sleep(0.003)
    stored = await AuditStore(redis, Scripts(redis)).entries(tenant, range(count))
    assert all(entry is not None for entry in stored)
    return [entry for entry in stored if entry is not None]


async def integrated_and_trimmed(log: TiledAuditLog, tenant: str) -> int:
    await log.integrate(tenant)
    await log.idle()
    return await log.trim(tenant)


async def held_in_redis(redis: RedisClient, tenant: str) -> int:
    return int(await redis.hlen(TenantKeys(tenant).audit_log()))


class TestTrimmedReads:
    async def test_entries_below_the_trim_point_come_back_byte_identical_from_bundles(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """Every reader's port gives the same bytes, queries and time seeks as before the trim."""
        tenant = "trim-read"
        entries = await append(redis, tenant, 1300)
        log = tiled_log(redis, tmp_path, kept=300)
        await log.integrate(tenant)
        before = [r.leaf async for r in log.query(tenant, EventFilter(types=frozenset({"client.created"})))]
        assert await log.trim(tenant) == 1000
        assert await held_in_redis(redis, tenant) == 300
        assert await log.entries(tenant, range(1300)) == entries
        assert await log.entries(tenant, [1300, 5, -1]) == [None, entries[5], None]
        after = [r.leaf async for r in log.query(tenant, EventFilter(types=frozenset({"client.created"})))]
        assert after == before
        assert [r.leaf async for r in log.query(tenant, EventFilter())] == entries
        times = [parse_entry(entry).time_ms for entry in entries]
        sought = sorted({*times, times[0] - 1, times[-1] + 1})
        expected = [bisect.bisect_left(times, t) for t in sought]
        assert await log.seek_times(tenant, sought) == expected
        # A fresh process (no trim point cached) reads the same.
        assert await tiled_log(redis, tmp_path, kept=300).entries(tenant, range(1300)) == entries

    async def test_a_time_range_query_over_trimmed_entries_finds_them(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """A query bounded by times reads the bundles below the trim point and Redis above it."""
        tenant = "trim-range"
        entries = await append(redis, tenant, 900)
        log = tiled_log(redis, tmp_path, kept=100)
        assert await integrated_and_trimmed(log, tenant) == 800
        times = [parse_entry(entry).time_ms for entry in entries]
        start, end = times[150], times[850]
        found = [r.leaf async for r in log.query(tenant, EventFilter(start_ms=start, end_ms=end))]
        assert found == [e for e, t in zip(entries, times, strict=True) if start <= t < end]


class TestTrimPoint:
    async def test_a_point_redis_lost_is_read_again_before_entries_come_from_bundles(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """A failover that lost a trim: the new entries under its numbers, never the lost bundles'.

        The process saw the point before the loss (the promoted replica's keys restored here).
        """
        tenant = "trim-lost"
        keys = TenantKeys(tenant)
        kept = [keys.audit_log(), keys.audit_head(), keys.audit_tree_head()]
        log = tiled_log(redis, tmp_path, kept=4)
        await append(redis, tenant, 20, batches=1)
        assert await integrated_and_trimmed(log, tenant) == 16
        older = {key: await redis.dump(key) for key in kept}  # what the promoted replica holds
        await SyntheticAppender(redis).append(tenant, [(REQUEST, {"type": "t.lost"})] * 20)
        assert await integrated_and_trimmed(log, tenant) == 36
        assert [parse_entry(e).type for e in await log.entries(tenant, [20]) if e] == ["t.lost"]
        for key, value in older.items():
            await redis.restore(key, 0, value, replace=True)
        await SyntheticAppender(redis).append(tenant, [(REQUEST, {"type": "t.new"})] * 3)
        store = AuditStore(redis, Scripts(redis))
        assert await log.entries(tenant, range(16, 23)) == await store.entries(tenant, range(16, 23))
        assert [parse_entry(e).type for e in await log.entries(tenant, [20, 22]) if e] == ["t.new"] * 2
        assert await log.entries(tenant, [23, 30]) == [None, None]

    async def test_the_point_never_passes_the_integrated_tree(self, redis: RedisClient) -> None:
        """A trim asked past the tree stops at it: entries not integrated stay in Redis."""
        tenant = "trim-tree"
        await append(redis, tenant, 20, batches=1)
        store = AuditStore(redis, Scripts(redis))
        assert await store.trim(tenant, 10**9, 1024) == 0
        await RedisAuditLog(redis, Scripts(redis)).integrate(tenant)
        await SyntheticAppender(redis).append(tenant, [(REQUEST, {"type": "client.created"})] * 30)
        assert await store.trim(tenant, 10**9, 1024) == 20
        assert await store.trim(tenant, 5, 1024) == 20  # never back
        assert await held_in_redis(redis, tenant) == 30

    async def test_a_trim_deletes_a_bounded_batch_a_call(self, redis: RedisClient) -> None:
        """One call deletes at most its batch, and records the point it reached with them."""
        tenant = "trim-batch"
        await append(redis, tenant, 500, batches=1)
        await RedisAuditLog(redis, Scripts(redis)).integrate(tenant)
        store = AuditStore(redis, Scripts(redis))
        assert await store.trim(tenant, 400, 128) == 128
        assert await store.trimmed(tenant) == 128
        assert await held_in_redis(redis, tenant) == 500 - 128

    async def test_only_what_the_size_file_counts_is_trimmed(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """A crash after the bundles but before their size file: the entries stay in Redis."""
        tenant = "trim-size-file"
        log = tiled_log(redis, tmp_path, kept=10**6)
        await append(redis, tenant, 300)
        await log.integrate(tenant)
        await SyntheticAppender(redis).append(tenant, [(REQUEST, {"type": "client.created"})] * 300)
        await log.integrate(tenant)
        await log.idle()
        # The second round's bundles and tiles are written, its size file is not.
        (tmp_path / tenant_directory(tenant) / SIZE_FILE).write_text("300\n")
        restarted = tiled_log(redis, tmp_path, kept=0)
        assert await restarted.trim(tenant) == 300
        assert await held_in_redis(redis, tenant) == 300

    async def test_a_trim_cut_between_batches_is_finished_by_the_next(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """A process dying between two batches leaves a consistent point; a restart goes on."""
        tenant = "trim-crash"
        entries = await append(redis, tenant, 1000)
        log = tiled_log(redis, tmp_path, kept=10**6)
        await log.integrate(tenant)
        await log.idle()
        store = AuditStore(redis, Scripts(redis))
        assert await store.trim(tenant, 1000, 100) == 100  # the one batch before the crash
        assert await tiled_log(redis, tmp_path, kept=0).entries(tenant, range(1000)) == entries
        assert await tiled_log(redis, tmp_path, kept=0).trim(tenant) == 1000
        assert await held_in_redis(redis, tenant) == 0
        assert await tiled_log(redis, tmp_path, kept=0).entries(tenant, range(1000)) == entries

    async def test_two_workers_trimming_at_once_agree(self, redis: RedisClient, tmp_path: Path) -> None:
        """Workers racing trims of one log end at one point, every entry still readable."""
        tenant = "trim-race"
        entries = await append(redis, tenant, 3000)
        workers = [tiled_log(redis, tmp_path, kept=10) for _ in range(3)]
        await workers[0].integrate(tenant)
        await workers[0].idle()
        points = await asyncio.gather(*(worker.trim(tenant) for worker in workers))
        assert max(points) == 2990
        assert await AuditStore(redis, Scripts(redis)).trimmed(tenant) == 2990
        for worker in workers:
            assert await worker.entries(tenant, range(3000)) == entries

    async def test_the_integration_trims_in_the_background(self, redis: RedisClient, tmp_path: Path) -> None:
        """Each integration starts a trim of what its rounds made durable."""
        tenant = "trim-integrate"
        await append(redis, tenant, 700)
        log = tiled_log(redis, tmp_path, kept=200)
        await log.integrate(tenant)
        await log.idle()
        assert await AuditStore(redis, Scripts(redis)).trimmed(tenant) == 500


async def test_an_event_reader_behind_the_kept_entries_gets_them_from_bundles(
    redis: RedisClient, tmp_path: Path
) -> None:
    """Outbox records whose entries were trimmed still carry their entries' bytes."""
    tenant = "trim-outbox"
    entries = await append(redis, tenant, 600)
    log = tiled_log(redis, tmp_path, kept=0)
    assert await integrated_and_trimmed(log, tenant) == 600
    records = await RedisOutbox(redis, Scripts(redis), log=log).records(tenant, "", 1000)
    events = [entry for entry in entries if parse_entry(entry).type == "consent.granted"]
    assert [record.entry for record in records] == events
    unaware = await RedisOutbox(redis, Scripts(redis)).records(tenant, "", 1000)
    assert all(record.entry is None for record in unaware)


class TestAbuse:
    async def test_a_thief_with_a_redis_dump_finds_only_the_recent_entries(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """What a copy of Redis holds of the log is the kept window and what is not integrated."""
        tenant = "trim-thief"
        entries = await append(redis, tenant, 2000)
        log = tiled_log(redis, tmp_path, kept=64)
        await integrated_and_trimmed(log, tenant)
        held = await redis.hgetall(TenantKeys(tenant).audit_log())
        assert len(held) == 64
        assert set(held.values()) == set(entries[-64:])

    @pytest.mark.parametrize("damage", ["deleted", "altered", "truncated"])
    async def test_a_damaged_bundle_is_refused_precisely(
        self, redis: RedisClient, tmp_path: Path, damage: str
    ) -> None:
        """A bundle deleted, altered or cut short answers FAILED_PRECONDITION, never other bytes."""
        tenant = f"trim-damage-{damage}"
        entries = await append(redis, tenant, 600)
        log = tiled_log(redis, tmp_path, kept=0)
        assert await integrated_and_trimmed(log, tenant) == 600
        bundle = tmp_path / tenant_directory(tenant) / BundleId(0, 256).path
        data = bundle.read_bytes()
        if damage == "deleted":
            bundle.unlink()
        elif damage == "altered":
            at = data.index(b'"n":"7"')
            bundle.write_bytes(data[:at] + b'"n":"8"' + data[at + 7 :])
        else:
            bundle.write_bytes(data[:-10])
        fresh = tiled_log(redis, tmp_path, kept=0)
        with pytest.raises(EntriesUnreadable) as raised:
            await fresh.entries(tenant, [7])
        assert raised.value.status is StatusKind.FAILED_PRECONDITION
        assert raised.value.reason == "AUDIT_ENTRIES_UNREADABLE"
        assert tenant in raised.value.message
        # Entries of the other bundles are still served.
        assert await fresh.entries(tenant, [300, 599]) == [entries[300], entries[599]]

    async def test_stopped_tiles_refuse_trimmed_entries(self, redis: RedisClient, tmp_path: Path) -> None:
        """Tiles refused by the first look (another timeline) give no trimmed entry, precisely."""
        tenant = "trim-refused"
        await append(redis, tenant, 300)
        log = tiled_log(redis, tmp_path, kept=0)
        assert await integrated_and_trimmed(log, tenant) == 300
        # A tile of another timeline at the head (tiles merely ahead of it are normal now).
        tile = tmp_path / tenant_directory(tenant) / "tile/0/001.p/44"
        tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
        with pytest.raises(EntriesUnreadable, match="stopped or refused"):
            await tiled_log(redis, tmp_path, kept=0).entries(tenant, [0])


async def test_a_server_without_tiles_refuses_trimmed_logs(own_client: RedisClient, tmp_path: Path) -> None:
    """A careless operator dropping audit_tiles_dir is told which logs need it, in one line."""
    await refuse_trimmed_logs(own_client, "")
    await append(own_client, "acme", 300, batches=1)
    log = tiled_log(own_client, tmp_path, kept=0)
    assert await integrated_and_trimmed(log, "acme") == 300
    await refuse_trimmed_logs(own_client, str(tmp_path))
    with pytest.raises(ConfigError, match="audit logs of acme keep their older entries in audit tiles alone"):
        await refuse_trimmed_logs(own_client, "")


async def test_a_process_without_tiles_refuses_trimmed_entries_precisely(
    redis: RedisClient, tmp_path: Path
) -> None:
    """Started while Redis was away (no start-up check), it answers AUDIT_ENTRIES_UNREADABLE, never less."""
    tenant = "trim-untiled"
    entries = await append(redis, tenant, 400)
    assert await integrated_and_trimmed(tiled_log(redis, tmp_path, kept=100), tenant) == 300
    untiled = configured_audit_log(redis, Scripts(redis), "")
    assert await untiled.entries(tenant, [300, 399]) == [entries[300], entries[399]]
    with pytest.raises(EntriesUnreadable, match="no audit_tiles_dir"):
        await untiled.entries(tenant, [0])
    with pytest.raises(FailedPrecondition):  # TreeInTiles: its tree is in tiles too
        [r async for r in untiled.query(tenant, EventFilter())]
    with pytest.raises(EntriesUnreadable):
        await untiled.seek_times(tenant, [0])
