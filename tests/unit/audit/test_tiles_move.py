"""Moving a log whose nodes Redis keeps into tiles: copied while it grows, finished, verified, refused.

The log of record is the in-memory one (held to Redis's behaviour by the contract suite), its
tree integrated as a server without ``audit_tiles_dir`` does (every node kept); the tiles are
real files. The command over a real Redis, killed and served, is ``tests/e2e/test_migrate.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from idverify.audit.merkle import NodeId
from idverify.audit.tile_mirror import TilesStopped
from idverify.audit.tiles_move import RECORD_FILE, EntryCounts, MovedFrom, MoveRefused, TilesMove
from idverify.audit.trimmed_entries import KEPT
from idverify.domain.errors import StoreUnavailable
from idverify.testing.memory_audit_log import MemoryAuditLog
from tests.unit.audit.test_tile_mirror import TENANT, Tiled, files, grow

BATCH = 100


class Counted(MemoryAuditLog):
    """The in-memory log with the counts a move reads, and a server's round that may win the race."""

    def __init__(self) -> None:
        super().__init__(tiles=True)  # the move's process has the setting; the servers' rounds keep nodes
        self.rounds_won_by_a_server = 0

    async def entry_counts(self, tenant: str) -> EntryCounts:
        size, trimmed = await self.size(tenant), await self.trimmed(tenant)
        held = sum(entry is not None for entry in await self.entries(tenant, range(size)))
        return EntryCounts(size, trimmed, held)

    async def write_tree(self, tenant: str, old_size: int, state: object, nodes: object) -> bool:  # type: ignore[override]
        if self.rounds_won_by_a_server:
            self.rounds_won_by_a_server -= 1
            await grow(self, await self.size(tenant) + 5, tenant=tenant)
            await MemoryAuditLog.integrate(self, tenant)  # a server without the setting: nodes kept
            return False
        return await super().write_tree(tenant, old_size, state, nodes)  # type: ignore[arg-type]


async def served_log(size: int) -> Counted:
    """A log of ``size`` entries whose tree keeps every node, as before the setting."""
    log = Counted()
    await grow(log, size)
    await log.integrate(TENANT)
    return log


def ignore(_: int) -> None:
    """A progress nobody watches."""


async def test_a_copy_while_the_log_grows_then_a_finish_proves_the_move(tmp_path: Path) -> None:
    """Servers keep appending and integrating during the copy; the finish's check proves the move.

    The copy writes Redis nothing; the finish leaves no node and trims below the kept window.
    """
    log = await served_log(1000)
    first = await log.tree_state(TENANT)
    grown = False

    def meanwhile(done: int) -> None:
        nonlocal grown
        if done >= 500 and not grown:
            grown = True
            log.append(TENANT, {"principal": "acme/registrar/c1"}, {"type": "client.created"})

    move = TilesMove(tmp_path, log, batch=BATCH)
    state = await move.copy(TENANT, meanwhile)
    assert state.size >= 1000
    assert not (await log.tree_state(TENANT)).tiled
    assert await log.read_nodes(TENANT, [NodeId(0, 5)]) != [None]  # Redis kept as it was
    await grow(log, 6000)
    await log.integrate(TENANT)  # the servers went on (without the setting) until their restart

    finished = await move.finish(TENANT, ignore)
    assert finished.tiled
    assert await log.read_nodes(TENANT, [NodeId(0, 5)]) == [None]
    assert await log.trimmed(TENANT) == 6000 - KEPT
    report = await move.verify(TENANT, ignore)
    assert report.ok, report.problems
    assert report.moved_from == MovedFrom(1000, first.root)
    assert report.counts == EntryCounts(6000, 6000 - KEPT, KEPT)


async def test_a_finish_that_loses_the_race_to_a_server_goes_again_from_its_head(tmp_path: Path) -> None:
    """A server's round moves the head between the finish's tiles and its check-and-set: nothing is lost."""
    log = await served_log(300)
    move = TilesMove(tmp_path, log, batch=BATCH)
    await move.copy(TENANT, ignore)
    log.rounds_won_by_a_server = 2
    state = await move.finish(TENANT, ignore)
    assert (state.size, state.tiled) == (310, True)
    assert (await move.verify(TENANT, ignore)).ok


async def test_a_finish_stopped_before_its_trim_is_finished_by_a_rerun(tmp_path: Path) -> None:
    """Redis away after the switch: the rerun finds the head switched, trims, and the check holds."""
    log = await served_log(5000)
    move = TilesMove(tmp_path, log, batch=BATCH)
    await move.copy(TENANT, ignore)
    trim = log.trim

    async def away(*_: object) -> int:
        raise StoreUnavailable("Redis away")

    log.trim = away  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await move.finish(TENANT, ignore)
    assert (await log.tree_state(TENANT)).tiled
    log.trim = trim  # type: ignore[method-assign]
    await TilesMove(tmp_path, log, batch=BATCH).finish(TENANT, ignore)
    assert await log.trimmed(TENANT) == 5000 - KEPT
    assert (await move.verify(TENANT, ignore)).ok


