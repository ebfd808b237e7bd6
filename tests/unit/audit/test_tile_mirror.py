"""The audit log's tiles kept beside the log of record: rounds, catch-ups, conflicts and proofs.

The log of record is the in-memory one (``MemoryAuditLog``, held to Redis's behaviour by the
contract suite, where ``TiledAuditLog`` over Redis runs too); the tiles are real files in a
temporary directory. Proofs read through the tiles are compared with the flow's proofs over the
log alone and with RFC 6962's definitions.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.merkle import leaf_hash
from idverify.audit.tile_mirror import SIZE_FILE, TiledAuditLog, TileMirror, TilesDisagree, tenant_directory
from idverify.audit.tile_store import DirectoryTiles, TiledLog, TileMissing
from idverify.flows.audit import AuditFlow, AuditLog
from idverify.privacy.keyring import Keyring
from idverify.testing.memory_audit_log import MemoryAuditLog

TENANT = "acme"
KEYRING = Keyring.generate()
SIGNER = TreeHeadSigner(Ed25519PrivateKey.generate())
# Sizes either side of a tile's width (256) and of a second-level hash, where tiles change shape.
SIZES = (1, 2, 3, 7, 255, 256, 257, 300, 511, 512, 513, 1000, 1100)


async def grow(log: MemoryAuditLog, to: int) -> None:
    """Appends entries until the tenant's log holds ``to``."""
    for n in range(await log.size(TENANT), to):
        log.append(
            TENANT, {"principal": "acme/registrar/c1", "request_id": f"r{n}"}, {"type": "client.created"}
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
    """A log of record, its tiles in ``directory``, and an integrator that writes rounds to both."""

    def __init__(self, directory: Path, *, batch: int = 4096) -> None:
        self.log = MemoryAuditLog()
        self.directory = directory
        self.mirror = TileMirror(directory, self.log, batch=batch)
        self.tiled = TiledAuditLog(self.log, self.mirror)
        self.integrator = TreeIntegrator(self.log, after_round=self.mirror.record_round)

    @property
    def tiles(self) -> TiledLog:
        return TiledLog(DirectoryTiles(self.directory / TENANT))

    async def rounds(self, sizes: tuple[int, ...]) -> None:
        """Grows the log to each size and integrates it, one round each."""
        for size in sizes:
            await grow(self.log, size)
            await self.integrator.integrate(TENANT)


def flow_over(log: AuditLog) -> AuditFlow:
    return AuditFlow(log, SIGNER, KEYRING)


def test_a_tenants_directory_is_its_name_or_an_escape() -> None:
    assert tenant_directory("acme-2_b") == "acme-2_b"
    assert tenant_directory("../x.y/Z") == "%2E%2E%2Fx%2Ey%2F%5A"  # a capital too: case-blind volumes
    assert tenant_directory("ü") == "%C3%BC"
    with pytest.raises(ValueError, match="empty"):
        tenant_directory("")


async def test_each_round_redis_takes_is_written_to_tiles(tmp_path: Path) -> None:
    world = Tiled(tmp_path)
    await world.rounds((1, 5, 256, 300, 700))
    state = await world.log.tree_state(TENANT)
    assert await world.mirror.size(TENANT) == 700
    assert (tmp_path / TENANT / SIZE_FILE).read_text() == "700\n"
    assert await world.tiles.root(700) == state.root
    assert await world.tiles.read_entries(700, [0, 699]) == await world.log.entries(TENANT, [0, 699])
    # Every width a round reached is there, so a reader of an older head finds its tiles.
    assert {"tile/0/000.p/1", "tile/0/000.p/5", "tile/0/000", "tile/0/001.p/44", "tile/0/002.p/188"} <= set(
        files(tmp_path / TENANT)
    )
    for path in (tmp_path / TENANT).rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)


