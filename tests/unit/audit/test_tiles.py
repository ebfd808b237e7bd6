"""The audit log's tiles: names, the tree and entries written in batches, and proofs read back.

Proofs from tiles are compared with the RFC 6962 definitions in ``audit/merkle.py`` (computed
from all the leaves) over a tree that crosses into a third tile level (65,536 leaves and more).
"""

from __future__ import annotations

import asyncio
import random
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from idverify.audit import tile_store
from idverify.audit.merkle import (
    CompactRange,
    NodeId,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    root,
)
from idverify.audit.tile_store import DirectoryTiles, TileConflict, TiledLog, TileMissing
from idverify.audit.tiles import (
    ENTRY_MAX_BYTES,
    TILE_WIDTH,
    BundleId,
    TileId,
    bundle_entries,
    encode_index,
    is_tile_path,
    parse_path,
    read_bundle,
    tile_appends,
    tiles_of,
)


class TestNames:
    @pytest.mark.parametrize(
        ("index", "text"),
        [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
    )
    def test_an_index_is_groups_of_three_digits(self, index: int, text: str) -> None:
        assert encode_index(index) == text

    def test_names_parse_back_to_what_made_them(self) -> None:
        rng = random.Random(7)  # noqa: S311 - reproducible cases, not secrets
        for _ in range(500):
            index, width = rng.randrange(10 ** rng.randrange(1, 10)), rng.randint(1, TILE_WIDTH)
            for named in (TileId(rng.randrange(6), index, width), BundleId(index, width)):
                assert parse_path(named.path) == named

    @pytest.mark.parametrize(
        "path",
        [
            "tile/0/1",  # not three digits
            "tile/0/x000/001",  # a leading group of zeros
            "tile/00/001",  # a level with a leading zero
            "tile/0/001.p/256",  # a full tile named as partial
            "tile/0/001.p/0",
            "tile/0/001.p/07",
            "tile/0/../../etc/passwd",
            "tile/entries/001/../002",
            "checkpoint",
            "tile/a/001",
        ],
    )
    def test_other_names_are_refused(self, path: str) -> None:
        with pytest.raises(ValueError, match=r"tile path|index|width|level"):
            parse_path(path)

    def test_only_canonical_names_are_tile_paths(self) -> None:
        assert is_tile_path(TileId(1, 1234, 7).path)
        assert is_tile_path(BundleId(0, TILE_WIDTH).path)
        # What else a writer leaves beside the tiles: its temporaries and the size file.
        for other in ("tile/0/.000.0123456789abcdef.tmp", "tiles-size", "tile/0/x001/../002"):
            assert not is_tile_path(other), other

    def test_the_tiles_of_a_size_cover_every_level(self) -> None:
        size = TILE_WIDTH * TILE_WIDTH + 3
        tiles = list(tiles_of(size))
        assert [t for t in tiles if t.level == 0][-2:] == [TileId(0, 255, 256), TileId(0, 256, 3)]
        assert [t for t in tiles if t.level > 0] == [TileId(1, 0, 256), TileId(2, 0, 1)]
        assert list(tiles_of(0)) == []


class TestBundles:
    def test_entries_come_back_as_written(self) -> None:
        entries = [b"", b"a", bytes(range(256)) * 3, b"x" * ENTRY_MAX_BYTES]
        assert read_bundle(bundle_entries(entries)) == entries

    def test_an_entry_too_long_for_its_length_is_refused(self) -> None:
        with pytest.raises(ValueError, match="does not fit"):
            bundle_entries([b"x" * (ENTRY_MAX_BYTES + 1)])

    @pytest.mark.parametrize("cut", [1, 3, 5])
    def test_a_truncated_bundle_is_refused(self, cut: int) -> None:
        data = bundle_entries([b"abc", b"de"])
        with pytest.raises(ValueError, match="ends inside"):
            read_bundle(data[:-cut])


def test_an_integration_that_lacks_a_node_is_refused() -> None:
    _, completed = CompactRange().extend(leaf_hash(b"%d" % i) for i in range(3))
    del completed[NodeId(0, 1)]
    with pytest.raises(ValueError, match=r"node \(0, 1\)"):
        tile_appends(0, 3, completed)


class _Grown:
    """A log grown in random batches into tiles, with every leaf and node kept to compare."""

    def __init__(self, directory: Path, size: int, seed: int) -> None:
        self.log = TiledLog(DirectoryTiles(directory))
        self.entries = [b"entry %d" % i for i in range(size)]
        self.leaves = [leaf_hash(e) for e in self.entries]
        self.sizes = [0]
        rng = random.Random(seed)  # noqa: S311 - reproducible cases, not secrets
        compact = CompactRange()
        while compact.size < size:
            end = min(size, compact.size + rng.choice([1, 2, 7, 255, 256, 257, 3000, 9000]))
            old = compact.size
            compact, completed = compact.extend(self.leaves[old:end])
            asyncio.run(self.log.append(old, self.entries[old:end], completed))
            self.sizes.append(end)


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> _Grown:
    return _Grown(tmp_path_factory.mktemp("tiles"), TILE_WIDTH * TILE_WIDTH + 1000, seed=3)


class TestTheTreeFromTiles:
    def test_the_root_at_every_integrated_size_is_rfc_6962s(self, grown: _Grown) -> None:
        for size in grown.sizes[-40:]:
            assert asyncio.run(grown.log.root(size)) == root(grown.leaves[:size])

    def test_inclusion_proofs_are_rfc_6962s(self, grown: _Grown) -> None:
        rng = random.Random(11)  # noqa: S311 - reproducible cases, not secrets
        for _ in range(12):
            size = rng.choice(grown.sizes[1:])
            index = rng.randrange(size)
            plan = inclusion_plan(index, size)
            proof = plan.assemble(asyncio.run(grown.log.read_nodes(size, plan.nodes)))
            assert proof == inclusion_proof(index, size, grown.leaves)

    def test_consistency_proofs_are_rfc_6962s(self, grown: _Grown) -> None:
        rng = random.Random(13)  # noqa: S311 - reproducible cases, not secrets
        for _ in range(12):
            size1, size2 = sorted(rng.sample(grown.sizes[1:], 2))
            plan = consistency_plan(size1, size2)
            proof = plan.assemble(asyncio.run(grown.log.read_nodes(size2, plan.nodes)))
            assert proof == consistency_proof(size1, size2, grown.leaves)

    def test_a_node_the_size_does_not_hold_is_none(self, grown: _Grown) -> None:
        read = asyncio.run(grown.log.read_nodes(300, [NodeId(0, 299), NodeId(0, 300), NodeId(8, 1)]))
        assert read == [grown.leaves[299], None, None]

    def test_entries_read_back_by_number(self, grown: _Grown) -> None:
        size = len(grown.entries)
        numbers = [0, 255, 256, size - 1, size]
        assert asyncio.run(grown.log.read_entries(size, numbers)) == [
            *(grown.entries[n] for n in numbers[:-1]),
            None,
        ]

    def test_a_head_older_than_the_full_tile_reads_the_full_one(self, tmp_path: Path) -> None:
        log = TiledLog(DirectoryTiles(tmp_path))
        entries = [b"%d" % i for i in range(TILE_WIDTH)]
        leaves = [leaf_hash(e) for e in entries]
        _, completed = CompactRange().extend(leaves)
        asyncio.run(log.append(0, entries, completed))
        # Only the full tile and bundle were written; a head of 100 entries still proves.
        assert not (tmp_path / TileId(0, 0, 100).path).exists()
        assert asyncio.run(log.root(100)) == root(leaves[:100])
        assert asyncio.run(log.read_entries(100, [99])) == [entries[99]]


class TestWritesOnce:
    def test_a_repeated_integration_writes_the_same_files(self, tmp_path: Path) -> None:
        log = TiledLog(DirectoryTiles(tmp_path))
        entries = [b"%d" % i for i in range(300)]
        _, completed = CompactRange().extend(leaf_hash(e) for e in entries)
        asyncio.run(log.append(0, entries, completed))
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        asyncio.run(log.append(0, entries, completed))  # a crashed integrator's repeat
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
        assert sorted(str(p.relative_to(tmp_path)) for p in before) == [
            "tile/0/000",
            "tile/0/001.p/44",
            "tile/1/000.p/1",
            "tile/entries/000",
            "tile/entries/001.p/44",
        ]

    @pytest.mark.parametrize("kept", ["bundles", "tiles", "upper tiles", "every other", "none"])
    def test_a_round_cut_short_after_any_of_its_files_is_finished_by_the_repeat(
        self, tmp_path: Path, kept: str
    ) -> None:
        # A round's files are written in one call and synced at its end: a crash may leave any
        # subset of them, in any order. The repeat must finish the tree as an unbroken round does.
        entries = [b"%d" % i for i in range(TILE_WIDTH * 3 + 40)]
        first, completed = CompactRange().extend(leaf_hash(e) for e in entries[:300])
        _, more = first.extend(leaf_hash(e) for e in entries[300:])
        whole = TiledLog(DirectoryTiles(tmp_path / "whole"))
        asyncio.run(whole.append(0, entries[:300], completed))
        asyncio.run(whole.append(300, entries[300:], more))

        class _CutShort(DirectoryTiles):
            async def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
                chosen = {
                    "bundles": [f for f in files if "entries" in f[0]],
                    "tiles": [f for f in files if "entries" not in f[0]],
                    "upper tiles": [f for f in files if f[0].startswith("tile/1/")],
                    "every other": list(reversed(files))[::2],
                    "none": [],
                }[kept]
                await super().write_all(chosen)
                raise OSError("killed")

        crashed = tmp_path / "crashed"
        asyncio.run(TiledLog(DirectoryTiles(crashed)).append(0, entries[:300], completed))
        with pytest.raises(OSError, match="killed"):
            asyncio.run(TiledLog(_CutShort(crashed)).append(300, entries[300:], more))
        asyncio.run(TiledLog(DirectoryTiles(crashed)).append(300, entries[300:], more))
        assert _files(crashed) == _files(tmp_path / "whole")
        assert asyncio.run(TiledLog(DirectoryTiles(crashed)).root(len(entries))) == root(
            [leaf_hash(e) for e in entries]
        )

    def test_a_round_syncs_each_directory_once_after_its_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        synced: list[str] = []
        monkeypatch.setattr(
            tile_store, "sync_directory", lambda d: synced.append(str(d.relative_to(tmp_path)))
        )
        entries = [b"%d" % i for i in range(TILE_WIDTH * 4 + 3)]
        _, completed = CompactRange().extend(leaf_hash(e) for e in entries)
        asyncio.run(TiledLog(DirectoryTiles(tmp_path)).append(0, entries, completed))
        # Eleven files in five directories, and the parents of the folders made for them.
        assert len(_files(tmp_path)) == 11
        assert sorted(synced) == [
            ".",
            "tile",
            "tile/0",
            "tile/0/004.p",
            "tile/1",
            "tile/1/000.p",
            "tile/entries",
            "tile/entries/004.p",
        ]

    def test_other_bytes_under_an_existing_name_are_refused(self, tmp_path: Path) -> None:
        store = DirectoryTiles(tmp_path)
        asyncio.run(store.write("tile/0/000.p/1", b"a" * 32))
        with pytest.raises(TileConflict):
            asyncio.run(store.write("tile/0/000.p/1", b"b" * 32))
        assert (tmp_path / "tile/0/000.p/1").read_bytes() == b"a" * 32
        assert [p.name for p in (tmp_path / "tile/0/000.p").iterdir()] == ["1"]  # no temporary left

    def test_files_are_for_the_service_alone(self, tmp_path: Path) -> None:
        asyncio.run(DirectoryTiles(tmp_path).write("tile/entries/000.p/1", b"\x00\x01x"))
        assert stat.S_IMODE((tmp_path / "tile/entries/000.p/1").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "tile/entries").stat().st_mode) == 0o700

    def test_a_path_climbing_out_is_refused_before_any_file_is_touched(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="not groups of three digits"):
            asyncio.run(DirectoryTiles(tmp_path / "log").write("tile/0/../../escaped", b"x"))
        assert not (tmp_path / "escaped").exists()

    def test_a_lost_partial_tile_stops_the_next_integration(self, tmp_path: Path) -> None:
        log = TiledLog(DirectoryTiles(tmp_path))
        entries = [b"%d" % i for i in range(10)]
        compact, completed = CompactRange().extend(leaf_hash(e) for e in entries[:5])
        asyncio.run(log.append(0, entries[:5], completed))
        (tmp_path / "tile/0/000.p/5").unlink()
        _, more = compact.extend(leaf_hash(e) for e in entries[5:])
        with pytest.raises(TileMissing, match=r"tile/0/000\.p/5"):
            asyncio.run(log.append(5, entries[5:], more))


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
