"""The audit tiles in an S3-compatible bucket: write-once by conditional PUTs, and every mirror step over it.

A real S3 server (moto's, ``tests/s3_server.py``) on a loopback port, reached with aiobotocore's
signed requests as a deployment reaches MinIO or AWS; a bucket of its own per test. The log of
record is the in-memory one, as in ``test_tile_mirror.py``, whose helpers grow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from idverify.audit import bucket_tiles, merkle
from idverify.audit.bucket_tiles import BucketLocation, BucketVolume, check_write_once
from idverify.audit.integrator import fold
from idverify.audit.merkle import CompactRange, leaf_hash
from idverify.audit.tile_mirror import EntriesUnreadable, TileMirror, TilesStopped
from idverify.audit.tile_store import TileConflict, TiledLog
from idverify.audit.tile_volume import SIZE_FILE, tree_files
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.config import load_settings
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.store.audit_logs import check_tiles_bucket
from idverify.store.embedded import free_port
from idverify.testing.memory_audit_log import MemoryAuditLog
from tests.s3_server import CREDENTIALS, S3Server, s3_server
from tests.unit.audit.test_tile_mirror import TENANT, diverge, flow_over, grow, leaves


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region as a deployment gives them: botocore's chain reads the environment."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(server: S3Server) -> str:
    name = f"tiles-{uuid.uuid4().hex[:12]}"
    server.make_bucket(name)
    return name


@pytest.fixture
async def volume(server: S3Server, bucket: str) -> AsyncIterator[BucketVolume]:
    opened = BucketVolume(BucketLocation.parse(f"s3://{bucket}/audit/eu"), endpoint=server.endpoint)
    yield opened
    await opened.aclose()


class Tiled:
    """A log of record whose tree is kept in the bucket, as a server with ``audit_tiles_url`` runs it."""

    def __init__(self, volume: BucketVolume, *, log: MemoryAuditLog | None = None) -> None:
        self.log = log if log is not None else MemoryAuditLog(tiles=True)
        self.log.tiles = True
        self.mirror = TileMirror(volume, self.log)
        self.log.write_round = self.mirror.write_round
        self.tiled = TiledAuditLog(self.log, self.mirror)
        self.tiles = TiledLog(volume.tiles(TENANT))

    async def rounds(self, sizes: tuple[int, ...]) -> None:
        for size in sizes:
            await grow(self.log, size)
            await self.tiled.integrate(TENANT)


def tenant_objects(
    server: S3Server, bucket: str, tenant_prefix: str = f"audit/eu/{TENANT}/"
) -> dict[str, bytes]:
    return {
        key.removeprefix(tenant_prefix): data for key, data in server.objects(bucket, tenant_prefix).items()
    }


def test_urls_name_a_bucket_and_a_prefix() -> None:
    assert BucketLocation.parse("s3://tiles") == BucketLocation("tiles", "")
    assert BucketLocation.parse("s3://tiles/a/b/") == BucketLocation("tiles", "a/b")
    assert BucketLocation.parse("s3://tiles/a/b").key("acme", "tiles-size") == "a/b/acme/tiles-size"
    assert BucketLocation.parse("s3://tiles").key("acme") == "acme"


async def test_an_object_is_written_once_the_same_bytes_taken_other_bytes_refused(
    server: S3Server, bucket: str, volume: BucketVolume
) -> None:
    tiles = volume.tiles(TENANT)
    await tiles.write("tile/entries/000.p/1", b"\x00\x01a")
    await tiles.write("tile/entries/000.p/1", b"\x00\x01a")  # a repeated round: fine
    with pytest.raises(TileConflict, match=rf"^s3://{bucket}/audit/eu/{TENANT}/tile/entries/000.p/1 exists"):
        await tiles.write("tile/entries/000.p/1", b"\x00\x01b")
    assert server.get(bucket, f"audit/eu/{TENANT}/tile/entries/000.p/1") == b"\x00\x01a"  # not replaced
    assert await tiles.read("tile/entries/000.p/2") is None
    with pytest.raises(ValueError, match="tile"):
        await tiles.write("tile/0/../../escaped", b"x")  # only canonical names become keys


async def test_a_round_is_rfc_6962s_tree_and_full_tiles_leave_no_partial_objects(
    server: S3Server, bucket: str, volume: BucketVolume
) -> None:
    world = Tiled(volume)
    await world.rounds((1, 5, 256, 300, 700))
    state = await world.log.tree_state(TENANT)
    assert (state.size, state.tiled) == (700, True)
    assert await world.mirror.size(TENANT) == 700
    written = tenant_objects(server, bucket)
    assert written[SIZE_FILE] == b"700\n"
    assert {"tile/0/000", "tile/0/001", "tile/0/002.p/188", "tile/entries/002.p/188"} <= set(written)
    assert not [name for name in written if name.startswith(("tile/0/000.p/", "tile/entries/000.p/"))]
    hashes = await leaves(world.log)
    for size in (1, 5, 256, 300, 700):
        assert await world.tiles.root(size) == merkle.root(hashes[:size])
    assert await world.tiles.read_entries(700, [0, 699]) == await world.log.entries(TENANT, [0, 699])
    for index in (0, 255, 699):
        proof = await flow_over(world.tiled).inclusion_proof(TENANT, index, 700)
        assert proof.hashes == merkle.inclusion_proof(index, 700, hashes)


async def test_two_integrators_racing_over_one_bucket_write_one_tree(server: S3Server, bucket: str) -> None:
    location = BucketLocation.parse(f"s3://{bucket}/audit/eu")
    entries = [b"entry %d" % n for n in range(600)]
    compact, completed = await fold(CompactRange(), entries)
    volumes = [BucketVolume(location, endpoint=server.endpoint) for _ in range(2)]
    try:
        await asyncio.gather(*(TiledLog(v.tiles(TENANT)).append(0, entries, completed) for v in volumes))
        assert await TiledLog(volumes[0].tiles(TENANT)).root(600) == compact.root()
    finally:
        for opened in volumes:
            await opened.aclose()
    assert merkle.root([leaf_hash(entry) for entry in entries]) == compact.root()


async def test_a_conflict_stops_the_tenant_naming_the_object_and_set_aside_moves_objects_beside_it(
    server: S3Server, bucket: str, volume: BucketVolume, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restored with 100 of the 300 entries the bucket holds; the entries appended since differ."""
    await Tiled(volume).rounds((300,))
    restored = Tiled(volume, log=MemoryAuditLog(tiles=True))
    await grow(restored.log, 100)
    restored.log.write_round, restored.log.tiles = None, False
    await restored.log.integrate(TENANT)
    restored.log.tiles, restored.log.write_round = True, restored.mirror.write_round
    await diverge(restored.log, 200)
    assert (await restored.tiled.integrate(TENANT)).size == 200  # new widths: no object had them
    await diverge(restored.log, 260)
    with caplog.at_level(logging.ERROR, logger="idverify.audit"), pytest.raises(TilesStopped):
        await restored.tiled.integrate(TENANT)
    assert f"s3://{bucket}/audit/eu/{TENANT}/tile/entries/000 exists with other bytes" in caplog.text
    moved = await restored.mirror.set_aside(TENANT, 200)
    assert moved == f"s3://{bucket}/audit/eu/{TENANT}.beyond-200"
    aside = tenant_objects(server, bucket, f"audit/eu/{TENANT}.beyond-200/")
    assert {"tile/0/000", "tile/entries/000", "tile/0/001.p/44"} <= set(aside)
    kept = tenant_objects(server, bucket)
    assert kept[SIZE_FILE] == b"200\n"
    assert set(tree_files(200)) <= set(kept)
    assert await restored.tiles.root(200) == (await restored.log.tree_state(TENANT)).root
    again = Tiled(volume, log=restored.log)  # the restarted server
    assert (await again.tiled.integrate(TENANT)).size == 260
    proof = await flow_over(again.tiled).inclusion_proof(TENANT, 255, 260)
    assert proof.hashes == merkle.inclusion_proof(255, 260, await leaves(restored.log))


