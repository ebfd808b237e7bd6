"""The store's clock: Redis's time, carried on monotonically so that a step back changes nothing.

The first tests drive :class:`StoreClock` with a scripted Redis clock and an injected monotonic
clock; the last ones run the real scripts on a real Redis, with the deployment's floor set as a
process that saw Redis's clock before it stepped back would leave it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

import pytest

from idverify.domain.errors import StoreUnavailable
from idverify.store.clock import SLEW, StoreClock
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.testing import RedisProcess

HOUR_MS = 3_600_000
START_MS = 1_800_000_000_000
_tenants = itertools.count(1)


class FakeStore:
    """Redis's clock as clock.lua reports it: its own time, never below the caller's floor."""

    def __init__(self) -> None:
        self.redis_ms = START_MS
        self.down = False
        self.samples = 0

    async def sample(self, floor_ms: int) -> tuple[int, int]:
        if self.down:
            raise StoreUnavailable("Redis is down")
        self.samples += 1
        return max(self.redis_ms, floor_ms), self.redis_ms


class Monotonic:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def advance(store: FakeStore, mono: Monotonic, seconds: float) -> None:
    """Real time passes: both clocks move on together."""
    mono.seconds += seconds
    store.redis_ms += int(seconds * 1000)


async def test_follows_redis_while_its_clock_is_sound() -> None:
    store, mono = FakeStore(), Monotonic()
    clock = StoreClock(store.sample, monotonic=mono, resample_seconds=10)
    assert await clock.now_ms() == START_MS
    advance(store, mono, 4)
    assert await clock.now_ms() == START_MS + 4000
    assert store.samples == 1  # counted on, not asked again within the resample time
    advance(store, mono, 60)
    assert await clock.now_ms() == START_MS + 64000
    assert store.samples == 2


async def test_a_step_back_neither_stops_nor_reverses_the_time() -> None:
    store, mono = FakeStore(), Monotonic()
    clock = StoreClock(store.sample, monotonic=mono, resample_seconds=10)
    await clock.now_ms()
    advance(store, mono, 5)
    store.redis_ms -= 3 * HOUR_MS
    seen = [await clock.now_ms()]
    for _ in range(30):
        advance(store, mono, 11)
        seen.append(await clock.now_ms())
    assert seen == sorted(seen)
    # A code of five minutes started before the step is due five minutes later, not three hours.
    assert seen[-1] - seen[0] >= int(30 * 11 * 1000 * SLEW) - 30
    assert seen[-1] > START_MS + 5000 + 30 * 11 * 1000 * SLEW - 30
    # ... and the store's time rejoins Redis's clock instead of staying ahead of it for ever.
    assert seen[-1] - store.redis_ms < 3 * HOUR_MS - 30 * 11 * 1000 * (1 - SLEW) + 1000


async def test_a_step_forward_is_followed_at_once() -> None:
    store, mono = FakeStore(), Monotonic()
    clock = StoreClock(store.sample, monotonic=mono, resample_seconds=10)
    await clock.now_ms()
    store.redis_ms += 3 * HOUR_MS
    advance(store, mono, 11)
    assert await clock.now_ms() == START_MS + 3 * HOUR_MS + 11000


async def test_a_failed_sample_counts_on_from_the_last_one() -> None:
    store, mono = FakeStore(), Monotonic()
    clock = StoreClock(store.sample, monotonic=mono, resample_seconds=10)
    await clock.now_ms()
    store.down = True
    advance(store, mono, 30)
    assert await clock.now_ms() == START_MS + 30000
    store.down = False
    assert await clock.now_ms() == START_MS + 30000  # the next try waits a second, not a call


async def test_without_any_sample_a_script_decides_by_redis_alone() -> None:
    store, mono = FakeStore(), Monotonic()
    store.down = True
    clock = StoreClock(store.sample, monotonic=mono)
    with pytest.raises(StoreUnavailable):
        await clock.now_ms()
    assert await clock.script_floor_ms() == 0


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url)
    await client.delete(GlobalKeys.CLOCK_FLOOR)
    yield client
    await client.delete(GlobalKeys.CLOCK_FLOOR)
    await client.aclose(close_connection_pool=True)


async def redis_ms(redis: RedisClient) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def pending_code(redis: RedisClient, expires_ms: int) -> tuple[TenantKeys, str]:
    """A verification waiting for its code, which is due at ``expires_ms``."""
    keys, verification_id = TenantKeys(f"clock-{next(_tenants)}"), "vf-1"
    await redis.hset(
        keys.verification(verification_id),
        mapping={
            "id": verification_id,
            "status": "CHALLENGE_SENT",
            "challenge_expires_ms": expires_ms,
            "acct_audit": "audit-ps",
            "method": "sms",
        },
    )
    return keys, verification_id


async def status_read_by(scripts: Scripts, keys: TenantKeys, verification_id: str) -> str:
    request = json.dumps({"principal": "test", "request_id": "r", "trace_id": ""})
    result = await scripts.run("get", [keys.verification(verification_id), keys.audit_log()], [request])
    fields = dict(zip(result[1][::2], result[1][1::2], strict=True))
    return fields[b"status"].decode()


async def test_a_script_judges_by_the_time_already_seen_when_redis_is_behind(redis: RedisClient) -> None:
    # As a process leaves it that read Redis's clock three hours ahead of where it is now.
    now = await redis_ms(redis)
    await redis.set(GlobalKeys.CLOCK_FLOOR, now + 3 * HOUR_MS)
    keys, verification_id = await pending_code(redis, now + HOUR_MS)
    scripts = Scripts(redis)
    assert await scripts.clock.now_ms() >= now + 3 * HOUR_MS
    assert await status_read_by(scripts, keys, verification_id) == "EXPIRED"


async def test_without_a_floor_the_same_code_is_still_pending(redis: RedisClient) -> None:
    now = await redis_ms(redis)
    keys, verification_id = await pending_code(redis, now + HOUR_MS)
    scripts = Scripts(redis)
    assert await status_read_by(scripts, keys, verification_id) == "CHALLENGE_SENT"
    assert abs(await scripts.clock.now_ms() - await redis_ms(redis)) < 60_000
    # A sound clock costs no write.
    assert await redis.exists(GlobalKeys.CLOCK_FLOOR) == 0


async def test_a_process_ahead_of_redis_leaves_its_time_for_the_others(redis: RedisClient) -> None:
    mono = Monotonic()
    ahead = Scripts(redis, monotonic=mono)
    await ahead.clock.now_ms()
    # Three hours pass for this process while Redis's clock barely moves: a step back of Redis.
    mono.seconds += 3 * 3600
    seen = await ahead.clock.now_ms()
    assert seen >= await redis_ms(redis) + 3 * HOUR_MS - 60_000
    stored = int(await redis.get(GlobalKeys.CLOCK_FLOOR) or b"0")
    assert stored == seen
    newcomer = Scripts(redis)
    assert await newcomer.clock.now_ms() >= seen
