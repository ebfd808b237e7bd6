"""The audit log's tree kept in tiles: tiles first, then the head; crashes, races, restores, conflicts.

The log of record is the in-memory one (``MemoryAuditLog``, held to Redis's behaviour by the
contract suite, where ``TiledAuditLog`` over Redis runs too); the tiles are real files in a
temporary directory. Proofs read through the tiles are compared with the flow's proofs over a log
that keeps its nodes (as Redis did before) and with RFC 6962's definitions.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.merkle import NodeId, leaf_hash
from idverify.audit.tile_mirror import (
    SIZE_FILE,
    TileMirror,
    TilesDisagree,
    TilesStopped,
    tenant_directory,
    tree_files,
)
from idverify.audit.tile_store import DirectoryTiles, TiledLog, TileMissing
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.audit.tree_state import TreeInTiles
from idverify.domain.errors import StoreUnavailable
from idverify.flows.audit import AuditFlow, AuditLog
from idverify.privacy.keyring import Keyring
from idverify.testing.memory_audit_log import MemoryAuditLog

TENANT = "acme"
KEYRING = Keyring.generate()
SIGNER = TreeHeadSigner(Ed25519PrivateKey.generate())
# Sizes either side of a tile's width (256) and of a second-level hash, where tiles change shape.
SIZES = (1, 2, 3, 7, 255, 256, 257, 300, 511, 512, 513, 1000, 1100)


async def grow(log: MemoryAuditLog, to: int, *, tenant: str = TENANT) -> None:
    """Appends entries until the tenant's log holds ``to``."""
    for n in range(await log.size(tenant), to):
        log.append(
            tenant, {"principal": "acme/registrar/c1", "request_id": f"r{n}"}, {"type": "client.created"}
        )


async def diverge(log: MemoryAuditLog, to: int) -> None:
    """Appends entries other than ``grow``'s until the log holds ``to``: another timeline."""
    for n in range(await log.size(TENANT), to):
        log.append(
            TENANT, {"principal": "acme/registrar/c2", "request_id": f"x{n}"}, {"type": "client.created"}
        )


async def leaves(log: MemoryAuditLog) -> list[bytes]:
    entries = await log.entries(TENANT, range(await log.size(TENANT)))
    return [leaf_hash(entry or b"") for entry in entries]


def files(directory: Path) -> dict[str, bytes]:
    """Every tile, bundle and size file below ``directory``, by relative name."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


class Tiled:
    """A log of record whose tree is kept in tiles in ``directory``, as a server with the setting runs it."""

    def __init__(self, directory: Path, *, log: MemoryAuditLog | None = None, batch: int = 4096) -> None:
        self.log = log if log is not None else MemoryAuditLog(tiles=True)
        self.log.tiles = True
        self.directory = directory
        self.mirror = TileMirror(directory, self.log, batch=batch)
        self.log.write_round = self.mirror.write_round
        self.tiled = TiledAuditLog(self.log, self.mirror)

    @property
    def tiles(self) -> TiledLog:
        return TiledLog(DirectoryTiles(self.directory / TENANT))

    async def rounds(self, sizes: tuple[int, ...]) -> None:
        """Grows the log to each size and integrates it, one round each."""
        for size in sizes:
            await grow(self.log, size)
            await self.tiled.integrate(TENANT)


class HeadWriteFails:
    """The integrator's store in a process killed after the tiles: the head's write never lands."""

    def __init__(self, log: MemoryAuditLog) -> None:
        self.tree_state, self.size, self.entries = log.tree_state, log.size, log.entries

    async def write_tree(self, *_: object) -> bool:
        raise StoreUnavailable("killed between the tiles and the head")


def flow_over(log: AuditLog) -> AuditFlow:
    return AuditFlow(log, SIGNER, KEYRING)


def test_a_tenants_directory_is_its_name_or_an_escape() -> None:
    assert tenant_directory("acme-2_b") == "acme-2_b"
    assert tenant_directory("../x.y/Z") == "%2E%2E%2Fx%2Ey%2F%5A"  # a capital too: case-blind volumes
    assert tenant_directory("ü") == "%C3%BC"
    with pytest.raises(ValueError, match="empty"):
        tenant_directory("")


def test_the_files_of_a_tree_are_those_of_its_widths() -> None:
    """What a reader of a head (and a backup of it) needs: each tile and bundle at that size's width."""
    assert tree_files(0) == []
    assert tree_files(300) == [
        "tile/entries/000",
        "tile/entries/001.p/44",
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
    ]


