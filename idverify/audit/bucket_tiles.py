"""The audit tiles in an S3-compatible bucket (``audit_tiles_url = "s3://bucket/prefix"``).

Each tenant's tiles, bundles and size file are objects below ``<prefix>/<tenant directory>/``,
named as on a volume (``audit/tiles.py``), so a folder uploaded as it is, or a bucket downloaded,
is the same log.

Write-once. A tile or bundle is PUT with ``If-None-Match: *``: the store refuses to create a
name that exists (412), atomically, so two integrators never replace each other's object, as
``link`` never replaces a file on a volume. A refused PUT is told apart by reading the object
back: the same bytes are a repeat (a crashed round, a racing integrator) and are fine, other
bytes are ``TileConflict``. A 409 (another PUT of that name in flight) is read back the same
way, after it settles. A store that ignores the header would let a PUT replace a tile: the
start-up check (:func:`check_write_once`) PUTs a probe twice and refuses to start in one line
when the second is not refused. Nothing here falls back to reading before writing, which races.

Durable. A PUT is answered once the store keeps the object, so ``write_all`` returning is the
tiles' fsync; a round's objects are PUT side by side, at most ``_WRITERS`` at once. The size
file is the one object replaced (a plain PUT), after the round's tiles, as on a volume.

The client is aiobotocore's (botocore's signing, credentials and retries over aiohttp), one per
volume, opened on first use. Credentials come from botocore's own chain alone (the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` environment variables, ``AWS_PROFILE`` and the
shared files, a web identity token, the instance's role): never from idverify's configuration,
so they are never in a config file, a settings dump or a log line. The endpoint
(``audit_tiles_s3_endpoint``, for MinIO, Ceph and the like, addressed by path) and the region
(``audit_tiles_s3_region``, else ``AWS_REGION``) are settings.

Failures. Any error reaching the bucket (refused, timed out, denied, a 5xx after botocore's
retries) is ``BucketUnavailable``, a ``TilesUnreachable``: a round fails and is retried, and a
read that needs the bucket is ``StoreUnavailable`` (UNAVAILABLE), never a missing tile. Error
messages name the object (``s3://bucket/key``) and the store's error code, never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from idverify.audit.tile_store import TileConflict, TilesUnreachable
from idverify.audit.tile_volume import SIZE_FILE, aside_plan, parse_size, tenant_directory
from idverify.audit.tiles import cut_to_width, parse_path

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["BucketLocation", "BucketTiles", "BucketUnavailable", "BucketVolume", "check_write_once"]

_WRITERS = 8
"""Objects of a round PUT at once: requests waiting for the store, not computing."""

_ATTEMPTS = 3
"""botocore's tries of one request (standard mode: throttling, 5xx and connection errors)."""

_CONNECT_SECONDS = 5
_READ_SECONDS = 20

# S3's bucket names (lowercase letters, digits, dots and hyphens, 3-63, a letter or digit at
# each end); a prefix of plain path segments, none empty, none '.' or '..'.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")


class BucketUnavailable(TilesUnreachable):
    """The bucket could not be reached, or refused a request (the message names the object)."""


@dataclass(frozen=True)
class BucketLocation:
    """A bucket and the prefix below which every tenant's tiles are kept."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BucketLocation:
        """``s3://bucket`` or ``s3://bucket/a/prefix``.

        Raises:
            ValueError: not such a URL (the message says what is wrong).
        """
        scheme, sep, rest = url.partition("://")
        if scheme != "s3" or not sep:
            raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.rstrip("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        for segment in prefix.split("/") if prefix else []:
            if not _SEGMENT.fullmatch(segment) or segment in {".", ".."}:
                raise ValueError(f"the prefix {prefix!r} has a segment {segment!r} that is not a plain name")
        return cls(bucket, prefix)

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below the prefix."""
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def url(self, key: str = "") -> str:
        """``s3://bucket/key``, how messages name an object."""
        return f"s3://{self.bucket}/{key or self.prefix}"


