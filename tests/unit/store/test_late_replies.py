"""A step whose reply comes late has run on Redis: it fails as UNAVAILABLE and is never sent again.

The relay lets the script through at once and holds its reply back past the command timeout,
so Redis applies the step while the caller gives up. Neither redis-py's pool nor the shared
connection may then send it a second time (redis-py retries by default, and a new version could
turn that back on): the relay counts how often the script reached Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.store.connection import COMMAND_TIMEOUT_SECONDS, RedisClient, close_client, connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts, script_source
from idverify.testing import RedisProcess
from tests.late_relay import LateRelay

LATE_SECONDS = COMMAND_TIMEOUT_SECONDS + 2


@pytest.fixture
def relay(redis_server: RedisProcess) -> Iterator[LateRelay]:
    late = LateRelay(redis_server.port)
    late.start()
    yield late
    late.close()


@pytest.fixture
async def direct(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url, pool_size=2)
    yield client
    await close_client(client)


@pytest.mark.parametrize("share_connection", [True, False], ids=["shared", "pooled"])
async def test_a_step_whose_reply_is_late_fails_unavailable_and_ran_once(
    relay: LateRelay, direct: RedisClient, share_connection: bool
) -> None:
    keys = TenantKeys("late-replies")
    request, verification = keys.request(f"r-{share_connection}"), keys.verification("v")
    released = keys.request_released(f"v-{share_connection}")
    client = connect(f"redis://127.0.0.1:{relay.port}/0", pool_size=4)
    scripts = Scripts(client, share_connection=share_connection)
    try:
        await direct.set(request, b"v")
        await direct.set(keys.request("loaded"), b"other")
        # Once first, so that Redis has the script cached and the late one goes as one EVALSHA.
        assert (
            await scripts.run(
                "release_request", [keys.request("loaded"), verification, released], ["v", 30_000]
            )
            == 0
        )
        sha = hashlib.sha1(script_source("release_request").encode()).hexdigest().encode()  # noqa: S324 - Redis names scripts so
        relay.late_after(sha, LATE_SECONDS)

        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS + 5):
            with pytest.raises(StoreUnavailable):
                await scripts.run("release_request", [request, verification, released], ["v", 30_000])
        relay.on_time()

        assert await direct.exists(released), "the step did not run"
        assert await direct.get(request) is None
        await asyncio.sleep(LATE_SECONDS - COMMAND_TIMEOUT_SECONDS + 0.5)  # the late reply came
        assert relay.seen[sha] == 1
    finally:
        await scripts.aclose()
        await close_client(client)
