"""Per-lookup cost of IP location for each provider, beside the raw reader measured in the same run.

Usage: python bench/geo.py [--count N] [--json]

The mmdb figures use the bundled GeoLite2 City file; the xdb figures use ip2region files built
in a temporary directory from the same data (IPv4 and IPv6), so both providers answer the same
question. ``mmdb.mapped`` is the same file's tables through a table cache, as the server's workers
use them: built into the cache (cold), then mapped from it (warm). IPv4 addresses are random
public ones; IPv6 ones are drawn from networks the database knows (most of 2000::/3 is empty).
Samples are fixed by a seed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import maxminddb
from geo_grpc import measure_grpc
from ip2region import searcher as xdb_searcher
from ip2region import util as xdb_util

from idverify.geo import GeoResolver, Ipv4Alias, RawGeo, default_database_path, is_special, open_database
from idverify.geo.provider import IpRange
from idverify.geo.xdb_writer import write_xdb

# The pure-Python maxminddb reader takes ~0.1 ms a lookup: a sample is enough.
PURE_PYTHON_SAMPLE = 5000


def public_ipv4(count: int, seed: int = 2019) -> list[str]:
    """Random IPv4 addresses outside every special-purpose range."""
    generator = random.Random(seed)  # noqa: S311 - reproducible samples, not secrets
    found: list[str] = []
    while len(found) < count:
        value = generator.getrandbits(32)
        if not is_special(4, value):
            found.append(str(ipaddress.IPv4Address(value)))
    return found


def own_data(ranges: Iterable[IpRange]) -> Iterator[tuple[int, int, RawGeo | None]]:
    """The ranges that answer from data of their own: aliases of the IPv4 data left out."""
    for first, last, answer in ranges:
        if not isinstance(answer, Ipv4Alias):
            yield first, last, answer


def ipv6_in_networks(
    ranges: Iterable[tuple[int, int, RawGeo | None]], count: int, seed: int = 2019
) -> list[str]:
    """Random IPv6 addresses inside networks the database has data for.

    Most of 2000::/3 is unallocated, so uniformly random IPv6 addresses would measure little
    but "no data"; drawing a network first, then an address in it, is closer to real clients.
    """
    generator = random.Random(seed)  # noqa: S311 - reproducible samples, not secrets
    known = [
        (first, last) for first, last, answer in ranges if answer is not None and not is_special(6, first)
    ]
    found: list[str] = []
    while len(found) < count:
        first, last = generator.choice(known)
        value = generator.randint(first, last)
        if not is_special(6, value):
            found.append(str(ipaddress.IPv6Address(value)))
    return found


def per_call_us(function: Callable[[str], object], addresses: Sequence[str], repeat: int) -> float:
    """Best-of-``repeat`` mean cost of one call, in microseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for address in addresses:
            function(address)
        best = min(best, time.perf_counter() - started)
    return best / len(addresses) * 1e6


def region_string(answer: RawGeo | None) -> str:
    """An ip2region classic-layout region for an answer (国家|区域|省份|城市|ISP)."""
    if answer is None:
        return "0|0|0|0|0"
    country = answer.country_zh or answer.country_en or "0"
    province = answer.subdivision_zh or answer.subdivision_en or "0"
    return f"{country}|0|{province}|0|0"


def xdb_ranges(ranges: Iterable[tuple[int, int, RawGeo | None]]) -> list[tuple[int, int, str]]:
    """Ranges for the xdb writer, neighbours with the same region merged."""
    merged: list[tuple[int, int, str]] = []
    for first, last, answer in ranges:
        region = region_string(answer)
        if merged and merged[-1][2] == region and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last, region)
        else:
            merged.append((first, last, region))
    return merged


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def table_bytes(resolver: GeoResolver) -> dict[str, int]:
    snapshot = resolver._snapshot  # noqa: SLF001 - the benchmark reports the table's size
    return {"ipv4": snapshot.table_v4.nbytes, "ipv6": snapshot.table_v6.nbytes}


def table_entries(resolver: GeoResolver) -> dict[str, int]:
    snapshot = resolver._snapshot  # noqa: SLF001 - the benchmark reports the table's size
    return {"ipv4": len(snapshot.table_v4), "ipv6": len(snapshot.table_v6)}


