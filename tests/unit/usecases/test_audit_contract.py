"""The AuditLog port's contract, on the in-memory logs and on Redis alike.

``testing.memory_audit_log.MemoryAuditLog`` (what ``test_audit_usecase.py`` runs the flow on) and
``store.audit_logs.RedisAuditLog`` over a real redis-server (the prelude's ``audit()`` appending,
the integrator and ``audit_integrate.lua``, ``audit_nodes.lua``, ``audit_head.lua``, the queries
over the index postings) answer every assertion here the same way; so does
``audit.tile_mirror.TiledAuditLog`` over Redis with its tiles in a temporary directory, as
``server.py`` builds it when ``audit_tiles_dir`` is set.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from idverify.audit import merkle
from idverify.audit.events import AuditEvent, parse_entry
from idverify.audit.merkle import NodeId, leaf_hash
from idverify.audit.query import EventFilter
from idverify.audit.tile_mirror import TileMirror
from idverify.audit.tiled_audit_log import TiledAuditLog
from idverify.audit.tree_state import StoredHead, TreeState
from idverify.flows.audit import AuditLog
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender
from idverify.testing.memory_audit_log import MemoryAuditLog
from tests.unit.usecases.contract import Contract, port_on_each

Event = tuple[Mapping[str, str], Mapping[str, str]]


class World(Protocol):
    """What the port does not write itself: the entries, appended by the scripts' changes."""

    async def append(self, tenant: str, events: list[Event]) -> None: ...


class MemoryWorld:
    def __init__(self, log: MemoryAuditLog) -> None:
        self._log = log

    async def append(self, tenant: str, events: list[Event]) -> None:
        for request, fields in events:
            self._log.append(tenant, request, fields)


class RedisWorld:
    def __init__(self, redis: RedisClient) -> None:
        self._appender = SyntheticAppender(redis)

    async def append(self, tenant: str, events: list[Event]) -> None:
        await self._appender.append(tenant, events)


Port = Contract[AuditLog, World]


def memory_port() -> Port:
    memory = MemoryAuditLog()
    return Port(memory, MemoryWorld(memory))


def redis_port(redis: RedisClient) -> Port:
    return Port(RedisAuditLog(redis, Scripts(redis)), RedisWorld(redis))


# The tiled variant's folders, one a test, all removed when the run ends.
_TILE_FOLDERS = tempfile.TemporaryDirectory(prefix="idverify-tiles-")


def tiled_port(redis: RedisClient) -> Port:
    scripts = Scripts(redis)
    tiles = TileMirror(Path(tempfile.mkdtemp(dir=_TILE_FOLDERS.name)), AuditStore(redis, scripts))
    return Port(
        TiledAuditLog(RedisAuditLog(redis, scripts, write_round=tiles.write_round), tiles), RedisWorld(redis)
    )


class TrimmingNow(TiledAuditLog):
    """A tiled log that trims every entry its bundles hold at the end of each integration."""

    async def integrate(self, tenant: str, *, up_to: int | None = None) -> TreeState:
        state = await super().integrate(tenant, up_to=up_to)
        await self.idle()
        await self.trim(tenant)
        return state


def trimmed_port(redis: RedisClient) -> Port:
    scripts = Scripts(redis)
    tiles = TileMirror(Path(tempfile.mkdtemp(dir=_TILE_FOLDERS.name)), AuditStore(redis, scripts))
    beneath = RedisAuditLog(redis, scripts, write_round=tiles.write_round)
    return Port(TrimmingNow(beneath, tiles, kept=0), RedisWorld(redis))


port = port_on_each(memory_port, redis_port, tiled=tiled_port, trimmed=trimmed_port)


def events(count: int) -> list[Event]:
    """Entries alternating two types; every third about account ``a1`` with method ``sms``."""
    return [
        (
            {"principal": "acme/registrar/c1", "request_id": f"r{n}"},
            {
                "type": "consent.granted" if n % 2 else "client.created",
                "outcome": "granted" if n % 2 else "created",
                "account": "a1" if n % 3 == 0 else f"other{n}",
                "method": "sms" if n % 3 == 0 else "",
                "purpose": f"p{n}",
            },
        )
        for n in range(count)
    ]


def timeless(event: AuditEvent) -> AuditEvent:
    return dataclasses.replace(event, time_ms=0)


async def indices(log: AuditLog, tenant: str, query: EventFilter) -> list[int]:
    return [result.event.index async for result in log.query(tenant, query)]


async def test_contract_a_log_without_entries(port: Port) -> None:
    log = port.store
    assert not await log.exists("acme")
    assert await log.size("acme") == 0
    assert await log.entries("acme", [0]) == [None]
    state = await log.tree_state("acme")
    assert (state.size, state.root, state.last_head) == (0, merkle.EMPTY_ROOT, None)
    assert (await log.integrate("acme")).size == 0
    assert await indices(log, "acme", EventFilter()) == []
    assert await log.read_nodes("acme", [NodeId(0, 0)]) == [None]


