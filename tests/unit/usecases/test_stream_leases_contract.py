"""The StreamLeases port's contract, on the in-memory leases and on Redis alike.

``testing.memory_stream_leases.MemoryStreamLeases`` (what ``test_event_streams_usecase.py``
runs the streams on) and ``store.stream_leases.RedisStreamLeases`` over a real redis-server
(``event_stream_lease.lua``) answer every assertion here the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from idverify.events.streams import StreamLeases
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.store.stream_leases import RedisStreamLeases
from idverify.testing.memory_stream_leases import MemoryStreamLeases
from tests.unit.usecases.contract import port_on_each, sleep_ms

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Port:
    leases: StreamLeases
    wait: Callable[[int], Awaitable[None]]  # lets ``ms`` go by


def memory_port() -> Port:
    memory = MemoryStreamLeases()

    async def advance(ms: int) -> None:
        memory.advance(ms)

    return Port(memory, advance)


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisStreamLeases(Scripts(redis)), sleep_ms)


port = port_on_each(memory_port, redis_port)


async def test_contract_a_client_holds_at_most_its_limit(port: Port) -> None:
    leases = port.leases
    assert await leases.take("acme", "c1", "s1", limit=2, lease_ms=HOUR_MS)
    assert await leases.take("acme", "c1", "s2", limit=2, lease_ms=HOUR_MS)
    assert not await leases.take("acme", "c1", "s3", limit=2, lease_ms=HOUR_MS)
    assert await leases.take("acme", "c2", "s3", limit=2, lease_ms=HOUR_MS)  # another client's
    assert await leases.take("globex", "c1", "s3", limit=2, lease_ms=HOUR_MS)  # another tenant's
    await leases.give("acme", "c1", "s1")
    await leases.give("acme", "c1", "s1")  # given back already: nothing
    assert await leases.take("acme", "c1", "s3", limit=2, lease_ms=HOUR_MS)
    assert not await leases.take("acme", "c1", "s4", limit=2, lease_ms=HOUR_MS)


async def test_contract_a_lease_ends_by_itself(port: Port) -> None:
    leases = port.leases
    assert await leases.take("acme", "c1", "s1", limit=1, lease_ms=150)
    assert not await leases.take("acme", "c1", "s2", limit=1, lease_ms=150)
    await port.wait(300)
    assert await leases.take("acme", "c1", "s2", limit=1, lease_ms=HOUR_MS)
    await leases.give("acme", "c1", "s1")  # ended already: nothing
    assert not await leases.take("acme", "c1", "s3", limit=1, lease_ms=HOUR_MS)
