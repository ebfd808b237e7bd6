"""A Sentinel failover that loses an integrated round of a log kept in tiles.

Replication is asynchronous: a primary killed with -9 may take with it writes its replica never
got, an integration round's head among them, whose tiles are already on the shared volume. The
promoted replica's log is then shorter than the tiles, and the entries appended next take the
lost ones' numbers with other bytes. This runs that on real processes (a primary, a replica and
a sentinel), with the loss made certain: the replica is stopped (SIGSTOP) and its link cut
before the round, then the primary killed. A process that stays up through the failover (its
caches too) and one started after it must serve the new timeline's entries and proofs only,
grow the tree until a file of the old timeline stops it loudly, and go on once the operator
sets the old files aside (``idverify audit set-aside-tiles``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from idverify.audit import merkle
from idverify.audit.tile_mirror import SIZE_FILE, EntriesUnreadable, TilesStopped
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.domain.errors import StoreUnavailable
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, connect
from idverify.store.local_topologies import LocalSentinel
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender

from .conftest import set_aside_tiles, tiled_audit_log

pytestmark = pytest.mark.slow
TENANT = "failover-tiles"
KEPT = 8  # entries a trim leaves in Redis: small, so the lost round moves the trim point too
T = TypeVar("T")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    """A fresh primary + replica + sentinel (the failover changes their roles)."""
    with LocalSentinel(tmp_path / "sentinel", replicas=1, sentinels=1) as setup:
        yield setup


async def served(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` once the client finds the new primary (it fails as unavailable until then)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def append(client: RedisClient, count: int, label: str) -> int:
    """``count`` entries whose bytes say which timeline wrote them; the log's size after."""
    events = [
        ({"principal": f"{TENANT}/test", "request_id": f"{label}-{n}"}, {"type": "t.x"}) for n in range(count)
    ]
    return await SyntheticAppender(client).append(TENANT, events)


async def fresh_entries(tiles: Path, client: RedisClient) -> list[bytes]:
    """The integrated entries as a process started now reads them."""
    log = tiled_audit_log(client, tiles, kept=KEPT)
    size = (await log.tree_state(TENANT)).size
    return [entry for entry in await log.entries(TENANT, range(size)) if entry is not None]


async def assert_proofs_are_the_logs(log: TiledAuditLog, store: AuditStore) -> bytes:
    """Every entry the log serves is Redis's own, and every inclusion proof verifies at the head.

    Returns:
        the head's root, computed here from the entries.
    """
    # An integration starts a trim in the background (``keep_trimming``): read after it, or a trim
    # landing between the trim point's read and the entries' finds them gone (CI saw it once).
    await log.idle()
    state = await log.tree_state(TENANT)
    served_entries = await log.entries(TENANT, range(state.size))
    trimmed = await store.trimmed(TENANT)
    held = await store.entries(TENANT, range(trimmed, state.size))
    assert served_entries[trimmed:] == held  # the new timeline's bytes, never the lost ones
    leaves = [merkle.leaf_hash(entry) for entry in served_entries if entry is not None]
    assert len(leaves) == state.size
    root = merkle.root(leaves)
    assert state.root == root
    await assert_proven(log, leaves, root)
    return root


async def assert_proven(log: TiledAuditLog, leaves: list[bytes], root: bytes) -> None:
    """Every leaf's inclusion proof, read from ``log``, verifies at ``root``."""
    for index in range(len(leaves)):
        plan = merkle.inclusion_plan(index, len(leaves))
        proof = plan.assemble(await log.read_nodes(TENANT, plan.nodes))
        merkle.verify_inclusion(leaves[index], index, len(leaves), proof, root)