async def test_each_round_writes_its_tiles_and_redis_keeps_the_head_alone(tmp_path: Path) -> None:
    world = Tiled(tmp_path)
    await world.rounds((1, 5, 256, 300, 700))
    state = await world.log.tree_state(TENANT)
    assert (state.size, state.tiled) == (700, True)
    assert await world.log.read_nodes(TENANT, [NodeId(0, 0), NodeId(8, 0)]) == [None, None]
    assert await world.mirror.size(TENANT) == 700
    assert (tmp_path / TENANT / SIZE_FILE).read_text() == "700\n"
    assert await world.tiles.root(700) == state.root
    assert await world.tiles.read_entries(700, [0, 699]) == await world.log.entries(TENANT, [0, 699])
    # Every width a round reached is there until its tile is full: a reader of an older head
    # reads its width, or the full file's first hashes.
    written = set(files(tmp_path / TENANT))
    assert {"tile/0/000", "tile/0/001", "tile/0/002.p/188", "tile/entries/002.p/188"} <= written
    assert not [
        name for name in written if name.startswith(("tile/0/000.p/", "tile/0/001.p/", "tile/entries/000.p/"))
    ]
    for size in (1, 5, 256, 300):
        assert await world.tiles.root(size) == merkle.root((await leaves(world.log))[:size])
    for path in (tmp_path / TENANT).rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)


