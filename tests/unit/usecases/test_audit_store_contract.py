"""The ports of ``audit/`` (the integrator's, the queries' and the acknowledgement's), on both sides.

``testing.memory_audit_log.MemoryAuditLog`` and, over a real redis-server, ``store.audit_store.AuditStore``
(the tree head's check-and-set in ``audit_integrate.lua``, ``audit_nodes.lua``, ``audit_seek.lua``,
the postings the prelude's ``audit()`` appends) with ``store.audit_rollbacks`` (``audit_rollback.lua``)
answer every assertion here the same way: ``TreeIntegrator``, ``run_query`` and
``acknowledge_rollbacks`` run on either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.acknowledge import AcknowledgementLog, acknowledge_rollbacks
from idverify.audit.checkpoint import TreeHead, TreeHeadSigner
from idverify.audit.events import parse_entry
from idverify.audit.integrator import IntegratedLog, TreeIntegrator
from idverify.audit.merkle import NodeId, leaf_hash
from idverify.audit.published_heads import PublishedHeads
from idverify.audit.query import EventFilter, IndexedLog, Posting, PostingSeek, run_query
from idverify.audit.rollback import ROLLED_BACK, GuardedLog, Rollback, RollbackGuard
from idverify.audit.tree_state import TreeInTiles, TreeState
from idverify.store.audit_rollbacks import RedisRollbackAcknowledgements
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts
from idverify.testing.memory_audit_log import MemoryAuditLog
from tests.unit.usecases.test_audit_contract import MemoryWorld, RedisWorld, World, events


class Log(IntegratedLog, IndexedLog, GuardedLog, Protocol):
    """The ports of the integrator, the queries and the guard, as one store answers them."""


@dataclass(frozen=True, slots=True)
class Port:
    log: Log
    acknowledgements: AcknowledgementLog
    world: World


@pytest.fixture(params=["memory", "redis"])
def port(request: pytest.FixtureRequest, own_client: RedisClient) -> Port:
    if request.param == "memory":
        memory = MemoryAuditLog(tiles=True)  # reads a tree kept in tiles as AuditStore does: marked
        return Port(memory, memory, MemoryWorld(memory))
    store = AuditStore(own_client, Scripts(own_client))
    return Port(store, RedisRollbackAcknowledgements(own_client), RedisWorld(own_client))


async def test_contract_the_integrator_folds_the_entries_and_the_tree_moves_only_from_its_size(
    port: Port,
) -> None:
    log = port.log
    await port.world.append("acme", events(9))
    leaves = [leaf_hash(entry or b"") for entry in await log.entries("acme", range(9))]
    # A round that folded four entries, then the integrator takes over from its stored tree.
    compact, completed = merkle.CompactRange().extend(leaves[:4])
    assert await log.write_tree("acme", 0, TreeState(4, compact.root(), compact), completed)
    assert (await log.tree_state("acme")).root == merkle.root(leaves[:4])
    assert await log.leaf_hashes("acme", [3, 4]) == [leaves[3], None]
    assert (await TreeIntegrator(log).integrate("acme", up_to=4)).size == 4
    state = await TreeIntegrator(log).integrate("acme")
    assert (state.size, state.root) == (9, merkle.root(leaves))
    assert (await log.tree_state("acme")).root == state.root
    assert await log.read_nodes("acme", [NodeId(3, 0), NodeId(0, 8)]) == [merkle.root(leaves[:8]), leaves[8]]
    # A writer that read the tree at 4 entries lost the race: nothing it sends is stored.
    stale = TreeState(4, b"\1" * 32, merkle.CompactRange(4, (merkle.root(leaves[:4]),)))
    assert not await log.write_tree("acme", 4, stale, {NodeId(0, 9): b"\2" * 32})
    assert (await log.tree_state("acme")).size == 9
    assert await log.read_nodes("acme", [NodeId(0, 9)]) == [None]
    await port.world.append("acme", events(1))
    compact, completed = state.compact.extend([leaf_hash(b"ten")])
    assert await log.write_tree("acme", 9, TreeState(10, compact.root(), compact), completed)
    assert (await log.tree_state("acme")).root == compact.root()
    assert await log.leaf_hashes("acme", [9]) == [leaf_hash(b"ten")]


async def test_contract_a_round_kept_in_tiles_leaves_no_node_and_then_refuses_nodes(port: Port) -> None:
    """The tiles-first round: the head is marked, the older nodes go, a round with nodes is refused."""
    log = port.log
    await port.world.append("acme", events(6))
    leaves = [leaf_hash(entry or b"") for entry in await log.entries("acme", range(6))]
    compact, completed = merkle.CompactRange().extend(leaves[:3])
    assert await log.write_tree("acme", 0, TreeState(3, compact.root(), compact), completed)
    assert await log.read_nodes("acme", [NodeId(0, 2), NodeId(1, 0)]) == [leaves[2], merkle.root(leaves[:2])]
    bigger, _ = compact.extend(leaves[3:5])
    assert await log.write_tree("acme", 3, TreeState(5, bigger.root(), bigger, tiled=True), {})
    state = await log.tree_state("acme")
    assert (state.size, state.root, state.tiled) == (5, merkle.root(leaves[:5]), True)
    assert await log.read_nodes("acme", [NodeId(0, 2), NodeId(1, 0), NodeId(0, 4)]) == [None, None, None]
    assert not await log.write_tree("acme", 3, TreeState(5, bigger.root(), bigger, tiled=True), {})  # lost
    with pytest.raises(TreeInTiles, match="audit_tiles_dir"):
        await TreeIntegrator(log).integrate("acme")  # an integrator without tiles: its nodes refused
    assert (await log.tree_state("acme")).size == 5


async def test_contract_seeks_and_postings_find_the_entries_of_a_value(port: Port) -> None:
    log = port.log
    await port.world.append("acme", events(12))
    times = [parse_entry(e or b"").time_ms for e in await log.entries("acme", range(12))]
    assert await log.seek_times("acme", [times[0], times[-1] + 1]) == [0, 12]
    granted, a1, nobody = Posting("type", "consent.granted"), Posting("acct", "a1"), Posting("method", "post")
    assert await log.seek_postings("acme", [granted, a1, nobody], 4) == [
        PostingSeek(2, 6),
        PostingSeek(2, 4),
        PostingSeek(0, 0),
    ]
    assert await log.read_posting("acme", granted, 2, 3) == [5, 7, 9]
    assert await log.read_posting("acme", a1, 3, 10) == [9]
    assert await log.read_posting("acme", Posting("method", "sms"), 0, 10) == [0, 3, 6, 9]
    found = [r async for r in run_query(log, "acme", EventFilter(accounts=("a1", "other4"), start_index=2))]
    assert [r.event.index for r in found] == [3, 4, 6, 9]
    assert [r.leaf for r in found] == await log.entries("acme", [3, 4, 6, 9])
    query = EventFilter(types=frozenset({"consent.granted"}), method="sms", start_ms=times[0], limit=1)
    assert [r.event.index async for r in run_query(log, "acme", query)] == [3]


async def test_contract_a_rollback_is_acknowledged_once_in_the_log(port: Port, tmp_path: Path) -> None:
    log = port.log
    await port.world.append("acme", events(3))
    heads = PublishedHeads(tmp_path)
    head = TreeHead("idverify/acme", 5, b"\7" * 32, 1_760_000_000_000)
    heads.record("acme", TreeHeadSigner(Ed25519PrivateKey.generate()).sign(head))
    guard = RollbackGuard(log, TreeIntegrator(log), heads)
    (done,) = await acknowledge_rollbacks(guard, port.acknowledgements, heads)
    assert (done.rollback, done.entry, done.written) == (Rollback("acme", head, 3), 3, True)
    assert await guard.find_all() == []
    entry = parse_entry((await log.entries("acme", [3]))[0] or b"")
    assert (entry.type, entry.outcome, entry.reason) == (
        "audit.rollback_acknowledged",
        "acknowledged",
        ROLLED_BACK,
    )
    assert entry.principal.startswith("audit-acknowledge-rollback/")
    assert dict(entry.attributes) == {
        "found_size": "3",
        "lost_entries": "3-4",
        "published_root": "07" * 32,
        "published_size": "5",
        "published_time_ms": "1760000000000",
    }
    again = await port.acknowledgements.append_acknowledgement(done.rollback, "someone")
    assert (again.index, again.written, await log.size("acme")) == (3, False, 4)
    other = dataclasses.replace(done.rollback, head=dataclasses.replace(head, root_hash=bytes([8]) * 32))
    assert (await port.acknowledgements.append_acknowledgement(other, "someone")).index == 4
