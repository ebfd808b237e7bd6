"""Where a tenant's bucketed records go: each bucket's slot, its label, and the stored layout.

Bucket ``b`` of tenant ``T`` sits on hash slot ``16·b + o``, ``o = SHA-256(T)[0] mod 16``: a
progression of step 16, so each of ``redis-cli --cluster create``'s contiguous slot ranges holds
an even share of a tenant's buckets, and tenants spread within each 16-slot block. A bucket's
*label* is the hash tag's text ``t:T:<n>`` with the smallest ``n`` whose CRC16 lands on that
slot; one search finds all 1,024 at once (about 123,000 CRC16s; docs/PERFORMANCE.md has its
time). Which bucket a record belongs to is ``domain.buckets.bucket_of``.

A tenant's layout is stored once, ``iv1:{t:T}:buckets`` (``bucket_layout.lua`` writes it only
where none is), so a later change of the search can never move data: the stored labels are the
layout. A stored layout is checked when read (its count, and each label on its bucket's slot);
one that fails is refused, never used.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import itertools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from idverify.domain.buckets import BUCKETS
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import script_source
from idverify.store.topology import is_cluster

__all__ = [
    "BUCKETS",
    "PLANNED",
    "BucketLayout",
    "BucketLayoutRefused",
    "NodeShare",
    "RedisBucketLayouts",
    "bucket_slot",
    "node_shares",
    "search_layout",
    "slot_offset",
    "worst_deviation",
]

SLOTS: Final = REDIS_CLUSTER_HASH_SLOTS
_STRIDE: Final = SLOTS // BUCKETS
PLANNED: Final = "planned"
"""The state of a layout written and no record moved yet (the migration adds its own states)."""
_STATES: Final = frozenset({PLANNED})
# A label's number, 4 bytes big-endian each: 4 KiB for 1,024 labels.
_PACKED: Final = struct.Struct(">I")


class BucketLayoutRefused(Exception):
    """A stored layout is not one this release can use (tampered or corrupt): it is never used."""


@dataclass(frozen=True, slots=True)
class BucketLayout:
    """A tenant's buckets: ``labels[b]`` is bucket ``b``'s hash tag text, ``t:<tenant>:<n>``."""

    tenant: str
    count: int
    labels: tuple[str, ...]
    state: str = PLANNED


@dataclass(frozen=True, slots=True)
class NodeShare:
    """How many of a tenant's buckets one primary holds."""

    node: str
    buckets: int


def slot_offset(tenant: str) -> int:
    """Where within each 16-slot block the tenant's buckets sit."""
    return hashlib.sha256(tenant.encode("utf-8")).digest()[0] % _STRIDE


def bucket_slot(tenant: str, bucket: int) -> int:
    """The hash slot of the tenant's bucket ``bucket``."""
    return _STRIDE * bucket + slot_offset(tenant)


def _label(tenant: str, number: int) -> str:
    return f"t:{tenant}:{number}"


def _label_number(label: str) -> int:
    return int(label.rpartition(":")[2])


def search_layout(tenant: str) -> BucketLayout:
    """The label of every bucket of ``tenant``, found in one pass over n = 0, 1, 2, ...

    Every slot is reached: a slot is missed by each n with probability 1 - 1/16384, so the pass
    ends after about 16,384 · H(1,024) numbers. A label holds no brace, so its slot is the CRC16
    of its whole text: what redis-py's ``key_slot`` computes, called here without its search for
    a tag (the tests hold every label to ``key_slot`` and to a Cluster's ``CLUSTER KEYSLOT``).
    """
    prefix = _label(tenant, 0)[:-1].encode("ascii")
    bucket_on_slot = [-1] * SLOTS
    for bucket in range(BUCKETS):
        bucket_on_slot[bucket_slot(tenant, bucket)] = bucket
    labels = [""] * BUCKETS
    left = BUCKETS
    for number in itertools.count():
        slot = binascii.crc_hqx(prefix + b"%d" % number, 0) % SLOTS
        bucket = bucket_on_slot[slot]
        if bucket >= 0 and not labels[bucket]:
            labels[bucket] = _label(tenant, number)
            left -= 1
            if not left:
                break
    return BucketLayout(tenant, BUCKETS, tuple(labels))


