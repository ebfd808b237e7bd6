"""The console's SessionStore port's contract, on the in-memory store and on Redis alike.

``testing.memory_console_sessions.MemoryConsoleSessions`` (what
``test_console_sessions_usecase.py`` runs the sessions on) and
``store.console_sessions.RedisConsoleSessions`` over a real redis-server (the session's hash and
TTL, ``console_session.lua`` and its audit entries) answer every assertion here the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from idverify.console.sessions import SessionRecord, SessionStore
from idverify.store.connection import RedisClient
from idverify.store.console_sessions import RedisConsoleSessions
from idverify.store.scripts import Scripts
from idverify.testing.memory_console_sessions import MemoryConsoleSessions
from tests.unit.usecases.contract import AuditTrail, Contract, MemoryAuditTrail, RedisAuditTrail, port_on_each

REQUEST = {"principal": "acme/auditor/c1", "request_id": "r1", "trace_id": ""}
D1, D2 = "a" * 64, "b" * 64
RECORD = SessionRecord("auditor", "c1", 1_900_000_000_000)

Port = Contract[SessionStore, AuditTrail]


def memory_port() -> Port:
    memory = MemoryConsoleSessions()
    return Port(memory, MemoryAuditTrail(memory.audit))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisConsoleSessions(redis, Scripts(redis)), RedisAuditTrail(redis, signed_in_or_out))


def signed_in_or_out(entry: dict[str, Any]) -> tuple[str, ...]:
    """A console.signed_in or signed_out entry as the in-memory store keeps it: type, client, role."""
    return entry["type"], entry["attributes"]["client_id"], entry["attributes"]["role"]


port = port_on_each(memory_port, redis_port)


async def test_contract_an_opened_session_reads_back_until_closed(port: Port) -> None:
    store = port.store
    await store.open("acme", D1, RECORD, 60_000, REQUEST)
    assert await store.read("acme", D1) == RECORD
    assert await store.read("acme", D2) is None
    assert await store.read("beta", D1) is None  # another tenant's sessions are not this one's
    await store.close("acme", D1, REQUEST)
    assert await store.read("acme", D1) is None
    assert await port.world.audited("acme") == [
        ("console.signed_in", "c1", "auditor"),
        ("console.signed_out", "c1", "auditor"),
    ]


async def test_contract_closing_a_session_that_is_not_there_writes_nothing(port: Port) -> None:
    await port.store.close("acme", D1, REQUEST)
    assert await port.world.audited("acme") == []


async def test_contract_a_session_is_gone_once_its_lifetime_is_over(port: Port) -> None:
    store = port.store
    await store.open("acme", D1, SessionRecord("admin", "c2", 1_900_000_000_000), 50, REQUEST)
    await store.open("acme", D2, RECORD, 60_000, REQUEST)
    await asyncio.sleep(0.15)
    assert await store.read("acme", D1) is None
    assert await store.read("acme", D2) == RECORD
    await store.close("acme", D1, REQUEST)  # gone already: no sign-out entry
    assert await port.world.audited("acme") == [
        ("console.signed_in", "c2", "admin"),
        ("console.signed_in", "c1", "auditor"),
    ]