async def test_contract_entries_are_read_as_appended_and_integrated_on_demand(port: Port) -> None:
    log, world = port.store, port.world
    await world.append("acme", events(7))
    await world.append("globex", events(2))
    assert await log.exists("acme")
    assert await log.size("acme") == 7
    stored = await log.entries("acme", [0, 6, 7])
    assert stored[2] is None
    first = parse_entry(stored[0] or b"")
    assert (first.index, first.type, first.account, first.attributes) == (
        0,
        "client.created",
        "a1",
        {"purpose": "p0"},
    )
    assert (first.principal, first.request_id) == ("acme/registrar/c1", "r0")
    assert (await log.tree_state("acme")).size == 0  # appended, not yet integrated
    assert [r.stored_leaf_hash async for r in log.query("acme", EventFilter(limit=2))] == [None, None]
    assert (await log.integrate("acme", up_to=3)).size >= 3
    state = await log.integrate("acme")
    leaves = [leaf_hash(entry or b"") for entry in await log.entries("acme", range(7))]
    assert (state.size, state.root) == (7, merkle.root(leaves))
    assert (await log.tree_state("acme")).root == state.root
    assert await log.read_nodes("acme", [NodeId(0, 5), NodeId(2, 0), NodeId(0, 7)]) == [
        leaves[5],
        merkle.root(leaves[:4]),
        None,
    ]
    assert [r.stored_leaf_hash async for r in log.query("acme", EventFilter())] == leaves
    assert (await log.tree_state("globex")).size == 0  # another tenant's tree


async def test_contract_a_signed_head_is_replaced_only_from_the_one_read(port: Port) -> None:
    log, world = port.store, port.world
    await world.append("acme", events(1))
    first = StoredHead(b"checkpoint one\n", "k1", b"s1")
    second = StoredHead(b"checkpoint two\n", "k1", b"s2")
    assert await log.replace_signed_head("acme", None, first)
    assert not await log.replace_signed_head("acme", None, second)
    assert (await log.tree_state("acme")).last_head == first
    assert not await log.replace_signed_head("acme", second, second)
    assert await log.replace_signed_head("acme", first, second)
    assert (await log.integrate("acme")).last_head == second


async def test_contract_queries_filter_in_index_order(port: Port) -> None:
    log, world = port.store, port.world
    await world.append("acme", events(12))
    assert await indices(log, "acme", EventFilter()) == list(range(12))
    assert await indices(log, "acme", EventFilter(types=frozenset({"consent.granted"}))) == [
        1,
        3,
        5,
        7,
        9,
        11,
    ]
    assert await indices(log, "acme", EventFilter(outcomes=frozenset({"created", "granted"}), limit=3)) == [
        0,
        1,
        2,
    ]
    assert await indices(log, "acme", EventFilter(accounts=("a1",))) == [0, 3, 6, 9]
    assert await indices(log, "acme", EventFilter(accounts=("a1", "other4"), start_index=2)) == [3, 4, 6, 9]
    sms = EventFilter(method="sms", types=frozenset({"consent.granted"}))
    assert await indices(log, "acme", sms) == [3, 9]
    assert await indices(log, "acme", EventFilter(accounts=("nobody",))) == []
    times = [r.event.time_ms async for r in log.query("acme", EventFilter())]
    assert await indices(log, "acme", EventFilter(start_ms=times[0], end_ms=times[-1] + 1)) == list(range(12))
    assert await indices(log, "acme", EventFilter(start_ms=times[-1] + 1)) == []
    assert await indices(log, "acme", EventFilter(end_ms=times[0])) == []
    results = [r async for r in log.query("acme", EventFilter(start_index=11))]
    assert [timeless(r.event) for r in results] == [timeless(parse_entry(results[0].leaf))]
    assert results[0].leaf == (await log.entries("acme", [11]))[0]


async def test_contract_a_query_cut_at_an_index_stops_before_it(port: Port) -> None:
    """``end_index``: the log as it was when a caller read its size (QueryEvents' pending part)."""
    log, world = port.store, port.world
    await world.append("acme", events(12))
    assert await indices(log, "acme", EventFilter(end_index=5)) == list(range(5))
    granted = frozenset({"consent.granted"})
    assert await indices(log, "acme", EventFilter(types=granted, end_index=6)) == [1, 3, 5]
    assert await indices(log, "acme", EventFilter(start_index=4, end_index=4)) == []
    assert await indices(log, "acme", EventFilter(end_index=40)) == list(range(12))