def node_shares(layout: BucketLayout, slot_owners: Sequence[tuple[int, int, str]]) -> list[NodeShare]:
    """How many of the layout's buckets each node holds, given each node's slot ranges.

    ``slot_owners`` is ``(first slot, last slot, node)`` per range, as CLUSTER SLOTS answers;
    a node of several ranges is counted once. Nodes in the order of their first range.

    Raises:
        ValueError: a label's slot is in no range (a Cluster with unassigned slots).
    """
    owners = sorted(slot_owners)
    firsts = [first for first, _, _ in owners]
    counts: dict[str, int] = {node: 0 for _, _, node in owners}
    for label in layout.labels:
        slot = key_slot(label.encode("ascii"))
        at = bisect.bisect_right(firsts, slot) - 1
        if at < 0 or owners[at][1] < slot:
            msg = f"slot {slot} (label {label!r}) is served by no node"
            raise ValueError(msg)
        counts[owners[at][2]] += 1
    return [NodeShare(node, buckets) for node, buckets in counts.items()]


def worst_deviation(shares: Sequence[NodeShare]) -> float:
    """The largest relative distance of a node's share from an even share (0.0 for none)."""
    if not shares:
        return 0.0
    even = sum(share.buckets for share in shares) / len(shares)
    return max(abs(share.buckets - even) for share in shares) / even if even else 0.0


def _checked(tenant: str, fields: Mapping[bytes, bytes]) -> BucketLayout:
    """The stored layout, if it is whole and every label lands on its own bucket's slot.

    Raises:
        BucketLayoutRefused: it is not.
    """
    where = f"the bucket layout of tenant {tenant} (iv1:{{t:{tenant}}}:buckets)"
    count_text = as_text(fields.get(b"count", b""))
    state = as_text(fields.get(b"state", b""))
    packed = fields.get(b"labels", b"")
    if count_text != str(BUCKETS):
        msg = f"{where} has count {count_text!r}; this release knows {BUCKETS} buckets only"
        raise BucketLayoutRefused(msg)
    if state not in _STATES:
        msg = f"{where} has state {state!r}, which this release does not know"
        raise BucketLayoutRefused(msg)
    if len(packed) != BUCKETS * _PACKED.size:
        msg = f"{where} holds {len(packed)} bytes of labels, not {BUCKETS * _PACKED.size}"
        raise BucketLayoutRefused(msg)
    labels = tuple(_label(tenant, number) for (number,) in _PACKED.iter_unpack(packed))
    for bucket, label in enumerate(labels):
        if key_slot(label.encode("ascii")) != bucket_slot(tenant, bucket):
            msg = f"{where}: bucket {bucket}'s label {label!r} is not on the bucket's slot"
            raise BucketLayoutRefused(msg)
    return BucketLayout(tenant, BUCKETS, labels, state)


class RedisBucketLayouts:
    """The tenants' stored bucket layouts on one Redis (standalone, Sentinel or Cluster)."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def read(self, tenant: str) -> BucketLayout | None:
        """The tenant's stored layout, or None when none is stored.

        Raises:
            BucketLayoutRefused: the stored record is not a usable layout.
            StoreUnavailable: Redis cannot be reached.
        """
        async with translate_errors():
            raw = await self._redis.hgetall(TenantKeys(tenant).buckets())
        fields = {_as_bytes(name): _as_bytes(value) for name, value in raw.items()}
        return _checked(tenant, fields) if fields else None

    async def plan(self, tenant: str) -> BucketLayout:
        """The tenant's layout: the stored one, or the search's, stored unless another was first.

        A planner racing this one may write first; what is stored then wins and is returned.

        Raises:
            BucketLayoutRefused: the stored record is not a usable layout.
            StoreUnavailable: Redis cannot be reached.
        """
        stored = await self.read(tenant)
        if stored is not None:
            return stored
        layout = search_layout(tenant)
        packed = b"".join(_PACKED.pack(_label_number(label)) for label in layout.labels)
        async with translate_errors():
            await self._redis.register_script(script_source("bucket_layout"))(
                keys=[TenantKeys(tenant).buckets()], args=[layout.count, packed, layout.state]
            )
        written = await self.read(tenant)
        if written is None:  # removed between the two calls: nothing to hand back that is stored
            msg = f"the bucket layout of tenant {tenant} vanished as it was written"
            raise BucketLayoutRefused(msg)
        return written

    async def slot_owners(self) -> list[tuple[int, int, str]] | None:
        """Each slot range's primary, ``host:port``, from CLUSTER SLOTS; None on a single primary.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        if not is_cluster(self._redis):
            return None
        async with translate_errors():
            reply = await self._redis.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        # redis-py parses the reply: {(first, last): {"primary": (host, port), "replicas": [...]}}.
        ranges = cast("Mapping[tuple[int, int], Mapping[str, Sequence[object]]]", reply)
        return [
            (int(first), int(last), _node_name(owner["primary"])) for (first, last), owner in ranges.items()
        ]


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _node_name(node: Sequence[object]) -> str:
    host, port = node[0], node[1]
    return f"{as_text(host) if isinstance(host, bytes | str) else host}:{port}"