class _Client:
    """One aiobotocore S3 client, opened on first use and closed by ``aclose``."""

    def __init__(self, endpoint: str, region: str) -> None:
        self._endpoint = endpoint
        self._region = region
        self._opened: S3Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()

    async def get(self) -> S3Client:
        async with self._opening:
            if self._opened is None:
                from aiobotocore.config import AioConfig  # noqa: PLC0415 - the s3 extra, only when used
                from aiobotocore.session import get_session  # noqa: PLC0415

                config = AioConfig(
                    retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
                    connect_timeout=_CONNECT_SECONDS,
                    read_timeout=_READ_SECONDS,
                    max_pool_connections=_WRITERS,
                    # A store of one's own (MinIO, Ceph) is addressed by path: its host names no bucket.
                    s3={"addressing_style": "path" if self._endpoint else "auto"},
                )
                client = get_session().create_client(
                    "s3",
                    endpoint_url=self._endpoint or None,
                    region_name=self._region or None,
                    config=config,
                )
                opened: S3Client = await self._stack.enter_async_context(client)
                self._opened = opened
            return self._opened

    async def aclose(self) -> None:
        self._opened = None
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def _reaching(location: BucketLocation, key: str) -> AsyncIterator[None]:
    """Turns the client's failures into ``BucketUnavailable`` naming the object."""
    import aiohttp  # noqa: PLC0415 - what aiobotocore itself imports
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        yield
    except ClientError as error:
        raise BucketUnavailable(f"{location.url(key)}: {_code(error)}") from None
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as error:
        raise BucketUnavailable(f"{location.url(key)}: {type(error).__name__}: {error}") from None


