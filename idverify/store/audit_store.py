"""A tenant's audit log on Redis: its entries, index postings, and the stored Merkle tree.

Entries are appended by the Lua prelude in the same step as the change they record; the tree is
built from them by ``idverify.audit.integrator``, which writes it through
:meth:`AuditStore.write_tree` (its ``IntegratedLog`` port); queries read through the ``IndexedLog``
port of ``idverify.audit.query``. Every key is in the tenant's hash slot
(``idverify.store.keys`` lists them), and each read here is one round trip: a proof reads its
O(log n) nodes with one script of ``GETRANGE`` calls (``audit_nodes.lua``), never the whole log.

Tree nodes are stored level by level: node ``(level, index)`` is 32 bytes at offset
``32 * (index % CHUNK_NODES)`` of the string ``audit:tree:<level>:<index // CHUNK_NODES>``. That
is 32 bytes per node and no per-node overhead (a hash field costs three times that), and
chunks keep every string far below Redis's 512 MB limit. With ``audit_tiles_dir`` set, a round
writes its tiles first and no node here (``TreeState.tiled``): the tree head then keeps the size,
root and compact range alone, marked ``nodes`` = ``tiles`` (``TILED``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from idverify.audit.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange, NodeId
from idverify.audit.query import Posting, PostingSeek
from idverify.audit.tree_state import StoredHead, TreeInTiles, TreeState
from idverify.audit.trimmed_entries import RecentSeek
from idverify.store.connection import RedisClient, translate_errors
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripted_store import ScriptedStore
from idverify.store.scripts import Scripts, script_source

__all__ = [
    "CHUNK_NODES",
    "POSTING_WIDTH",
    "TILED",
    "AuditStore",
    "NodeWrite",
    "decode_postings",
    "group_node_writes",
    "node_chunks",
]

CHUNK_NODES = 1 << 20
"""Nodes per stored string (32 MiB)."""

POSTING_WIDTH = 6
"""Bytes per sequence number in an index posting (big-endian; up to 2**48 entries)."""

TILED = b"tiles"
"""The tree head's ``nodes`` field once the tree's nodes are kept in tiles (``audit_integrate.lua``)."""


@dataclass(frozen=True, slots=True)
class NodeWrite:
    """Consecutive nodes of one level, within one stored chunk."""

    level: int
    first_index: int
    hashes: bytes

    @property
    def chunk(self) -> int:
        """The stored string the nodes go to."""
        return self.first_index // CHUNK_NODES

    @property
    def offset(self) -> int:
        """Byte offset of the first node in its string."""
        return (self.first_index % CHUNK_NODES) * HASH_SIZE


def decode_postings(data: bytes) -> list[int]:
    """The sequence numbers of a posting's bytes."""
    return [
        int.from_bytes(data[i : i + POSTING_WIDTH], "big")
        for i in range(0, len(data) - len(data) % POSTING_WIDTH, POSTING_WIDTH)
    ]


