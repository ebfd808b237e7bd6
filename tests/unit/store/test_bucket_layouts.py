"""A tenant's buckets: each label on its bucket's slot, an even share per primary, one stored layout.

Real Redis for the stored layout; ``tests/integration/test_bucket_layout_cluster.py`` checks the
labels' slots against a Cluster's own ``CLUSTER KEYSLOT`` and ``buckets status`` on it.
"""

from __future__ import annotations

import asyncio
import itertools
import struct

import pytest
from redis.crc import key_slot

from idverify.store.buckets import (
    BUCKETS,
    PLANNED,
    BucketLayout,
    BucketLayoutRefused,
    RedisBucketLayouts,
    bucket_slot,
    node_shares,
    search_layout,
    slot_offset,
    worst_deviation,
)
from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys
from tests.bucket_splits import SLOTS, redis_cli_split

_n = itertools.count(1)


def fresh_tenant() -> str:
    return f"bk-{next(_n)}-{id(_n) % 10_000}"


def tenants_of_every_offset() -> list[str]:
    """One tenant per offset within a 16-slot block: every way a tenant's buckets can sit."""
    found: dict[int, str] = {}
    for n in itertools.count():
        found.setdefault(slot_offset(f"t{n}"), f"t{n}")
        if len(found) == 16:
            return [found[offset] for offset in range(16)]
    raise AssertionError


def split_owners(primaries: int) -> list[tuple[int, int, str]]:
    return [(first, last, f"n{i}") for i, (first, last) in enumerate(redis_cli_split(primaries))]


def numbers(layout: BucketLayout) -> list[int]:
    return [int(label.rpartition(":")[2]) for label in layout.labels]


def packed(values: list[int]) -> bytes:
    return b"".join(struct.pack(">I", value) for value in values)


class TestLabels:
    def test_every_label_is_the_smallest_on_its_buckets_slot(self) -> None:
        """Written apart from the search: the first n of every slot, over all n up to the largest label."""
        for tenant in ("default", "acme"):
            layout = search_layout(tenant)
            assert (layout.tenant, layout.count, len(layout.labels)) == (tenant, BUCKETS, BUCKETS)
            first_on: dict[int, int] = {}
            for n in range(max(numbers(layout)) + 1):
                first_on.setdefault(key_slot(f"t:{tenant}:{n}".encode()), n)
            for bucket, label in enumerate(layout.labels):
                slot = 16 * bucket + slot_offset(tenant)
                assert bucket_slot(tenant, bucket) == slot
                assert key_slot(label.encode()) == slot
                assert label == f"t:{tenant}:{first_on[slot]}"

    def test_a_labels_keys_are_on_the_labels_slot(self) -> None:
        layout = search_layout("acme")
        for bucket in (0, 5, BUCKETS - 1):
            stage = BucketKeys("acme", layout.labels[bucket]).audit_stage()
            assert key_slot(stage.encode()) == bucket_slot("acme", bucket)

    def test_tenants_take_every_offset_within_a_block(self) -> None:
        assert sorted(slot_offset(tenant) for tenant in tenants_of_every_offset()) == list(range(16))