def _code(error: Any) -> str:
    """The store's error code and HTTP status of a botocore ``ClientError``."""
    response = error.response
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    return f"{response.get('Error', {}).get('Code', 'error')} (HTTP {status})"


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class BucketTiles:
    """One tenant's tiles as objects below one key prefix; a ``TileStore``."""

    def __init__(self, client: _Client, location: BucketLocation, base: str) -> None:
        self._client = client
        self._location = location
        self._base = base

    def _key(self, path: str) -> str:
        parse_path(path)  # only canonical tile names
        return f"{self._base}/{path}"

    async def read(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        return await _get(self._client, self._location, self._key(path))

    async def write(self, path: str, data: bytes) -> None:
        """Stores one object unless it exists with the same bytes (then ``TileConflict``)."""
        await self.write_all([(path, data)])

    async def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        """PUTs each object unless it exists with the same bytes (then ``TileConflict``).

        At most ``_WRITERS`` at once; all are stored once it returns.
        """
        keys = [(self._key(path), data) for path, data in files]
        room = asyncio.Semaphore(_WRITERS)

        async def put(key: str, data: bytes) -> None:
            async with room:
                await _put_once(self._client, self._location, key, data)

        # Every PUT is let finish (none is left half-sent behind a failure); a conflict is
        # reported before any other failure, as it stops the tenant rather than a round.
        results = await asyncio.gather(*(put(key, data) for key, data in keys), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in sorted(failures, key=lambda failure: not isinstance(failure, TileConflict)):
            raise failure

    async def drop_partials(self, full: str) -> None:
        """Deletes the objects below ``<full>.p/``."""
        prefix = f"{self._key(full)}.p/"
        keys = [key async for key in _list(self._client, self._location, prefix)]
        await _delete(self._client, self._location, keys)


async def _get(client: _Client, location: BucketLocation, key: str) -> bytes | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    s3 = await client.get()
    async with _reaching(location, key):
        try:
            response = await s3.get_object(Bucket=location.bucket, Key=key)
        except ClientError as error:
            if _status(error) == 404:  # noqa: PLR2004 - NoSuchKey
                return None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data


async def _put_once(client: _Client, location: BucketLocation, key: str, data: bytes) -> None:
    """PUTs ``data`` under a name no other bytes may have (see the module's docstring)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    s3 = await client.get()
    for attempt in range(_ATTEMPTS):
        async with _reaching(location, key):
            try:
                await s3.put_object(Bucket=location.bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as error:
                # 412: the name exists; 409: another PUT of it is in flight (read it once it lands).
                if _status(error) not in {409, 412}:
                    raise
            else:
                return
        held = await _get(client, location, key)
        if held == data:
            return
        if held is not None:
            raise TileConflict(f"{location.url(key)} exists with other bytes")
        await asyncio.sleep(0.1 * (attempt + 1))  # the other PUT failed: try ours again
    raise BucketUnavailable(f"{location.url(key)}: refused, yet not there after {_ATTEMPTS} tries")


async def _list(client: _Client, location: BucketLocation, prefix: str) -> AsyncIterator[str]:
    s3 = await client.get()
    async with _reaching(location, prefix):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix)
        async for page in pages:
            for item in page.get("Contents", []):
                if "Key" in item:
                    yield item["Key"]


async def _delete(client: _Client, location: BucketLocation, keys: Sequence[str]) -> None:
    s3 = await client.get()
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        chunk = keys[start : start + 1000]
        async with _reaching(location, chunk[0]):
            response = await s3.delete_objects(
                Bucket=location.bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True}
            )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise BucketUnavailable(
                f"{location.url(first.get('Key', chunk[0]))}: not deleted ({first.get('Code', 'error')})"
            )


class BucketVolume:
    """Every tenant's tiles below ``s3://bucket/prefix/<tenant directory>/``; a ``TileVolume``."""

    def __init__(self, location: BucketLocation, *, endpoint: str = "", region: str = "") -> None:
        self.location = location
        self._client = _Client(endpoint, region)

    def _base(self, tenant: str) -> str:
        return self.location.key(tenant_directory(tenant))

    def tiles(self, tenant: str) -> BucketTiles:
        """The tenant's tiles and bundles, as objects."""
        return BucketTiles(self._client, self.location, self._base(tenant))

    def where(self, tenant: str) -> str:
        """``s3://bucket/prefix/<tenant directory>``."""
        return self.location.url(self._base(tenant))

    async def read_size(self, tenant: str) -> int:
        """What the tenant's size object says (0: none, or not a number)."""
        return parse_size(await _get(self._client, self.location, f"{self._base(tenant)}/{SIZE_FILE}"))

    async def write_size(self, tenant: str, size: int) -> None:
        """Replaces the size object (the one object ever replaced)."""
        key = f"{self._base(tenant)}/{SIZE_FILE}"
        s3 = await self._client.get()
        async with _reaching(self.location, key):
            await s3.put_object(Bucket=self.location.bucket, Key=key, Body=b"%d\n" % size)

    async def set_aside(self, tenant: str, keep: int) -> str | None:
        """Moves the objects beyond ``keep`` below ``<tenant directory>.beyond-<keep>[-n]/``.

        Each is copied there, then deleted: a crash between leaves it in both places, and a
        rerun copies it again to a new prefix and deletes what is left.
        """
        base = self._base(tenant)
        names = [key.removeprefix(f"{base}/") async for key in _list(self._client, self.location, f"{base}/")]
        plan = aside_plan(names, keep)
        if not plan.beyond:
            return None
        number = 1
        target = f"{base}.beyond-{keep}"
        while [key async for key in _list(self._client, self.location, f"{target}/")]:
            number += 1
            target = f"{base}.beyond-{keep}-{number}"
        tiles = self.tiles(tenant)
        for kept_name, full in plan.cut:
            whole = await tiles.read(full)
            if whole is not None:
                await tiles.write(kept_name, cut_to_width(kept_name, whole))
        s3 = await self._client.get()
        for name in plan.beyond:
            async with _reaching(self.location, f"{base}/{name}"):
                await s3.copy_object(
                    Bucket=self.location.bucket,
                    Key=f"{target}/{name}",
                    CopySource={"Bucket": self.location.bucket, "Key": f"{base}/{name}"},
                )
        await _delete(self._client, self.location, [f"{base}/{name}" for name in plan.beyond])
        await self.write_size(tenant, keep)
        return self.location.url(target)

    async def aclose(self) -> None:
        """Closes the client (a process that used the volume, before its loop ends)."""
        await self._client.aclose()


async def check_write_once(volume: BucketVolume) -> None:
    """Refuses a bucket that cannot be reached, or that would let a PUT replace a tile.

    A probe object (a name no tenant directory has) is PUT with ``If-None-Match: *`` twice; the
    second must be refused. Then it is deleted.

    Raises:
        BucketUnavailable: the bucket cannot be reached, or refused the probe (the message
            names it and the store's code).
        ValueError: the store ignores ``If-None-Match`` (a tile could be overwritten).
    """
    from botocore.exceptions import ClientError  # noqa: PLC0415

    location = volume.location
    key = location.key(f".write-once-probe-{uuid.uuid4().hex}")
    s3 = await volume._client.get()  # noqa: SLF001 - the volume's own client
    try:
        replaced = False
        async with _reaching(location, key):
            await s3.put_object(Bucket=location.bucket, Key=key, Body=b"probe", IfNoneMatch="*")
            try:
                await s3.put_object(Bucket=location.bucket, Key=key, Body=b"other", IfNoneMatch="*")
                replaced = True
            except ClientError as error:
                if _status(error) != 412:  # noqa: PLR2004 - Precondition Failed, what a store must say
                    raise
    finally:
        with contextlib.suppress(BucketUnavailable):
            await _delete(volume._client, location, [key])  # noqa: SLF001
    if replaced:
        raise ValueError(
            f"{location.url()} ignores If-None-Match: * (conditional writes), so a PUT could replace "
            "an audit tile; use a store that refuses it (AWS S3 and MinIO do)"
        )