def node_chunks(size: int) -> list[tuple[int, int]]:
    """The ``(level, chunk)`` strings that hold the nodes of a tree of ``size`` leaves."""
    return [
        (level, chunk)
        for level in range(size.bit_length())
        for chunk in range(((size >> level) + CHUNK_NODES - 1) // CHUNK_NODES)
    ]


def group_node_writes(nodes: Iterable[tuple[NodeId, bytes]]) -> list[NodeWrite]:
    """Packs nodes into runs of consecutive indices per level and chunk, one write each."""
    ordered = sorted(nodes, key=lambda item: (item[0].level, item[0].index))
    writes: list[NodeWrite] = []
    run: list[bytes] = []
    level = first = -1
    for node, value in ordered:
        contiguous = node.level == level and node.index == first + len(run)
        if contiguous and node.index % CHUNK_NODES != 0:
            run.append(value)
            continue
        if run:
            writes.append(NodeWrite(level, first, b"".join(run)))
        level, first, run = node.level, node.index, [value]
    if run:
        writes.append(NodeWrite(level, first, b"".join(run)))
    return writes


class AuditStore(ScriptedStore):
    """Reads of the audit logs of every tenant, and the tree writes of the integrator."""

    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        super().__init__(redis, scripts)
        # Run directly rather than through Scripts.run: a proof is this one read inside its
        # RPC's span, and a child span of its own would cost half a Redis round trip.
        self._read_nodes_script = redis.register_script(script_source("audit_nodes"))

    async def exists(self, tenant: str) -> bool:
        """Whether the tenant's log has any entry."""
        async with translate_errors():
            return bool(await self._redis.exists(TenantKeys(tenant).audit_head()))

    async def size(self, tenant: str) -> int:
        """Entries in the log (integrated or not).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            value = await self._redis.hget(TenantKeys(tenant).audit_head(), "size")
        return int(value or 0)

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The stored bytes of entries, in order; None where there is no such entry.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        if not indices:
            return []
        async with translate_errors():
            found = await self._redis.hmget(TenantKeys(tenant).audit_log(), [str(i) for i in indices])
        return [_as_bytes(value) for value in found]

    async def tree_state(self, tenant: str) -> TreeState:
        """The integrated tree: size, root and compact range.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            ValueError: when the stored head is malformed (the store is corrupt).
        """
        async with translate_errors():
            size, root, compact, checkpoint, key_id, signature, nodes = (
                _as_bytes(value)
                for value in await self._redis.hmget(
                    TenantKeys(tenant).audit_tree_head(),
                    ["size", "root", "range", "head_checkpoint", "head_key_id", "head_signature", "nodes"],
                )
            )
        # Read in the same step as the tree, so that a head request costs no extra round trip.
        last_head = (
            StoredHead(checkpoint, key_id.decode("ascii", "replace"), signature)
            if checkpoint is not None and key_id is not None and signature is not None
            else None
        )
        tiled = nodes == TILED
        if size is None or root is None or compact is None:
            return TreeState(0, EMPTY_ROOT, CompactRange(), last_head, tiled=tiled)
        count = int(size)
        hashes = tuple(compact[i : i + HASH_SIZE] for i in range(0, len(compact), HASH_SIZE))
        return TreeState(count, root, CompactRange(count, hashes), last_head, tiled=tiled)

    async def read_nodes(self, tenant: str, nodes: Sequence[NodeId]) -> list[bytes | None]:
        """Stored node hashes in one round trip; None for a node not stored (yet).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return await self._read_runs(tenant, [(node.level, node.index, 1) for node in nodes])

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """Stored leaf hashes of entries, reading each run of consecutive indices at once.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        runs: list[tuple[int, int, int]] = []  # (level 0, first index, count)
        for index in indices:
            if runs and index == runs[-1][1] + runs[-1][2] and index % CHUNK_NODES != 0:
                runs[-1] = (0, runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((0, index, 1))
        return await self._read_runs(tenant, runs)

    async def _read_runs(self, tenant: str, runs: Sequence[tuple[int, int, int]]) -> list[bytes | None]:
        """The hashes of runs ``(level, first index, count)`` of consecutive nodes within one chunk."""
        if not runs:
            return []
        packed = b"".join(
            level.to_bytes(1, "big") + first.to_bytes(POSTING_WIDTH, "big") + count.to_bytes(4, "big")
            for level, first, count in runs
        )
        async with translate_errors():
            reply = await self._read_nodes_script(
                keys=[TenantKeys(tenant).audit_tree_head()], args=[CHUNK_NODES, packed]
            )
        blob = _as_bytes(reply) or b""
        values = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
        # SETRANGE pads a string with zero bytes: a zero hash is a node not written.
        return [v if any(v) else None for v in values]

    async def write_tree(
        self, tenant: str, old_size: int, state: TreeState, nodes: Mapping[NodeId, bytes]
    ) -> bool:
        """Stores completed nodes and moves the tree head, if the tree is still at ``old_size``.

        The nodes go out as one ``SETRANGE`` per run of consecutive nodes within a chunk, all in
        the one ``audit_integrate.lua`` call. A ``state.tiled`` round (its tiles written) stores
        no node: the head is marked as kept in tiles, and the round that marks it unlinks the
        node chunks of the tree of ``old_size`` that an older round left.

        Returns:
            False when another process moved the tree first (nothing was written).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
            TreeInTiles: a round with nodes, of a tree kept in tiles.
        """
        keys = TenantKeys(tenant)
        args: list[str | int | bytes] = [old_size, state.size, state.root, b"".join(state.compact.hashes)]
        if state.tiled:
            chunks = [keys.audit_tree(level, chunk) for level, chunk in node_chunks(old_size)]
            args.append(TILED)
        else:
            writes = group_node_writes(nodes.items())
            chunks = [keys.audit_tree(w.level, w.chunk) for w in writes]
            args.append(b"redis")
            for write in writes:
                args += [write.offset, write.hashes]
        result = await self._scripts.run("audit_integrate", [keys.audit_tree_head(), *chunks], args)
        if result[0] == b"TILES_KEPT":
            raise TreeInTiles.of(tenant)
        return bool(result[0] == b"OK")

    async def replace_signed_head(self, tenant: str, previous: StoredHead | None, signed: StoredHead) -> bool:
        """Stores a newly signed head, if the stored one is still ``previous``.

        Returns:
            False when another process stored a head first (nothing was written).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        expected = previous.checkpoint if previous is not None else b""
        result = await self._scripts.run(
            "audit_head",
            [TenantKeys(tenant).audit_tree_head()],
            [expected, signed.checkpoint, signed.key_id, signed.signature],
        )
        return bool(result[0] == b"OK")

    async def seek_times(self, tenant: str, times_ms: Sequence[int]) -> list[int]:
        """For each time, the index of the first entry at or after it (the size if none).

        Over a log whose entries were never trimmed; ``audit.trimmed_entries`` searches the
        bundles below a trim point.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        return (await self.seek_recent_times(tenant, times_ms)).indices

    async def seek_recent_times(self, tenant: str, times_ms: Sequence[int]) -> RecentSeek:
        """For each time, the first entry at or after it among those Redis holds, and the trim point.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        found = await self._scripts.run(
            "audit_seek", [keys.audit_log(), keys.audit_head()], ["time", *times_ms]
        )
        return RecentSeek(int(found[0]), [int(i) for i in found[1:]])

    async def trimmed(self, tenant: str) -> int:
        """The trim point: entries below it are no longer in Redis, only in the entry bundles.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            value = await self._redis.hget(TenantKeys(tenant).audit_head(), "trimmed")
        return int(value or 0)

    async def trim(self, tenant: str, target: int, batch: int) -> int:
        """Drops up to ``batch`` entries below ``target`` (and the integrated tree) from Redis.

        ``audit_trim.lua``: the trim point moves forward only, with the deletions it counts.

        Returns:
            The trim point after the call.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        found = await self._scripts.run(
            "audit_trim", [keys.audit_log(), keys.audit_head(), keys.audit_tree_head()], [target, batch]
        )
        return int(found)

    async def mark_trimmed(self, tenant: str) -> None:
        """Lists the tenant among those whose logs are trimmed, before the first trim.

        A server started without ``audit_tiles_dir`` reads the list and refuses to serve logs
        it cannot read whole (``store.audit_logs.refuse_trimmed_logs``).

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            await self._redis.sadd(GlobalKeys.TRIMMED_AUDIT_LOGS, tenant)

    async def seek_postings(self, tenant: str, postings: Sequence[Posting], index: int) -> list[PostingSeek]:
        """For each posting, the position of its first index at or after ``index``, and its length.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        keys = TenantKeys(tenant)
        posting_keys = [keys.audit_index(posting.field, posting.value) for posting in postings]
        found = await self._scripts.run(
            "audit_seek", [keys.audit_log(), keys.audit_head(), *posting_keys], ["posting", index]
        )
        return [PostingSeek(int(found[i]), int(found[i + 1])) for i in range(0, len(found), 2)]

    async def read_posting(self, tenant: str, posting: Posting, position: int, count: int) -> list[int]:
        """Up to ``count`` indices of a posting from ``position`` on.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        key = TenantKeys(tenant).audit_index(posting.field, posting.value)
        start = position * POSTING_WIDTH
        async with translate_errors():
            data = await self._redis.getrange(key, start, start + count * POSTING_WIDTH - 1)
        return decode_postings(_as_bytes(data) or b"")


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """A reply as bytes (clients here return bytes; the stubs allow str too)."""
    return value.encode() if isinstance(value, str) else value