def measure_in_process(
    ipv4: Sequence[str] | None = None,
    ipv6: Sequence[str] | None = None,
    *,
    count: int = 100_000,
    work_dir: Path,
    repeat: int = 3,
) -> dict[str, Any]:
    """Per-lookup cost of ``GeoResolver.lookup`` per provider, and of the raw readers, in this process.

    Args:
        ipv4: IPv4 addresses to look up; None for ``count`` random public ones.
        ipv6: IPv6 addresses to look up; None for ``count // 5`` drawn from the database's networks.
        count: how many IPv4 addresses to draw when none are given.
        work_dir: where the xdb files are written.
        repeat: timed passes per figure; the best one counts.

    Returns:
        Figures in microseconds per lookup (``*_us``), seconds for loads, bytes for tables.
    """
    mmdb_path = default_database_path()
    mmdb_resolver, mmdb_load = timed(lambda: GeoResolver([mmdb_path], kind="mmdb", check_interval=0))
    cache = work_dir / "tables"
    _, cold_load = timed(lambda: GeoResolver([mmdb_path], kind="mmdb", check_interval=0, table_cache=cache))
    mapped_resolver, warm_load = timed(
        lambda: GeoResolver([mmdb_path], kind="mmdb", check_interval=0, table_cache=cache)
    )
    provider = open_database(mmdb_path)
    ipv4 = public_ipv4(count) if ipv4 is None else ipv4
    ipv6 = ipv6_in_networks(own_data(provider.ranges(6)), max(1, count // 5)) if ipv6 is None else ipv6
    xdb_v4 = write_xdb(work_dir / "ip2region_v4.xdb", xdb_ranges(own_data(provider.ranges(4))))
    xdb_v6 = write_xdb(work_dir / "ip2region_v6.xdb", xdb_ranges(own_data(provider.ranges(6))), ip_version=6)
    del provider
    xdb_resolver, xdb_load = timed(lambda: GeoResolver([xdb_v4, xdb_v6], kind="xdb", check_interval=0))

    c_reader = maxminddb.open_database(str(mmdb_path), maxminddb.MODE_MMAP_EXT)
    python_reader = maxminddb.open_database(str(mmdb_path), maxminddb.MODE_MEMORY)
    xdb_search_v4 = xdb_searcher.new_with_buffer(xdb_util.IPv4, xdb_v4.read_bytes())
    xdb_search_v6 = xdb_searcher.new_with_buffer(xdb_util.IPv6, xdb_v6.read_bytes())

    figures: dict[str, Any] = {
        "addresses": {"ipv4": len(ipv4), "ipv6": len(ipv6)},
        "mmdb": {
            "database": f"{mmdb_path.name} ({mmdb_resolver.info()[0].build_date})",
            "load_s": round(mmdb_load, 2),
            "table_entries": table_entries(mmdb_resolver),
            "table_bytes": table_bytes(mmdb_resolver),
            "lookup_us": {
                "ipv4": per_call_us(mmdb_resolver.lookup, ipv4, repeat),
                "ipv6": per_call_us(mmdb_resolver.lookup, ipv6, repeat),
            },
            "raw_reader_c_us": {
                "ipv4": per_call_us(c_reader.get, ipv4, repeat),
                "ipv6": per_call_us(c_reader.get, ipv6, repeat),
            },
            "raw_reader_python_us": {
                "ipv4": per_call_us(python_reader.get, ipv4[:PURE_PYTHON_SAMPLE], 1),
                "ipv6": per_call_us(python_reader.get, ipv6[:PURE_PYTHON_SAMPLE], 1),
            },
            "mapped": {
                "cold_load_s": round(cold_load, 2),
                "warm_load_s": round(warm_load, 2),
                "cache_file_bytes": mapped_resolver.mapped_from.stat().st_size
                if mapped_resolver.mapped_from
                else 0,
                "lookup_us": {
                    "ipv4": per_call_us(mapped_resolver.lookup, ipv4, repeat),
                    "ipv6": per_call_us(mapped_resolver.lookup, ipv6, repeat),
                },
            },
        },
        "xdb": {
            "database": f"ip2region v4 ({xdb_v4.stat().st_size} bytes) + v6 ({xdb_v6.stat().st_size} bytes)",
            "load_s": round(xdb_load, 2),
            "segments": {f"ipv{min(info.ip_versions)}": info.record_count for info in xdb_resolver.info()},
            "table_entries": table_entries(xdb_resolver),
            "table_bytes": table_bytes(xdb_resolver),
            "lookup_us": {
                "ipv4": per_call_us(xdb_resolver.lookup, ipv4, repeat),
                "ipv6": per_call_us(xdb_resolver.lookup, ipv6, repeat),
            },
            "raw_reader_us": {
                "ipv4": per_call_us(xdb_search_v4.search, ipv4, repeat),
                "ipv6": per_call_us(xdb_search_v6.search, ipv6, repeat),
            },
        },
    }
    for name in ("mmdb", "xdb"):
        raw_key = "raw_reader_c_us" if name == "mmdb" else "raw_reader_us"
        figures[name]["speedup_vs_raw"] = {
            version: round(figures[name][raw_key][version] / figures[name]["lookup_us"][version], 1)
            for version in ("ipv4", "ipv6")
        }
    mapped = figures["mmdb"]["mapped"]
    mapped["speedup_vs_raw"] = {
        version: round(figures["mmdb"]["raw_reader_c_us"][version] / mapped["lookup_us"][version], 1)
        for version in ("ipv4", "ipv6")
    }
    c_reader.close()
    python_reader.close()
    rounded: dict[str, Any] = _rounded(figures)
    return rounded


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="IPv4 addresses (IPv6: a fifth as many)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per figure; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC measurements (servers)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each gRPC load")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idverify-geo-bench-") as work_dir:
        figures = measure_in_process(count=args.count, work_dir=Path(work_dir), repeat=args.repeat)
    if not args.no_grpc:
        figures["grpc"] = measure_grpc(args.seconds)
    figures["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "maxminddb_c_extension": hasattr(maxminddb, "extension"),
    }
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
        return 0
    print(
        f"{figures['addresses']['ipv4']} random public IPv4 addresses, "
        f"{figures['addresses']['ipv6']} IPv6 ones from the database's networks"
    )
    for name in ("mmdb", "xdb"):
        provider = figures[name]
        print(f"\n{name}: {provider['database']}, loaded in {provider['load_s']} s")
        print(f"  table entries {provider['table_entries']}, bytes {provider['table_bytes']}")
        for key, value in provider.items():
            if key.endswith("_us") or key == "speedup_vs_raw":
                print(f"  {key:22} ipv4 {value['ipv4']:>8}   ipv6 {value['ipv6']:>8}")
    mapped = figures["mmdb"]["mapped"]
    print(
        f"\nmmdb through a table cache: built in {mapped['cold_load_s']} s, "
        f"mapped in {mapped['warm_load_s']} s"
    )
    for key in ("lookup_us", "speedup_vs_raw"):
        print(f"  {key:22} ipv4 {mapped[key]['ipv4']:>8}   ipv6 {mapped[key]['ipv6']:>8}")
    for key, value in figures.get("grpc", {}).items():
        print(f"  {key:30} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
