"""The table cache: tables built once per database file, mapped (not copied) by every process."""

from __future__ import annotations

import ipaddress
import logging
import mmap
import multiprocessing
import random
import subprocess
import sys
from pathlib import Path

import pytest
from geo_builders import CHINA, SMALL_MMDB, city, place, write_mmdb

from idverify.geo import GeoDatabaseError, GeoResolver
from idverify.geo.database import DigestedFile
from idverify.geo.resolver import _Snapshot
from idverify.geo.xdb_writer import write_xdb
from idverify.privacy.identity_index import DEFAULT


def mapping_lines(path: Path) -> list[str]:
    """The lines of this process's memory map that map ``path``."""
    return [line for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(str(path))]


def assert_mapped(snapshot: _Snapshot) -> None:
    """Every array of every table is a memoryview over a read-only mapping of the cache file."""
    assert snapshot.mapped_from is not None
    tables = [snapshot.table_v4, snapshot.table_v6]
    while tables:
        table = tables.pop()
        for numbers in (table.starts, table.values):
            assert isinstance(numbers, memoryview)
            assert numbers.readonly
            assert isinstance(numbers.obj, mmap.mmap)
        tables.extend(table.blocks.values())
    lines = mapping_lines(snapshot.mapped_from)
    assert lines
    assert all(line.split()[1].startswith("r--s") for line in lines)  # read-only, shared