async def test_an_entry_altered_in_the_bucket_is_unreadable_naming_its_bundle(
    server: S3Server, bucket: str, volume: BucketVolume
) -> None:
    world = Tiled(volume)
    await world.rounds((300,))
    key = f"audit/eu/{TENANT}/tile/entries/000"
    original = server.get(bucket, key)
    assert original is not None
    server.put(bucket, key, original.replace(b"r5", b"r6", 1))  # anyone with write access to the bucket
    assert await world.mirror.read_entries(TENANT, [200, 299], 300) == await world.log.entries(
        TENANT, [200, 299]
    )
    with pytest.raises(
        EntriesUnreadable, match=rf"tile/entries/000\[\.p/\*\] in s3://{bucket}/audit/eu/{TENANT}\)"
    ):
        await world.mirror.read_entries(TENANT, [5], 300)


@pytest.fixture
def one_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """No retries by botocore: a refused connection is an answer at once, not after backoff."""
    monkeypatch.setattr(bucket_tiles, "_ATTEMPTS", 1)


@pytest.mark.usefixtures("one_try")
async def test_a_bucket_out_of_reach_is_unavailable_never_missing_tiles() -> None:
    away = BucketVolume(BucketLocation.parse("s3://tiles/audit"), endpoint=f"http://127.0.0.1:{free_port()}")
    world = Tiled(away)
    try:
        await grow(world.log, 10)
        with pytest.raises(StoreUnavailable):
            await world.tiled.integrate(TENANT)
        assert (await world.log.tree_state(TENANT)).size == 0  # the head did not move
        with pytest.raises(
            StoreUnavailable, match=r"cannot be reached now: s3://tiles/audit/acme/tiles-size"
        ):
            await world.mirror.read_entries(TENANT, [0], 5)
        with pytest.raises(StoreUnavailable, match="cannot be reached now"):
            await world.mirror.read_nodes(TENANT, 10, [merkle.NodeId(0, 0)])
    finally:
        await away.aclose()