class TestEvenness:
    def test_the_mirror_of_redis_clis_split_covers_every_slot_in_near_equal_ranges(self) -> None:
        for primaries in range(1, 101):
            ranges = redis_cli_split(primaries)
            assert ranges[0][0] == 0
            assert ranges[-1][1] == SLOTS - 1
            assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
            sizes = {last - first + 1 for first, last in ranges}
            assert sizes <= {SLOTS // primaries, -(-SLOTS // primaries)}, primaries

    def test_every_primary_of_3_to_100_holds_floor_or_ceil_of_an_even_share(self) -> None:
        """For each tenant offset and each N, redis-cli's contiguous ranges hold 1024/N buckets ± 1."""
        for tenant in tenants_of_every_offset():
            layout = search_layout(tenant)
            for primaries in range(3, 101):
                shares = node_shares(layout, split_owners(primaries))
                held = [share.buckets for share in shares]
                assert len(held) == primaries
                assert sum(held) == BUCKETS
                even = {BUCKETS // primaries, -(-BUCKETS // primaries)}
                assert set(held) <= even, (tenant, primaries, held)
                assert worst_deviation(shares) <= primaries / BUCKETS + 1e-12

    def test_plain_tags_would_not_be_even(self) -> None:
        """The reason for the search: tags t:T:0..1023 as they are put 100 primaries far from even."""
        plain = BucketLayout("acme", BUCKETS, tuple(f"t:acme:{n}" for n in range(BUCKETS)))
        assert worst_deviation(node_shares(plain, split_owners(100))) > 0.25

    def test_a_slot_no_node_serves_is_named(self) -> None:
        with pytest.raises(ValueError, match="served by no node"):
            node_shares(search_layout("acme"), [(0, 8191, "a")])


class TestStoredLayout:
    async def test_plan_stores_the_search_once_and_read_returns_it(self, redis: RedisClient) -> None:
        tenant = fresh_tenant()
        layouts = RedisBucketLayouts(redis)
        assert await layouts.read(tenant) is None
        planned = await layouts.plan(tenant)
        assert planned == search_layout(tenant)
        assert planned.state == PLANNED
        assert await layouts.plan(tenant) == planned
        assert await layouts.read(tenant) == planned
        stored = await redis.hgetall(TenantKeys(tenant).buckets())
        assert stored[b"count"] == b"1024"
        assert stored[b"state"] == b"planned"
        assert stored[b"labels"] == packed(numbers(planned))  # 4 bytes a label

    async def test_planners_racing_agree_on_one_layout(self, redis: RedisClient) -> None:
        tenant = fresh_tenant()
        layouts = [RedisBucketLayouts(redis) for _ in range(6)]
        planned = await asyncio.gather(*(layouts.plan(tenant) for layouts in layouts))
        assert all(layout == planned[0] for layout in planned)

    async def test_a_layout_stored_first_is_never_replaced(self, redis: RedisClient) -> None:
        """Another planner's layout (here: a later search's, a label further on the same slot) stays.

        The label of bucket 3 is replaced by the next number on the same slot: a valid layout
        that is not this search's. Planning again returns it and writes nothing.
        """
        tenant = fresh_tenant()
        mine = numbers(search_layout(tenant))
        slot = bucket_slot(tenant, 3)
        mine[3] = next(
            n for n in itertools.count(mine[3] + 1) if key_slot(f"t:{tenant}:{n}".encode()) == slot
        )
        key = TenantKeys(tenant).buckets()
        await redis.hset(key, mapping={"count": "1024", "labels": packed(mine), "state": "planned"})
        planned = await RedisBucketLayouts(redis).plan(tenant)
        assert numbers(planned) == mine
        assert (await redis.hgetall(key))[b"labels"] == packed(mine)

    async def test_a_planner_that_read_before_anothers_write_does_not_overwrite_it(
        self, redis: RedisClient
    ) -> None:
        """The race itself: this planner read no layout, another wrote one, then this one writes."""
        tenant = fresh_tenant()
        theirs = numbers(search_layout(tenant))
        slot = bucket_slot(tenant, 9)
        on_slot = (n for n in itertools.count(theirs[9] + 1) if key_slot(f"t:{tenant}:{n}".encode()) == slot)
        theirs[9] = next(on_slot)
        key = TenantKeys(tenant).buckets()

        class LateWriter(RedisBucketLayouts):
            first = True

            async def read(self, tenant: str) -> BucketLayout | None:
                if self.first:  # this planner's read, then the other planner's write
                    self.first = False
                    record = {"count": "1024", "labels": packed(theirs), "state": "planned"}
                    await redis.hset(key, mapping=record)
                    return None
                return await super().read(tenant)

        planned = await LateWriter(redis).plan(tenant)
        assert numbers(planned) == theirs
        assert (await redis.hgetall(key))[b"labels"] == packed(theirs)

    @pytest.mark.parametrize(
        ("fault", "message"),
        [
            ("swapped", "not on the bucket's slot"),
            ("moved", "not on the bucket's slot"),
            ("count", "count '2048'"),
            ("short", "bytes of labels"),
            ("state", "state 'bucketed-by-hand'"),
            ("no labels", "0 bytes of labels"),
        ],
    )
    async def test_a_tampered_layout_is_refused_and_left_as_it_is(
        self, redis: RedisClient, fault: str, message: str
    ) -> None:
        """A careless operator or anyone with write access to Redis: the layout is refused, never used."""
        tenant = fresh_tenant()
        values = numbers(search_layout(tenant))
        record: dict[str, str | bytes] = {"count": "1024", "labels": packed(values), "state": "planned"}
        if fault == "swapped":
            values[0], values[1] = values[1], values[0]
            record["labels"] = packed(values)
        elif fault == "moved":
            values[700] += 1
            record["labels"] = packed(values)
        elif fault == "count":
            record["count"] = "2048"
        elif fault == "short":
            record["labels"] = packed(values[:-1])
        elif fault == "state":
            record["state"] = "bucketed-by-hand"
        else:
            del record["labels"]
        key = TenantKeys(tenant).buckets()
        await redis.hset(key, mapping=record)
        before = await redis.hgetall(key)
        layouts = RedisBucketLayouts(redis)
        for call in (layouts.read, layouts.plan):
            with pytest.raises(BucketLayoutRefused, match=message) as refused:
                await call(tenant)
            assert f"tenant {tenant}" in str(refused.value)
        assert await redis.hgetall(key) == before