def probes(count: int, seed: int) -> list[str]:
    generator = random.Random(seed)  # noqa: S311 - reproducible probes, not secrets
    addresses = [str(ipaddress.IPv4Address(generator.getrandbits(32))) for _ in range(count)]
    # IPv6: random, and inside the ranges real files split (2000::/3, 6to4, IPv4-mapped).
    addresses += [str(ipaddress.IPv6Address(generator.getrandbits(128))) for _ in range(count // 4)]
    addresses += [str(ipaddress.IPv6Address((1 << 125) | generator.getrandbits(125))) for _ in range(count)]
    addresses += [
        str(ipaddress.IPv6Address((0x2002 << 112) | generator.getrandbits(112))) for _ in range(count // 4)
    ]
    addresses += [f"::ffff:{ipaddress.IPv4Address(generator.getrandbits(32))}" for _ in range(count // 4)]
    return addresses


class TestAnswers:
    def test_the_bundled_database_answers_alike_from_the_cache(
        self, default_resolver: GeoResolver, tmp_path: Path
    ) -> None:
        """Over many addresses, mapped tables answer exactly as tables built in memory."""
        assert default_resolver.mapped_from is None
        mapped = GeoResolver(table_cache=tmp_path)
        assert_mapped(mapped._snapshot)
        assert mapped.info() == default_resolver.info()
        for address in probes(100_000, seed=25):
            assert mapped.lookup(address) == default_resolver.lookup(address), address

    def test_a_small_file_answers_alike_from_the_cache(self, small_mmdb: Path, tmp_path: Path) -> None:
        """Split /64 blocks and aliases included; built first, then mapped by a second process's load."""
        built = GeoResolver([small_mmdb], check_interval=0)
        first = GeoResolver([small_mmdb], check_interval=0, table_cache=tmp_path / "cache")
        second = GeoResolver([small_mmdb], check_interval=0, table_cache=tmp_path / "cache")
        assert first.mapped_from == second.mapped_from
        assert_mapped(second._snapshot)
        edges = ["2a00:1:0:1::", "2a00:1:0:1:7fff:ffff:ffff:ffff", "2a00:1:0:1:8000::", "2a00:1:0:2::1"]
        for address in [*edges, *probes(5_000, seed=3)]:
            assert second.lookup(address) == built.lookup(address), address


def load_in_a_process(database: Path, cache: Path) -> tuple[str, int, str]:
    resolver = GeoResolver([database], check_interval=0, table_cache=cache)
    assert resolver.mapped_from is not None
    return str(resolver.mapped_from), resolver.mapped_from.stat().st_ino, resolver.lookup("1.0.0.1").display


class TestSharing:
    def test_processes_loading_at_once_build_once_and_map_one_file(
        self, small_mmdb: Path, tmp_path: Path
    ) -> None:
        """Every process maps the same file, written once (a second write would be a new inode)."""
        cache = tmp_path / "cache"
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            results = pool.starmap(load_in_a_process, [(small_mmdb, cache)] * 4)
        assert len(set(results)) == 1
        assert results[0][2] == "广东"
        assert [path.name for path in cache.glob("*.tables")] == [Path(results[0][0]).name]

    def test_a_new_file_gets_new_tables_and_the_old_ones_go(self, small_mmdb: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        resolver = GeoResolver([small_mmdb], check_interval=0, table_cache=cache)
        old = resolver.mapped_from
        assert old is not None
        write_mmdb(small_mmdb, {**SMALL_MMDB, "1.0.0.0/24": city(place("JP", "日本", "Japan"))})
        assert resolver.reload()
        assert resolver.lookup("1.0.0.1").display == "日本"
        assert resolver.mapped_from not in (None, old)
        assert not old.exists()
        assert_mapped(resolver._snapshot)

    def test_country_names_setting_has_tables_of_its_own(self, tmp_path: Path) -> None:
        database = write_mmdb(tmp_path / "t.mmdb", {"5.0.0.0/16": city(place("TW", "中华民国", "Taiwan"))})
        cache = tmp_path / "cache"
        by_table = GeoResolver([database], check_interval=0, table_cache=cache, country_names_from="table")
        by_file = GeoResolver([database], check_interval=0, table_cache=cache)
        assert by_table.mapped_from != by_file.mapped_from
        assert by_table.lookup("5.0.0.1") == GeoResolver([database], country_names_from="table").lookup(
            "5.0.0.1"
        )


class TestFallbacks:
    @pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
    def test_a_damaged_cache_file_is_rebuilt(
        self, small_mmdb: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
    ) -> None:
        cache = tmp_path / "cache"
        path = GeoResolver([small_mmdb], check_interval=0, table_cache=cache).mapped_from
        assert path is not None
        contents = path.read_bytes()
        damaged = {
            "truncate": contents[: len(contents) - 9],
            "flip": contents[:-5] + bytes([contents[-5] ^ 1]) + contents[-4:],
            "empty": b"",
            "garbage": b"\x00" * 64,
        }[damage]
        path.write_bytes(damaged)
        with caplog.at_level(logging.WARNING, logger="idverify.geo"):
            resolver = GeoResolver([small_mmdb], check_interval=0, table_cache=cache)
        assert "unusable" in caplog.text
        assert resolver.lookup("1.0.0.1").display == "广东"
        assert path.read_bytes() == contents
        assert_mapped(resolver._snapshot)

    def test_an_unusable_cache_directory_builds_in_the_process(
        self, small_mmdb: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        with caplog.at_level(logging.WARNING, logger="idverify.geo"):
            resolver = GeoResolver([small_mmdb], check_interval=0, table_cache=blocker / "cache")
        assert "cannot use the table cache" in caplog.text
        assert resolver.mapped_from is None
        assert resolver.lookup("1.0.0.1").display == "广东"

    def test_an_unusable_file_is_named_by_the_build(self, tmp_path: Path) -> None:
        """A file the build cannot use is refused as without a cache, and no cache file is left."""
        bad = tmp_path / "bad.mmdb"
        bad.write_bytes(b"not a database" * 100)
        with pytest.raises(GeoDatabaseError, match=r"bad\.mmdb: not an mmdb or xdb file"):
            GeoResolver([bad], check_interval=0, table_cache=tmp_path / "cache")
        assert not list((tmp_path / "cache").glob("*.tables"))

    def test_an_unusable_replacement_is_refused_and_the_mapped_tables_serve_on(
        self, small_mmdb: Path, tmp_path: Path
    ) -> None:
        resolver = GeoResolver([small_mmdb], check_interval=0, table_cache=tmp_path / "cache")
        small_mmdb.write_bytes(b"\x00" * 4096)
        assert resolver.reload() is False
        assert resolver.lookup("1.0.0.1").display == "广东"
        assert_mapped(resolver._snapshot)

    def test_a_file_rewritten_after_its_digest_is_refused(self, small_mmdb: Path) -> None:
        """The tables of one version of a file never go into the cache under another's digest."""
        with DigestedFile(small_mmdb) as file:
            digest = file.digest
            # The last byte flipped: written as 0x00 it changed nothing when the file already ended
            # in one (its metadata's build time does, one run in 256), and the test failed.
            data = small_mmdb.read_bytes()
            small_mmdb.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
            with pytest.raises(GeoDatabaseError, match="changed while it was read"):
                file.contents()
        with DigestedFile(small_mmdb) as rewritten:
            assert rewritten.digest != digest

    def test_tables_with_holes_keep_their_file(self, tmp_path: Path) -> None:
        """An xdb file with gaps leaves addresses to its searcher, so it is not served from the map."""
        segments = [(1 << 24, (2 << 24) - 1, "中国|0|广西壮族自治区|南宁市|电信")]
        path = write_xdb(tmp_path / "v4.xdb", segments)
        resolver = GeoResolver([path], check_interval=0, table_cache=tmp_path / "cache")
        assert resolver.mapped_from is None
        assert not resolver.answers_from_tables_alone
        assert resolver.lookup("1.0.0.1").display == "广西"
        assert resolver.lookup("9.0.0.1").display == "未知"

    def test_china_label_survives_the_cache(self, tmp_path: Path) -> None:
        database = write_mmdb(tmp_path / "cn.mmdb", {"1.0.0.0/8": city(CHINA)})
        resolver = GeoResolver([database], check_interval=0, table_cache=tmp_path / "cache")
        assert resolver.mapped_from is not None
        location = resolver.lookup("1.2.3.4")
        assert (location.display, location.country_code, location.source) == ("中国", "CN", "GeoLite2-City")


# A process that built the tables, then hashes as a worker does (argon2id in a thread of its
# own); prints the page faults of three hashes after a first one.
_HASHES_AFTER_A_BUILD = """
import resource, sys, threading
from pathlib import Path
from argon2.low_level import Type, hash_secret_raw
from idverify.geo import GeoResolver

GeoResolver([Path(sys.argv[1])], check_interval=0, table_cache=Path(sys.argv[2])).close()
memory_kib, faults = int(sys.argv[3]), []

def hashes():
    def one():
        hash_secret_raw(b"secret", b"salt" * 4, time_cost=1, memory_cost=memory_kib,
                        parallelism=1, hash_len=32, type=Type.ID)
    one()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(3):
        one()
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

thread = threading.Thread(target=hashes)
thread.start()
thread.join()
print(faults[0])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_after_a_build_each_hash_reuses_its_memory(small_mmdb: Path, tmp_path: Path) -> None:
    """The worker that built the tables keeps argon2id's working memory between hashes.

    The build sets glibc's mmap threshold by hand, which stops glibc adjusting its trim threshold
    too: left at 128 KiB, the hashing thread's heap was cut back after every hash, and each hash
    faulted all of its memory in again (a page fault for every 4 KiB, ~6 ms of system CPU).
    """
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            _HASHES_AFTER_A_BUILD,
            str(small_mmdb),
            str(tmp_path / "cache"),
            str(DEFAULT.memory_kib),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert list((tmp_path / "cache").glob("*.tables"))  # the process did build
    pages_a_hash = DEFAULT.memory_kib * 1024 // mmap.PAGESIZE
    assert int(built.stdout) < 3 * pages_a_hash // 10, built.stdout