@pytest.mark.usefixtures("one_try")
async def test_start_up_refuses_a_bucket_out_of_reach_or_missing_in_one_line(
    server: S3Server, tmp_path: Path
) -> None:
    def settings(url: str, endpoint: str) -> object:
        config = tmp_path / "idverify.toml"
        config.write_text(
            f'audit_tiles_url = "{url}"\naudit_tiles_s3_endpoint = "{endpoint}"\n', encoding="utf-8"
        )
        return load_settings(config, environ={})

    away = settings("s3://tiles/audit", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(
        ConfigError, match=r"^audit_tiles_url: s3://tiles/audit/\.write-once-probe-\w+: Endpoint"
    ):
        await check_tiles_bucket(away)  # type: ignore[arg-type]
    missing = settings("s3://no-such-bucket/audit", server.endpoint)
    with pytest.raises(
        ConfigError, match=r"^audit_tiles_url: s3://no-such-bucket/.*: NoSuchBucket \(HTTP 404\)$"
    ):
        await check_tiles_bucket(missing)  # type: ignore[arg-type]
    for error in (away, missing):
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(error)


async def test_start_up_takes_a_bucket_that_refuses_to_replace_and_leaves_no_probe(
    server: S3Server, bucket: str, volume: BucketVolume
) -> None:
    await check_write_once(volume)
    assert server.objects(bucket) == {}


@contextlib.asynccontextmanager
async def header_stripping_relay(upstream_port: int) -> AsyncIterator[int]:
    """A relay in front of the server that drops ``If-None-Match``: a store that ignores it."""
    writers: list[asyncio.StreamWriter] = []
    links: list[asyncio.Task[None]] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, strip: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk.replace(b"If-None-Match: *\r\n", b"") if strip else chunk)
                await writer.drain()

    async def link(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        writers.extend((client_writer, upstream_writer))
        links.append(asyncio.create_task(pump(upstream_reader, client_writer, strip=False)))
        await pump(client_reader, upstream_writer, strip=True)

    relay = await asyncio.start_server(link, "127.0.0.1", 0)
    try:
        yield relay.sockets[0].getsockname()[1]
    finally:
        relay.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        for task in links:
            task.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        await relay.wait_closed()


async def test_start_up_refuses_a_store_that_ignores_conditional_writes(
    server: S3Server, bucket: str
) -> None:
    port = int(server.endpoint.rsplit(":", 1)[1])
    async with header_stripping_relay(port) as relay_port:
        ignoring = BucketVolume(
            BucketLocation.parse(f"s3://{bucket}/audit"), endpoint=f"http://127.0.0.1:{relay_port}"
        )
        try:
            with pytest.raises(ValueError, match=r"ignores If-None-Match: \* \(conditional writes\)"):
                await check_write_once(ignoring)
        finally:
            await ignoring.aclose()
    assert server.objects(bucket) == {}  # the probe is deleted either way
