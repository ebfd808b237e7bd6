"""DirectLookups: the resolver's answers, from the files' readers, with no tables built."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from geo_builders import SMALL_MMDB, city, place, write_mmdb

from idverify.domain.errors import InvalidArgument
from idverify.geo import GeoDatabaseError, GeoResolver, default_database_path
from idverify.geo.direct import DirectLookups
from idverify.geo.location import IpLocation
from idverify.geo.xdb_writer import write_xdb

# Special-purpose, IPv4-mapped, 6to4, Teredo, NAT64 and plain addresses of both versions.
EDGES = [
    "0.0.0.0",  # noqa: S104 - an address to look up, not to bind
    "10.1.2.3",
    "127.0.0.1",
    "192.168.1.1",
    "255.255.255.255",
    "1.0.0.1",
    "1.0.2.255",
    "2.0.0.1",
    "4.0.0.1",
    "5.0.0.1",
    "6.0.0.1",
    "9.9.9.9",
    "::",
    "::1",
    "::ffff:1.0.0.1",
    "::ffff:8.8.8.8",
    "2002:0100:0001::1",
    "2002:0808:0808::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "64:ff9b::808:808",
    "fe80::1",
    "2400::1",
    "2a00:1::1",
    "2a00:1:0:1::1",
    "2a00:1:0:1:8000::1",
    "2001:4860:4860::8888",
]


def sample(count: int, seed: int) -> list[str]:
    """Random addresses of both versions, the same on every run."""
    chooser = random.Random(seed)  # noqa: S311 - reproducible samples, no secret
    v4 = [str(IPv4Address(chooser.getrandbits(32))) for _ in range(count)]
    v6 = [str(IPv6Address((0x2000 << 112) | chooser.getrandbits(115))) for _ in range(count // 4)]
    return [*EDGES, *v4, *v6]


def answers(lookups: DirectLookups | GeoResolver, addresses: list[str]) -> dict[str, IpLocation]:
    return {address: lookups.lookup(address) for address in addresses}


def test_the_bundled_database_answers_as_the_resolver(default_resolver: GeoResolver) -> None:
    """Thousands of addresses of the bundled GeoLite2 City get the resolver's labels exactly."""
    direct = DirectLookups([default_database_path()])
    addresses = sample(3000, seed=24)
    try:
        assert answers(direct, addresses) == answers(default_resolver, addresses)
    finally:
        direct.close()


@pytest.mark.parametrize("ip_version", [4, 6])
def test_small_files_answer_as_the_resolver(tmp_path: Path, ip_version: int) -> None:
    """An mmdb of either IP version, and an xdb before it for IPv4: the resolver's labels."""
    networks = SMALL_MMDB if ip_version == 6 else {k: v for k, v in SMALL_MMDB.items() if ":" not in k}
    mmdb = write_mmdb(tmp_path / "small.mmdb", networks, ip_version=ip_version)
    xdb = write_xdb(
        tmp_path / "v4.xdb",
        [(int(IPv4Address("1.0.0.0")), int(IPv4Address("1.0.0.255")), "中国|0|广东省|广州市|电信")],
    )
    addresses = sample(400, seed=ip_version)
    for files in ([mmdb], [xdb, mmdb], [xdb]):
        resolver = GeoResolver(files, check_interval=0)
        direct = DirectLookups(files)
        try:
            assert answers(direct, addresses) == answers(resolver, addresses), files
        finally:
            direct.close()
            resolver.close()


def test_a_malformed_address_is_the_resolvers_error(small_mmdb: Path) -> None:
    direct = DirectLookups([small_mmdb])
    with pytest.raises(InvalidArgument) as raised:
        direct.lookup("1.2.3", field="ips[0]")
    assert raised.value.field == "ips[0]"
    direct.close()


def test_files_that_are_not_databases_are_named(tmp_path: Path) -> None:
    """Missing, empty, random and the wrong --type: a GeoDatabaseError naming the file."""
    empty = tmp_path / "empty.mmdb"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(random.Random(1).randbytes(300_000))  # noqa: S311 - noise, no secret
    mmdb = write_mmdb(tmp_path / "small.mmdb", SMALL_MMDB)
    for path, kind in ((tmp_path / "missing.mmdb", None), (empty, None), (noise, None), (mmdb, "xdb")):
        with pytest.raises(GeoDatabaseError, match=path.name):
            DirectLookups([path], kind=kind)
    with pytest.raises(GeoDatabaseError, match="unknown IP database type"):
        DirectLookups([mmdb], kind="csv")


@pytest.mark.parametrize("fill", [b"\xff", b"\x00", b"\x7f"])
def test_a_corrupt_search_tree_is_a_database_error(tmp_path: Path, fill: bytes) -> None:
    """A file whose tree was overwritten (the metadata intact) answers or says it is corrupt.

    The resolver would refuse it at load (its tree walk); the direct reader reads only the
    nodes a lookup passes, so the error comes with the lookup, never as another exception.
    """
    path = write_mmdb(
        tmp_path / "small.mmdb", {**SMALL_MMDB, "7.0.0.0/8": city(place("FR", "法国", "France"))}
    )
    data = bytearray(path.read_bytes())
    data[: len(data) // 3] = fill * (len(data) // 3)
    path.write_bytes(bytes(data))
    direct = DirectLookups([path])
    refusals: list[str] = []
    try:
        for address in sample(200, seed=7):
            try:
                assert isinstance(direct.lookup(address), IpLocation)
            except GeoDatabaseError as error:
                refusals.append(str(error))
    finally:
        direct.close()
    assert all("corrupt" in refusal and path.name in refusal for refusal in refusals)