async def test_a_log_never_copied_is_copied_by_the_finish_and_one_the_servers_moved_is_checked_whole(
    tmp_path: Path,
) -> None:
    """A log never copied is copied by the finish; one the servers switched is checked whole.

    A tenant created after the copy is copied, recorded and switched; one switched by the
    servers' own first round (no record) is trimmed and its whole tree checked.
    """
    log = await served_log(300)
    move = TilesMove(tmp_path, log, batch=BATCH)
    state = await move.finish(TENANT, ignore)
    assert state.tiled
    assert move.moved_from(TENANT) == MovedFrom(300, state.root)
    assert (await move.verify(TENANT, ignore)).ok

    servers = Tiled(tmp_path / "servers", log=await served_log(300))
    await grow(servers.log, 5000)
    await servers.tiled.integrate(TENANT)  # a server's first round with the setting: caught up, switched
    await servers.tiled.idle()
    moved = TilesMove(tmp_path / "servers", servers.log, batch=BATCH)
    assert (await moved.finish(TENANT, ignore)).size == 5000
    report = await moved.verify(TENANT, ignore)
    assert report.ok, report.problems
    assert report.moved_from is None
    assert (await TilesMove(tmp_path / "empty", await served_log(10)).verify(TENANT, ignore)).problems


async def test_another_logs_folder_and_a_forged_record_are_refused(tmp_path: Path) -> None:
    """Tiles of another log, a record ahead of the log or not a record: refused, named, nothing written."""
    other = await served_log(300)
    await TilesMove(tmp_path, other).copy(TENANT, ignore)
    log = Counted()
    await grow(log, 200, tenant="x")  # another log of 200
    for n in range(200):
        log.append(
            TENANT, {"principal": "acme/registrar/c9", "request_id": f"y{n}"}, {"type": "client.created"}
        )
    await log.integrate(TENANT)
    move = TilesMove(tmp_path, log)
    before = files(tmp_path)
    refusal = await move.refusal(TENANT)
    assert refusal is not None
    assert "another log" in refusal
    (tmp_path / TENANT / RECORD_FILE).write_text("not a record")
    with pytest.raises(MoveRefused, match="not a move's record"):
        await move.refusal(TENANT)
    (tmp_path / TENANT / RECORD_FILE).write_bytes(before[f"{TENANT}/{RECORD_FILE}"])
    assert files(tmp_path) == before


async def test_verify_finds_an_altered_bundle_a_lost_tile_and_a_forged_starting_head(tmp_path: Path) -> None:
    """Each alteration is a problem named in the report; none is an exception or a pass."""
    log = await served_log(700)
    move = TilesMove(tmp_path, log, batch=BATCH)
    await move.copy(TENANT, ignore)
    await move.finish(TENANT, ignore)
    assert (await move.verify(TENANT, ignore)).ok
    folder = tmp_path / TENANT

    bundle = folder / "tile" / "entries" / "001"
    kept = bundle.read_bytes()
    bundle.write_bytes(kept.replace(b"client.created", b"client.deleted", 1))
    assert any("entry 256 in its bundle differs" in p for p in (await move.verify(TENANT, ignore)).problems)
    bundle.write_bytes(kept)

    tile = folder / "tile" / "0" / "000"
    tile.rename(folder / "lost")
    assert any("node 0/0 is missing" in p for p in (await move.verify(TENANT, ignore)).problems)
    (folder / "lost").rename(tile)

    record = folder / RECORD_FILE
    genuine = record.read_bytes()
    record.write_bytes(MovedFrom(300, bytes(32)).encode())
    problems = (await move.verify(TENANT, ignore)).problems
    assert any("differs from the recorded head's" in p for p in problems)
    assert any("no consistency" in p for p in problems)
    record.write_bytes(genuine)
    assert (await move.verify(TENANT, ignore)).ok


async def test_a_conflicting_tile_stops_the_copy_and_is_never_overwritten(tmp_path: Path) -> None:
    log = await served_log(600)
    tile = tmp_path / TENANT / "tile" / "0" / "000"
    tile.parent.mkdir(parents=True)
    tile.write_bytes(bytes(32 * 256))
    with pytest.raises(TilesStopped):
        await TilesMove(tmp_path, log, batch=BATCH).copy(TENANT, ignore)
    assert tile.read_bytes() == bytes(32 * 256)
    assert not (await log.tree_state(TENANT)).tiled