async def test_proofs_read_from_the_tiles_are_those_of_nodes_kept_and_rfc_6962s(tmp_path: Path) -> None:
    world, kept = Tiled(tmp_path), MemoryAuditLog()
    for size in SIZES:
        await grow(world.log, size)
        await grow(kept, size)
        await world.tiled.integrate(TENANT)
        await kept.integrate(TENANT)
    today, tiled = flow_over(kept), flow_over(world.tiled)
    hashes = await leaves(world.log)
    assert hashes == await leaves(kept)
    for size in SIZES:
        for index in {0, size // 2, size - 1}:
            proof = await tiled.inclusion_proof(TENANT, index, size)
            assert proof == await today.inclusion_proof(TENANT, index, size)
            assert proof.hashes == merkle.inclusion_proof(index, size, hashes)
        for second in (s for s in SIZES if s >= size):
            consistency = await tiled.consistency_proof(TENANT, size, second)
            assert consistency == await today.consistency_proof(TENANT, size, second)
            assert consistency == merkle.consistency_proof(size, second, hashes)
    assert (await tiled.signed_head(TENANT)).head.root_hash == merkle.root(hashes)
    assert await world.tiled.leaf_hashes(TENANT, [0, 1099, 1100]) == [hashes[0], hashes[1099], None]


async def test_a_kill_between_the_tiles_and_the_head_leaves_tiles_ahead_that_the_next_round_repeats(
    tmp_path: Path,
) -> None:
    clean = Tiled(tmp_path / "clean")
    await clean.rounds((300, 350))
    world = Tiled(tmp_path / "crashed")
    await world.rounds((300,))
    await grow(world.log, 350)
    dying = TreeIntegrator(HeadWriteFails(world.log), write_round=world.mirror.write_round)
    with pytest.raises(StoreUnavailable, match="killed"):
        await dying.integrate(TENANT)
    assert await world.mirror.size(TENANT) == 350  # the tiles hold the round
    assert (await world.log.tree_state(TENANT)).size == 300  # the head never moved
    # A new process over the same tiles and log: tiles ahead of the head are normal, not refused.
    restarted = Tiled(tmp_path / "crashed", log=world.log)
    proof = await flow_over(restarted.tiled).inclusion_proof(TENANT, 299, 300)
    assert proof.hashes == merkle.inclusion_proof(299, 300, (await leaves(world.log))[:300])
    assert (await restarted.tiled.integrate(TENANT)).size == 350
    assert files(tmp_path / "crashed" / TENANT) == files(tmp_path / "clean" / TENANT)
    assert not restarted.mirror.stopped(TENANT)


async def test_two_integrators_racing_over_one_folder_write_one_tree(tmp_path: Path) -> None:
    """Two processes: the same files from both, one head write refused each round, no conflict."""
    clean = Tiled(tmp_path / "clean")
    shared = Tiled(tmp_path / "shared")
    other = TileMirror(tmp_path / "shared", shared.log)
    first = TreeIntegrator(shared.log, write_round=shared.mirror.write_round)
    second = TreeIntegrator(shared.log, write_round=other.write_round)
    for size in (3, 100, 256, 257, 600, 1000):
        await grow(shared.log, size)
        await asyncio.gather(first.integrate(TENANT), second.integrate(TENANT, up_to=size - 1))
        await clean.rounds((size,))
    state = await shared.log.tree_state(TENANT)
    assert (state.size, state.root) == (1000, (await clean.log.tree_state(TENANT)).root)
    written, reference = files(tmp_path / "shared" / TENANT), files(tmp_path / "clean" / TENANT)
    assert {name: written[name] for name in reference} == reference  # and maybe more widths
    assert not shared.mirror.stopped(TENANT)
    assert not other.stopped(TENANT)
    hashes = await leaves(shared.log)
    proof = await flow_over(TiledAuditLog(shared.log, other)).consistency_proof(TENANT, 257, 1000)
    assert proof == merkle.consistency_proof(257, 1000, hashes)


async def test_a_size_file_lowered_by_a_slower_writer_costs_nothing(tmp_path: Path) -> None:
    """Readers read at the head's size, not the size file's; the next round finds its tree there."""
    world = Tiled(tmp_path)
    await world.rounds((300, 600))
    (tmp_path / TENANT / SIZE_FILE).write_text("300\n")
    hashes = await leaves(world.log)
    proof = await flow_over(world.tiled).inclusion_proof(TENANT, 500, 600)
    assert proof.hashes == merkle.inclusion_proof(500, 600, hashes)
    await world.rounds((700,))
    assert (tmp_path / TENANT / SIZE_FILE).read_text() == "700\n"


async def test_a_log_whose_nodes_redis_kept_is_caught_up_from_them_then_switched(tmp_path: Path) -> None:
    log = MemoryAuditLog()
    await grow(log, 1000)
    await log.integrate(TENANT)  # the tree as Redis kept it before the setting: every node
    await grow(log, 1010)
    world = Tiled(tmp_path, log=log, batch=100)
    hashes = await leaves(log)
    # Before the first round, proofs read Redis's nodes beyond what the tiles hold.
    assert (await flow_over(world.tiled).inclusion_proof(TENANT, 5, 1000)).hashes == merkle.inclusion_proof(
        5, 1000, hashes[:1000]
    )
    state = await world.tiled.integrate(TENANT)
    assert (state.size, state.tiled) == (1010, True)
    assert await log.read_nodes(TENANT, [NodeId(0, 5)]) == [None]  # the nodes left Redis
    assert await world.tiles.root(1010) == state.root
    # Checked batches of 100: one ended at 1,000 (232 into tile 3), the round at 1,010.
    assert {"tile/0/003.p/232", "tile/0/003.p/242"} <= set(files(tmp_path / TENANT))
    assert (await flow_over(world.tiled).inclusion_proof(TENANT, 5, 1000)).hashes == merkle.inclusion_proof(
        5, 1000, hashes[:1000]
    )


async def test_a_catch_up_whose_batches_disagree_with_redis_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, other = MemoryAuditLog(), MemoryAuditLog(now_ms=1)
    await grow(log, 10)
    await grow(other, 10)  # the same entries but for their times: other leaves, another tree
    await log.integrate(TENANT)
    world = Tiled(tmp_path, log=log)
    target = await other.integrate(TENANT)
    with pytest.raises(TilesStopped):
        await world.mirror.write_round(TENANT, target, target, [], {})
    assert "differ at 10 entries" in caplog.text
    assert not (tmp_path / TENANT).exists()
    assert world.mirror.stopped(TENANT)


async def test_a_store_away_during_a_catch_up_fails_the_round_and_the_next_one_finishes(
    tmp_path: Path,
) -> None:
    log = MemoryAuditLog()
    await grow(log, 20)
    await log.integrate(TENANT)
    world = Tiled(tmp_path, log=log)
    await grow(log, 30)
    log.down = True
    with pytest.raises(StoreUnavailable):
        await world.tiled.integrate(TENANT)
    log.down = False
    assert (await world.tiled.integrate(TENANT)).size == 30
    assert await world.mirror.size(TENANT) == 30


async def test_a_conflicting_tile_stops_the_round_is_reported_and_never_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = Tiled(tmp_path)
    planted = tmp_path / TENANT / "tile/0/000.p/3"
    await DirectoryTiles(tmp_path / TENANT).write("tile/0/000.p/3", bytes(96))
    await grow(world.log, 3)
    with caplog.at_level(logging.ERROR, logger="idverify.audit"), pytest.raises(TilesStopped) as refused:
        await world.tiled.integrate(TENANT)
    assert refused.value.reason == "AUDIT_TILES_STOPPED"
    assert "tile/0/000.p/3 exists with other bytes" in caplog.text
    assert "stopped, nothing overwritten" in caplog.text
    assert planted.read_bytes() == bytes(96)
    assert (await world.log.tree_state(TENANT)).size == 0  # the head did not move past the tiles
    before = files(tmp_path / TENANT)
    await grow(world.log, 9)
    with pytest.raises(TilesStopped):
        await flow_over(world.tiled).signed_head(TENANT)
    assert files(tmp_path / TENANT) == before
    await grow(world.log, 4, tenant="globex")  # another tenant's tiles go on
    assert (await world.tiled.integrate("globex")).size == 4


async def test_tiles_of_another_timeline_at_the_head_are_refused_and_no_proof_reads_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover that lost integrated entries others then replaced: the trees differ at the head."""
    before = Tiled(tmp_path)
    await before.rounds((300,))
    forked = Tiled(tmp_path, log=MemoryAuditLog(tiles=True))
    await grow(forked.log, 100)
    await diverge(forked.log, 180)
    forked.log.write_round = None  # its head moved elsewhere (another folder), not over these tiles
    forked.log.tiles = False
    await forked.log.integrate(TENANT)
    forked.log.tiles = True
    with caplog.at_level(logging.ERROR, logger="idverify.audit"):
        proof = await flow_over(forked.tiled).inclusion_proof(TENANT, 110, 180)
    assert proof.hashes == merkle.inclusion_proof(110, 180, await leaves(forked.log))  # Redis's own nodes
    assert forked.mirror.stopped(TENANT)
    assert "differ at 180 entries" in caplog.text
    assert "set the tiles beyond the log aside" in caplog.text


async def test_a_tree_kept_in_tiles_whose_tiles_are_lost_is_rebuilt_or_refused_never_answered(
    tmp_path: Path,
) -> None:
    """Tiles gone: a read rebuilds them from Redis's entries, checked against the head, or refuses."""
    world = Tiled(tmp_path)
    await world.rounds((300,))
    before = files(tmp_path / TENANT)

    def lose_the_tiles() -> None:
        for path in (tmp_path / TENANT).rglob("*"):
            if path.is_file():
                path.unlink()

    lose_the_tiles()
    restarted = Tiled(tmp_path, log=world.log)
    world.log.down = True
    with pytest.raises(StoreUnavailable):
        await flow_over(restarted.tiled).inclusion_proof(TENANT, 1, 300)
    world.log.down = False
    proof = await flow_over(restarted.tiled).inclusion_proof(TENANT, 1, 300)
    assert proof.hashes == merkle.inclusion_proof(1, 300, await leaves(world.log))
    assert {name: data for name, data in files(tmp_path / TENANT).items() if name in before} == {
        name: before[name] for name in files(tmp_path / TENANT) if name in before
    }
    lose_the_tiles()
    other = MemoryAuditLog(tiles=True)  # Redis's entries no longer those of its head: nothing fits
    await diverge(other, 300)
    other._logs[TENANT].compact = world.log._logs[TENANT].compact
    other._logs[TENANT].tiled = True
    corrupted = Tiled(tmp_path, log=other)
    with pytest.raises(TilesStopped):
        await flow_over(corrupted.tiled).inclusion_proof(TENANT, 1, 300)
    assert corrupted.mirror.stopped(TENANT)


async def test_an_older_redis_restored_beside_newer_tiles_proves_its_own_tree_until_a_conflict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The backup held the first 100 entries of tiles that went on to 300; the restore appends others."""
    before = Tiled(tmp_path)
    await before.rounds((300,))
    restored = Tiled(tmp_path, log=MemoryAuditLog(tiles=True))
    await grow(restored.log, 100)
    restored.log.write_round = None
    restored.log.tiles = False
    await restored.log.integrate(TENANT)  # its head: the 100 entries, as the backup had them
    restored.log.tiles, restored.log.write_round = True, restored.mirror.write_round
    await diverge(restored.log, 200)
    assert (await restored.tiled.integrate(TENANT)).size == 200  # new widths: no file had them
    hashes = await leaves(restored.log)
    for index in (0, 99, 150, 199):
        proof = await flow_over(restored.tiled).inclusion_proof(TENANT, index, 200)
        assert proof.hashes == merkle.inclusion_proof(index, 200, hashes)
    await diverge(restored.log, 260)
    with caplog.at_level(logging.ERROR, logger="idverify.audit"), pytest.raises(TilesStopped):
        await restored.tiled.integrate(TENANT)  # the full tile of entries 0-255 holds the other log's
    assert "exists with other bytes" in caplog.text
    assert (await restored.log.tree_state(TENANT)).size == 200
    proof = await flow_over(restored.tiled).inclusion_proof(TENANT, 150, 200)
    assert proof.hashes == merkle.inclusion_proof(150, 200, hashes)  # its head is still proven right
    # The operator sets the other log's files aside; a restarted server goes on from there.
    moved = await restored.mirror.set_aside(TENANT, 200)
    assert moved == str(tmp_path / f"{TENANT}.beyond-200")
    assert {"tile/0/000", "tile/entries/000", "tile/0/001.p/44", "tile/1/000.p/1"} <= set(files(Path(moved)))
    assert (tmp_path / TENANT / SIZE_FILE).read_text() == "200\n"
    assert await restored.tiles.root(200) == (await restored.log.tree_state(TENANT)).root  # still whole
    again = Tiled(tmp_path, log=restored.log)
    assert (await again.tiled.integrate(TENANT)).size == 260
    hashes = await leaves(restored.log)
    proof = await flow_over(again.tiled).inclusion_proof(TENANT, 255, 260)
    assert proof.hashes == merkle.inclusion_proof(255, 260, hashes)
    assert await again.mirror.set_aside(TENANT, 260) is None  # nothing beyond now


async def test_a_process_without_the_setting_refuses_a_tree_kept_in_tiles(tmp_path: Path) -> None:
    world = Tiled(tmp_path)
    await world.rounds((10,))
    plain = world.log
    plain.tiles, plain.write_round = False, None  # the same store, a server without audit_tiles_dir
    flow = flow_over(plain)
    for call in (
        flow.signed_head(TENANT),
        flow.inclusion_proof(TENANT, 1, 10),
        flow.consistency_proof(TENANT, 2, 10),
        plain.integrate(TENANT),
    ):
        with pytest.raises(
            TreeInTiles, match="start every process that serves it with audit_tiles_dir"
        ) as refused:
            await call
        assert refused.value.reason == "AUDIT_TILES_REQUIRED"
    with pytest.raises(TreeInTiles):
        await TreeIntegrator(plain).integrate(TENANT)


async def test_the_first_look_can_be_asked_for_without_using_the_tiles(tmp_path: Path) -> None:
    """``check`` (what ``backup verify`` asks of a backup's tiles): the size vouched for, or why not."""
    world = Tiled(tmp_path)
    await world.rounds((100, 300))
    assert await TileMirror(tmp_path, world.log).check(TENANT) == 300
    assert await TileMirror(tmp_path, MemoryAuditLog()).check("nobody") == 0
    behind = MemoryAuditLog()
    await grow(behind, 200)
    await behind.integrate(TENANT)
    assert await TileMirror(tmp_path, behind).check(TENANT) == 200  # ahead, and the same tree at 200
    forked = MemoryAuditLog()
    await diverge(forked, 400)
    await forked.integrate(TENANT)
    with pytest.raises(TilesDisagree, match="differ at 300 entries"):
        await TileMirror(tmp_path, forked).check(TENANT)
    # The tile holding the first 256 entries' subtree, gone: the tiles cannot give their tree.
    (tmp_path / TENANT / "tile/1/000.p/1").unlink()
    with pytest.raises(TileMissing, match="lack the tree of 300 entries"):
        await TileMirror(tmp_path, world.log).check(TENANT)


async def test_setting_aside_beyond_a_size_no_round_ended_at_keeps_its_tree_whole(tmp_path: Path) -> None:
    """The kept tree's partial files are cut from the full files before these move aside."""
    world = Tiled(tmp_path)
    await world.rounds((300,))  # one round: no file of width 100 was ever written
    hashes = await leaves(world.log)
    moved = await world.mirror.set_aside(TENANT, 100)
    assert moved is not None
    assert {"tile/0/000", "tile/entries/000", "tile/1/000.p/1"} <= set(files(Path(moved)))
    assert set(files(tmp_path / TENANT)) == {SIZE_FILE, *tree_files(100)}
    assert await world.tiles.root(100) == merkle.root(hashes[:100])
    assert await world.tiles.read_entries(100, [99]) == await world.log.entries(TENANT, [99])


async def test_lost_tiles_of_a_trimmed_log_are_refused_precisely_never_guessed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries trimmed from Redis live in the bundles alone: lost tiles are an operator's restore."""
    world = Tiled(tmp_path)
    await world.rounds((300,))
    await world.log.trim(TENANT, 300, 1000)
    for path in (tmp_path / TENANT).rglob("*"):
        if path.is_file():
            path.unlink()
    await grow(world.log, 310)
    restarted = Tiled(tmp_path, log=world.log)
    with caplog.at_level(logging.ERROR, logger="idverify.audit"), pytest.raises(TilesStopped) as refused:
        await flow_over(restarted.tiled).signed_head(TENANT)
    assert refused.value.reason == "AUDIT_TILES_STOPPED"
    assert "restore the tenant's tiles from a backup" in caplog.text
    with pytest.raises(TilesStopped, match="do not give the tree of 300 entries"):
        await flow_over(restarted.tiled).inclusion_proof(TENANT, 1, 300)
