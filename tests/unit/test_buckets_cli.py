"""``idverify buckets status`` on one node: the layout's state, and one-line refusals.

On a Cluster, the buckets per primary: ``tests/integration/test_bucket_layout_cluster.py``.
"""

from __future__ import annotations

import json
import struct

from idverify.store.buckets import RedisBucketLayouts
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.legacy_moves import RedisLegacyMove
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess, free_port
from tests import bind_crash
from tests.bind_crash import OWNER
from tests.cancel_crash import pseudonym
from tests.tenant_births import born_walked
from tests.unit.test_cli import idverify


def status(url: str, tenant: str, *extra: str) -> tuple[int, str, str]:
    done = idverify("buckets", "--redis-url", url, "status", "--tenant", tenant, *extra)
    return done.returncode, done.stdout, done.stderr


async def test_one_node_holds_every_bucket_planned_or_not(
    redis_server: RedisProcess, redis: RedisClient
) -> None:
    code, out, err = status(redis_server.url, "cli-unplanned")
    assert (code, err) == (0, "")
    assert out == (
        "tenant cli-unplanned: 1024 buckets, layout not planned\n"
        "legacy data: no audit log yet: its first entry decides whether it is born walked\n"
        "a single node: all 1024 buckets are on the one node\n"
    )
    await RedisBucketLayouts(redis).plan("cli-planned")
    code, out, err = status(redis_server.url, "cli-planned", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "tenant": "cli-planned",
        "state": "planned",
        "count": 1024,
        "cluster": False,
        "primaries": [],
        "worst_deviation": 0.0,
        "legacy": "no log",
    }


async def test_the_legacy_data_walked_or_born_walked(redis_server: RedisProcess, redis: RedisClient) -> None:
    """The log's head says whether the buckets' move may start: unmarked, walked, or born walked."""
    await bind_crash.bind(redis, "cli-legacy", pseudonym("cli-legacy-a"), OWNER)
    _, out, _ = status(redis_server.url, "cli-legacy")
    assert out.splitlines()[1] == (
        "legacy data: older servers' data not walked: run `idverify migrate legacy` before the buckets move"
    )
    await RedisLegacyMove(redis, Scripts(redis)).run("cli-legacy", lambda _: None)
    code, out, _ = status(redis_server.url, "cli-legacy", "--json")
    assert (code, json.loads(out)["legacy"]) == (0, "walked")
    await born_walked(redis, "cli-born")
    code, out, err = status(redis_server.url, "cli-born")
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == (
        "legacy data: born walked: no server of an older release reported in when its log was created"
    )


async def test_a_tampered_layout_is_refused_in_one_line(
    redis_server: RedisProcess, redis: RedisClient
) -> None:
    """A layout someone edited in Redis is named and refused, never shown as if it were good."""
    labels = struct.pack(">1024I", *range(1024))  # t:T:0..1023: not the buckets' slots
    record = {"count": "1024", "labels": labels, "state": "planned"}
    await redis.hset(TenantKeys("cli-tampered").buckets(), mapping=record)
    code, out, err = status(redis_server.url, "cli-tampered")
    assert (code, out) == (1, "")
    assert err.startswith("idverify: the bucket layout of tenant cli-tampered")
    assert "refused, not used" in err
    assert err.count("\n") == 1


def test_a_bad_tenant_and_an_unreachable_store_are_one_line_each(redis_server: RedisProcess) -> None:
    code, out, err = status(redis_server.url, "Not A Tenant")
    assert (code, out, err) == (2, "", "idverify: --tenant: 'Not A Tenant' is not a tenant name\n")
    code, out, err = status(f"redis://127.0.0.1:{free_port()}", "acme")
    assert (code, out) == (1, "")
    assert err.startswith("idverify: redis: ")
    assert err.count("\n") == 1