async def test_proofs_through_the_tiles_are_todays_and_rfc_6962s(tmp_path: Path) -> None:
    world = Tiled(tmp_path)
    await world.rounds(SIZES)
    today, tiled = flow_over(world.log), flow_over(world.tiled)
    hashes = await leaves(world.log)
    proofs = []
    for size in SIZES:
        for index in {0, size // 2, size - 1}:
            proof = await tiled.inclusion_proof(TENANT, index, size)
            assert proof == await today.inclusion_proof(TENANT, index, size)
            assert proof.hashes == merkle.inclusion_proof(index, size, hashes)
            proofs.append((index, size, proof))
        for second in (s for s in SIZES if s >= size):
            consistency = await tiled.consistency_proof(TENANT, size, second)
            assert consistency == await today.consistency_proof(TENANT, size, second)
            assert consistency == merkle.consistency_proof(size, second, hashes)
    # With the log's nodes gone the tiles alone give every proof: they are what was read.
    world.log.lose_nodes(TENANT)
    alone = flow_over(world.tiled)
    for index, size, proof in proofs:
        assert await alone.inclusion_proof(TENANT, index, size) == proof
    assert await alone.consistency_proof(TENANT, 3, 1100) == merkle.consistency_proof(3, 1100, hashes)


async def test_a_crash_between_the_two_writes_is_caught_up_from_the_log(tmp_path: Path) -> None:
    clean = Tiled(tmp_path / "clean")
    await clean.rounds((300, 350))
    crashed = Tiled(tmp_path / "crashed")
    await grow(crashed.log, 300)
    await TreeIntegrator(crashed.log).integrate(TENANT)  # Redis took the round; the tiles did not
    await crashed.rounds((350,))  # the next round finds them behind and leaves them to a catch-up
    await crashed.mirror.idle()
    assert await crashed.mirror.size(TENANT) == 350
    written, reference = files(tmp_path / "crashed" / TENANT), files(tmp_path / "clean" / TENANT)
    assert written == {name: reference[name] for name in written}
    state = await crashed.log.tree_state(TENANT)
    await crashed.mirror.catch_up(TENANT, state)  # a repeat writes nothing new and refuses nothing
    assert files(tmp_path / "crashed" / TENANT) == written
    assert not crashed.mirror.stopped(TENANT)


async def test_tiles_switched_on_for_an_existing_log_catch_up_in_batches(tmp_path: Path) -> None:
    world = Tiled(tmp_path, batch=100)
    await grow(world.log, 1000)
    state = await world.tiled.integrate(TENANT)
    await world.mirror.idle()
    assert await world.mirror.size(TENANT) == 1000
    assert await world.tiles.root(1000) == state.root
    assert "tile/0/000.p/100" in files(tmp_path / TENANT)  # one batch, then the next


async def test_a_store_away_during_a_catch_up_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = Tiled(tmp_path)
    await grow(world.log, 20)
    state = await world.log.integrate(TENANT)
    world.log.down = True
    await world.mirror.catch_up(TENANT, state)
    assert "not written yet" in caplog.text
    world.log.down = False
    await world.tiled.integrate(TENANT)
    await world.mirror.idle()
    assert await world.mirror.size(TENANT) == 20


async def test_a_conflicting_tile_is_refused_reported_and_never_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = Tiled(tmp_path)
    planted = tmp_path / TENANT / "tile/0/000.p/3"
    await DirectoryTiles(tmp_path / TENANT).write("tile/0/000.p/3", bytes(96))
    with caplog.at_level(logging.ERROR, logger="idverify.audit"):
        await world.rounds((3,))
    assert "tile/0/000.p/3 exists with other bytes" in caplog.text
    assert "stopped, nothing overwritten" in caplog.text
    assert planted.read_bytes() == bytes(96)
    assert world.mirror.stopped(TENANT)
    before = files(tmp_path / TENANT)
    await world.rounds((9,))  # no more writes for this tenant, and proofs come from the log
    assert files(tmp_path / TENANT) == before
    hashes = await leaves(world.log)
    proof = await flow_over(world.tiled).inclusion_proof(TENANT, 1, 3)
    assert proof.hashes == merkle.inclusion_proof(1, 3, hashes)


async def test_tiles_that_would_disagree_with_the_log_are_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world, other = Tiled(tmp_path), MemoryAuditLog(now_ms=1)
    await grow(world.log, 10)
    for n in range(10):  # the same entries but for their times: other leaves, another tree
        other.append(
            TENANT, {"principal": "acme/registrar/c1", "request_id": f"r{n}"}, {"type": "client.created"}
        )
    target = await other.integrate(TENANT)
    await world.mirror.catch_up(TENANT, target)
    assert "differ at 10 entries" in caplog.text
    assert not (tmp_path / TENANT).exists()
    assert world.mirror.stopped(TENANT)


async def diverge(log: MemoryAuditLog, to: int) -> None:
    """Appends entries other than ``grow``'s until the log holds ``to``: another timeline."""
    for n in range(await log.size(TENANT), to):
        log.append(
            TENANT, {"principal": "acme/registrar/c2", "request_id": f"x{n}"}, {"type": "client.created"}
        )


async def test_tiles_ahead_of_a_restored_log_are_refused_before_any_proof_reads_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup restored under tiles of a later log: the entries after it are written anew, other."""
    before = Tiled(tmp_path)
    await before.rounds((300,))
    restored = MemoryAuditLog()  # the backup held the first 100 entries, which grow() repeats
    await grow(restored, 100)
    await restored.integrate(TENANT)
    await diverge(restored, 200)
    await restored.integrate(TENANT)
    mirror = TileMirror(tmp_path, restored)  # the server started on the restored store
    hashes = await leaves(restored)
    with caplog.at_level(logging.ERROR, logger="idverify.audit"):
        proof = await flow_over(TiledAuditLog(restored, mirror)).inclusion_proof(TENANT, 150, 200)
    assert proof.hashes == merkle.inclusion_proof(150, 200, hashes)
    assert mirror.stopped(TENANT)
    assert "hold 300 entries, more than the log's 200" in caplog.text
    assert (tmp_path / TENANT / SIZE_FILE).read_text() == "300\n"  # nothing overwritten


async def test_tiles_of_another_timeline_within_the_log_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover that lost entries others then replaced: the tiles' tree differs where both hold it."""
    before = Tiled(tmp_path)
    await before.rounds((120,))
    forked = MemoryAuditLog()
    await grow(forked, 100)
    await diverge(forked, 180)
    await forked.integrate(TENANT)
    mirror = TileMirror(tmp_path, forked)
    hashes = await leaves(forked)
    proof = await flow_over(TiledAuditLog(forked, mirror)).inclusion_proof(TENANT, 110, 180)
    assert proof.hashes == merkle.inclusion_proof(110, 180, hashes)
    assert mirror.stopped(TENANT)
    assert "differ at 120 entries" in caplog.text


async def test_the_first_look_can_be_asked_for_without_using_the_tiles(tmp_path: Path) -> None:
    """``check`` (what ``backup verify`` asks of a backup's tiles): their size, or why they are refused."""
    world = Tiled(tmp_path)
    await world.rounds((100, 300))
    assert await TileMirror(tmp_path, world.log).check(TENANT) == 300
    assert await TileMirror(tmp_path, MemoryAuditLog()).check("nobody") == 0
    behind = MemoryAuditLog()
    await grow(behind, 200)
    await behind.integrate(TENANT)
    with pytest.raises(TilesDisagree, match=r"^the tiles of acme hold 300 entries, more than the log's 200$"):
        await TileMirror(tmp_path, behind).check(TENANT)
    forked = MemoryAuditLog()
    await diverge(forked, 400)
    await forked.integrate(TENANT)
    with pytest.raises(TilesDisagree, match="differ at 300 entries"):
        await TileMirror(tmp_path, forked).check(TENANT)
    # The tile holding the first 256 entries' subtree, gone: the tiles cannot give their tree.
    (tmp_path / TENANT / "tile/1/000.p/1").unlink()
    with pytest.raises(TileMissing, match="lack the tree of 300 entries"):
        await TileMirror(tmp_path, world.log).check(TENANT)