async def lose_a_round(
    sentinel: LocalSentinel, client: RedisClient, log: TiledAuditLog
) -> list[bytes | None]:
    """A round of 20 entries that the primary integrates and trims alone, then dies with (-9).

    Returns:
        the lost entries, once the replica is the writable primary.
    """
    primary = sentinel.primary_port()
    replica = next(server for server in sentinel.servers if server.port != primary)
    with redis.Redis(port=primary) as direct:
        assert direct.wait(1, 10_000) == 1  # the replica holds all of it

    # The replica stops hearing the primary; the primary goes on alone: a round past the
    # first bundle's end (its full files written, the partial ones removed) and a trim.
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        with redis.Redis(port=primary) as direct:
            direct.client_kill_filter(_type="replica")
        await append(client, 20, "lost")
        assert (await log.integrate(TENANT)).size == 270
        assert await log.trim(TENANT) == 270 - KEPT
        lost = await AuditStore(client, Scripts(client)).entries(TENANT, range(250, 270))
        sentinel.server_on(primary).stop(hard=True)
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    sentinel.wait_promoted(primary, timeout=60)
    return lost


async def test_a_lost_integrated_round_never_serves_its_entries_or_proofs(
    sentinel: LocalSentinel, tmp_path: Path
) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir(mode=0o700)
    client = connect(sentinel.url)
    store = AuditStore(client, Scripts(client))
    log = tiled_audit_log(client, tiles, kept=KEPT)  # a server's, up through the failover
    try:
        # The history both primaries hold: 250 entries, integrated, trimmed behind the tiles.
        await append(client, 250, "kept")
        assert (await log.integrate(TENANT)).size == 250
        await log.trim(TENANT)
        lost_entries = await lose_a_round(sentinel, client, log)

        # The promoted replica's log: 250 entries, the tiles hold 270. The next appends take
        # the lost entries' numbers with other bytes.
        assert (await served(lambda: store.tree_state(TENANT))).size == 250
        assert int((tiles / TENANT / SIZE_FILE).read_text()) == 270
        assert await append(client, 3, "new") == 253
        renumbered = await log.entries(TENANT, range(250, 253))
        assert renumbered == await store.entries(TENANT, range(250, 253))
        assert not set(renumbered) & set(lost_entries)
        assert (await log.integrate(TENANT)).size == 253  # a width the lost round never wrote
        first_root = await assert_proofs_are_the_logs(log, store)

        # The round that fills the first bundle meets the lost timeline's full file: it stops,
        # loudly, and the head stays where the new timeline's own files put it.
        await append(client, 10, "past")
        with pytest.raises(TilesStopped) as stopped:
            await log.integrate(TENANT)
        assert stopped.value.reason == "AUDIT_TILES_STOPPED"
        assert "set-aside-tiles" in str(stopped.value)
        assert (await store.tree_state(TENANT)).size == 253
        # That process still proves the head it has, and refuses what its stopped tiles alone
        # hold (the entries Redis trimmed) rather than read them.
        await assert_proven(
            log, [merkle.leaf_hash(e) for e in await fresh_entries(tiles, client)], first_root
        )
        with pytest.raises(EntriesUnreadable):
            await log.entries(TENANT, [0])
        fresh = tiled_audit_log(client, tiles, kept=KEPT)  # a server started now reads the same
        assert await assert_proofs_are_the_logs(fresh, store) == first_root

        # The documented step, then a restart: the tree grows over the new timeline alone.
        config = tmp_path / "idverify.toml"
        config.write_text(f'audit_tiles_dir = "{tiles}"\n', encoding="utf-8")
        moved = set_aside_tiles(TENANT, config, sentinel.url, tmp_path / "operator")
        assert "beyond its 253 entries were moved" in moved
        restarted = tiled_audit_log(client, tiles, kept=KEPT)
        assert (await restarted.integrate(TENANT)).size == 263
        root = await assert_proofs_are_the_logs(restarted, store)
        plan = merkle.consistency_plan(253, 263)
        proof = plan.assemble(await restarted.read_nodes(TENANT, plan.nodes))
        merkle.verify_consistency(253, 263, proof, first_root, root)
        aside = next(tiles.glob(f"{TENANT}.beyond-253*"))
        assert (aside / "tile" / "entries" / "000").is_file()  # the lost timeline's, kept
    finally:
        await client.aclose()
