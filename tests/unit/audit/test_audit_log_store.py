"""The audit log on a real Redis: entry bytes, indexes, tree integration, proofs and queries."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
from typing import Any

import pytest
from redis.exceptions import ResponseError

from idverify.audit import integrator as integrator_module
from idverify.audit import merkle, query
from idverify.audit.events import parse_entry
from idverify.audit.integrator import LogCorrupted, TreeIntegrator
from idverify.audit.query import EventFilter, run_query
from idverify.audit.tree_state import TreeState
from idverify.security.clients import ClientRegistry
from idverify.security.principals import Role
from idverify.store import audit_store
from idverify.store.audit_store import AuditStore, decode_postings
from idverify.store.clients import RedisClientStore
from idverify.store.connection import RedisClient
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender

_tenants = itertools.count()
REQUEST = {
    "principal": "t/registrar/c1",
    "request_id": "req/1",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
}


class _Keyed:
    """A stand-in for the keyring's MAC (the client registry needs only this)."""

    def mac(self, tenant: str, purpose: str, data: bytes, *, pepper_version: str | None = None) -> bytes:
        del pepper_version
        return f"{tenant}|{purpose}|".encode() + data


@pytest.fixture
def tenant() -> str:
    return f"log-{next(_tenants)}"


@pytest.fixture
def store(redis: RedisClient, scripts: Scripts) -> AuditStore:
    return AuditStore(redis, scripts)


def event(n: int, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (base, fields) pair like the verification scripts pass to audit()."""
    base = {**REQUEST, "verification_id": f"{n:032x}", "account": f"acct{n % 3}", "method": "sms"}
    kinds = ("verification.started", "challenge.sent", "verification.verified", "rate_limit.hit")
    outcomes = ("started", "sent", "verified", "limited")
    defaults = {"type": kinds[n % 4], "outcome": outcomes[n % 4], "reason": ""}
    return base, {**defaults, **fields}


async def fill(redis: RedisClient, tenant: str, count: int, start: int = 0) -> None:
    await SyntheticAppender(redis).append(tenant, [event(n) for n in range(start, start + count)])


async def all_leaves(store: AuditStore, tenant: str) -> list[bytes]:
    size = await store.size(tenant)
    found = await store.entries(tenant, list(range(size)))
    assert all(leaf is not None for leaf in found)
    return [leaf for leaf in found if leaf is not None]


class TestEntryBytes:
    async def test_an_entry_is_canonical_json_in_a_fixed_order(self, redis: RedisClient, tenant: str) -> None:
        """The prelude writes version, seq, time, the event fields, steps, request and sorted attributes."""
        steps = [{"verifier": "document", "outcome": "pass", "reason": ""}]
        await SyntheticAppender(redis).append(
            tenant,
            [event(0, type="verification.step", steps=steps, zeta="z", alpha="a/b", text_version="v1")],
        )
        (leaf,) = await redis.hmget(TenantKeys(tenant).audit_log(), ["0"])
        assert leaf is not None
        text = leaf.decode()
        assert text.startswith('{"v":1,"seq":0,"time_ms":')
        assert '"type":"verification.step","verification_id":"' in text
        assert '"steps":[{"verifier":"document","outcome":"pass","reason":""}]' in text
        assert '"principal":"t/registrar/c1","request_id":"req/1"' in text  # '/' not escaped
        assert text.endswith('"attributes":{"alpha":"a/b","text_version":"v1","zeta":"z"}}')
        parsed = parse_entry(leaf)
        assert parsed.index == 0
        assert parsed.steps[0].verifier == "document"
        assert dict(parsed.attributes) == {"alpha": "a/b", "text_version": "v1", "zeta": "z"}

    async def test_sequence_numbers_count_up_and_time_never_runs_back(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """Each append takes the next index; entry times are non-decreasing."""
        await fill(redis, tenant, 50)
        events = [parse_entry(leaf) for leaf in await all_leaves(store, tenant)]
        assert [e.index for e in events] == list(range(50))
        times = [e.time_ms for e in events]
        assert times == sorted(times)
        assert await store.size(tenant) == 50

    async def test_index_keys_derived_in_lua_are_the_key_schemas(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """The postings the prelude appends to (type, account, outcome, method) are TenantKeys' keys."""
        await fill(redis, tenant, 8)
        keys = TenantKeys(tenant)
        started = await redis.get(keys.audit_index("type", "verification.started"))
        assert decode_postings(started or b"") == [0, 4]
        assert decode_postings(await redis.get(keys.audit_index("acct", "acct1")) or b"") == [1, 4, 7]
        assert decode_postings(await redis.get(keys.audit_index("outcome", "sent")) or b"") == [1, 5]
        assert decode_postings(await redis.get(keys.audit_index("method", "sms")) or b"") == list(range(8))
        assert not await redis.exists(keys.audit_index("outcome", ""))
        assert await redis.hget(keys.audit_head(), "size") == b"8"

    async def test_a_bad_event_writes_nothing(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """An entry without a type, or with a table attribute, fails before any write."""
        appender = SyntheticAppender(redis)
        for fields in ({"outcome": "x"}, {"type": "x.y", "nested": {"a": 1}}):
            with pytest.raises(ResponseError):
                await appender.append(tenant, [({}, fields)])
        assert await store.size(tenant) == 0
        assert not await store.exists(tenant)


class TestIntegration:
    async def test_the_stored_root_is_the_rfc6962_root(
        self, redis: RedisClient, store: AuditStore, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Integrating in batches, after each append burst, always yields the root of all entries."""
        monkeypatch.setattr(integrator_module, "BATCH", 7)
        tree = TreeIntegrator(store)
        for burst in (1, 2, 13, 30):
            await fill(redis, tenant, burst, start=await store.size(tenant))
            state = await tree.integrate(tenant)
            leaves = [merkle.leaf_hash(leaf) for leaf in await all_leaves(store, tenant)]
            assert state.size == len(leaves)
            assert state.root == merkle.root(leaves)
            assert state.compact.root() == state.root
            assert await store.tree_state(tenant) == state

    async def test_a_round_lets_the_event_loop_take_turns_between_slices(
        self, redis: RedisClient, store: AuditStore, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At most FOLD_SLICE entries are hashed without a turn of the loop, and the root is the same."""
        monkeypatch.setattr(integrator_module, "FOLD_SLICE", 4)
        await fill(redis, tenant, 30)
        turns = 0
        hashed_at_turn: list[int] = []

        def counting_leaf_hash(entry: bytes) -> bytes:
            hashed_at_turn.append(turns)
            return merkle.leaf_hash(entry)

        async def other_calls() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        monkeypatch.setattr(integrator_module, "leaf_hash", counting_leaf_hash)
        done = asyncio.Event()
        ticking = asyncio.create_task(other_calls())
        state = await TreeIntegrator(store).integrate(tenant)
        done.set()
        await ticking

        assert state.root == merkle.root([merkle.leaf_hash(leaf) for leaf in await all_leaves(store, tenant)])
        assert len(hashed_at_turn) == 30
        assert max(collections.Counter(hashed_at_turn).values()) == 4

    async def test_racing_integrators_agree(
        self, redis: RedisClient, scripts: Scripts, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Several integrators (as in several replicas) at once end on one correct tree."""
        monkeypatch.setattr(integrator_module, "BATCH", 5)
        await fill(redis, tenant, 101)
        stores = [AuditStore(redis, scripts) for _ in range(4)]
        states = await asyncio.gather(*(TreeIntegrator(s).integrate(tenant) for s in stores))
        leaves = [merkle.leaf_hash(leaf) for leaf in await all_leaves(stores[0], tenant)]
        assert {s.root for s in states} == {merkle.root(leaves)}
        for index in (0, 50, 100):
            proof = await _inclusion(stores[0], tenant, index, 101)
            merkle.verify_inclusion(leaves[index], index, 101, proof, merkle.root(leaves))

    async def test_a_stale_writer_is_refused(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """The check-and-set refuses a write that does not start from the stored tree size."""
        await fill(redis, tenant, 4)
        state = await TreeIntegrator(store).integrate(tenant)
        assert not await store.write_tree(tenant, 2, TreeState.empty(), {})
        assert await store.tree_state(tenant) == state

    async def test_a_missing_entry_is_reported(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """An entry deleted below the log's size stops integration with LogCorrupted."""
        await fill(redis, tenant, 3)
        await redis.hdel(TenantKeys(tenant).audit_log(), "1")
        with pytest.raises(LogCorrupted, match="entry 1"):
            await TreeIntegrator(store).integrate(tenant)

    async def test_nodes_span_chunks(
        self, redis: RedisClient, store: AuditStore, tenant: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With tiny chunks, nodes land in several strings and proofs still read them right."""
        monkeypatch.setattr(audit_store, "CHUNK_NODES", 4)
        await fill(redis, tenant, 37)
        await TreeIntegrator(store).integrate(tenant)
        assert await redis.exists(TenantKeys(tenant).audit_tree(0, 9)) == 1
        leaves = [merkle.leaf_hash(leaf) for leaf in await all_leaves(store, tenant)]
        assert await store.leaf_hashes(tenant, list(range(37))) == leaves
        for index in range(37):
            proof = await _inclusion(store, tenant, index, 37)
            merkle.verify_inclusion(leaves[index], index, 37, proof, merkle.root(leaves))


async def _inclusion(store: AuditStore, tenant: str, index: int, size: int) -> list[bytes]:
    plan = merkle.inclusion_plan(index, size)
    return plan.assemble(await store.read_nodes(tenant, plan.nodes))


class TestProofsFromStoredNodes:
    async def test_every_inclusion_and_consistency_proof_of_small_trees_verifies(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """Proofs read from stored nodes match the RFC 6962 definition for every size up to 20."""
        await fill(redis, tenant, 20)
        await TreeIntegrator(store).integrate(tenant)
        leaves = [merkle.leaf_hash(leaf) for leaf in await all_leaves(store, tenant)]
        for size in range(1, 21):
            root = merkle.root(leaves[:size])
            for index in range(size):
                proof = await _inclusion(store, tenant, index, size)
                assert proof == merkle.inclusion_proof(index, size, leaves)
                merkle.verify_inclusion(leaves[index], index, size, proof, root)
            for first in range(1, size + 1):
                plan = merkle.consistency_plan(first, size)
                proof = plan.assemble(await store.read_nodes(tenant, plan.nodes))
                assert proof == merkle.consistency_proof(first, size, leaves)
                merkle.verify_consistency(first, size, proof, merkle.root(leaves[:first]), root)

    async def test_a_node_not_stored_reads_as_none(self, store: AuditStore, tenant: str) -> None:
        """Reading past the stored tree gives None, never zero bytes passed off as a hash."""
        assert await store.read_nodes(tenant, [merkle.NodeId(0, 5)]) == [None]


class TestQueries:
    async def test_seek_finds_the_first_entry_at_or_after_a_time(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """The Lua binary search over entry times agrees with a scan."""
        await fill(redis, tenant, 10)
        await asyncio.sleep(0.01)
        await fill(redis, tenant, 10, start=10)
        times = [parse_entry(leaf).time_ms for leaf in await all_leaves(store, tenant)]
        probes = [0, times[0], times[9], times[9] + 1, times[19], times[19] + 1]
        expected = [next((i for i, t in enumerate(times) if t >= p), 20) for p in probes]
        assert await store.seek_times(tenant, probes) == expected

    @pytest.mark.parametrize(
        ("query_filter", "expected"),
        [
            (EventFilter(), list(range(40))),
            (EventFilter(types=frozenset({"challenge.sent"})), list(range(1, 40, 4))),
            (
                EventFilter(types=frozenset({"challenge.sent", "rate_limit.hit"})),
                sorted([*range(1, 40, 4), *range(3, 40, 4)]),
            ),
            (EventFilter(accounts=("acct2",)), list(range(2, 40, 3))),
            (EventFilter(accounts=("acct2", "acct0")), sorted([*range(2, 40, 3), *range(0, 40, 3)])),
            (EventFilter(outcomes=frozenset({"verified"})), list(range(2, 40, 4))),
            (EventFilter(method="other"), []),
            (
                EventFilter(method="sms", outcomes=frozenset({"limited"}), start_index=20),
                list(range(23, 40, 4)),
            ),
            (EventFilter(types=frozenset({"challenge.sent"}), outcomes=frozenset({"verified"})), []),
            (EventFilter(types=frozenset({"no.such"})), []),
            (EventFilter(start_index=30), list(range(30, 40))),
            (EventFilter(start_index=7, limit=3), [7, 8, 9]),
            (EventFilter(types=frozenset({"verification.started"}), start_index=9, limit=2), [12, 16]),
            (EventFilter(accounts=("acct1",), outcomes=frozenset({"sent"})), [1, 13, 25, 37]),
            (EventFilter(start_index=41), []),
        ],
    )
    async def test_filters_select_exactly_the_matching_entries(
        self,
        redis: RedisClient,
        store: AuditStore,
        tenant: str,
        monkeypatch: pytest.MonkeyPatch,
        query_filter: EventFilter,
        expected: list[int],
    ) -> None:
        """Each filter, with tiny pages and posting blocks, yields the indices a scan would."""
        monkeypatch.setattr(query, "PAGE", 3)
        monkeypatch.setattr(query, "POSTING_BLOCK", 2)
        await fill(redis, tenant, 40)
        await TreeIntegrator(store).integrate(tenant)
        found = [r async for r in run_query(store, tenant, query_filter)]
        assert [r.event.index for r in found] == expected
        assert all(r.stored_leaf_hash == merkle.leaf_hash(r.leaf) for r in found)

    async def test_time_bounds_cut_the_range(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """A start time includes its instant, an end time excludes it."""
        await fill(redis, tenant, 5)
        await asyncio.sleep(0.01)
        await fill(redis, tenant, 5, start=5)
        times = [parse_entry(leaf).time_ms for leaf in await all_leaves(store, tenant)]
        later = EventFilter(start_ms=times[5])
        assert [r.event.index async for r in run_query(store, tenant, later)] == list(range(5, 10))
        earlier = EventFilter(end_ms=times[5])
        assert [r.event.index async for r in run_query(store, tenant, earlier)] == list(range(5))
        empty = EventFilter(start_ms=times[5], end_ms=times[5])
        assert [r async for r in run_query(store, tenant, empty)] == []

    async def test_entries_not_yet_integrated_have_no_stored_hash(
        self, redis: RedisClient, store: AuditStore, tenant: str
    ) -> None:
        """A query sees every entry; only integrated ones come with the tree's leaf hash."""
        await fill(redis, tenant, 3)
        await TreeIntegrator(store).integrate(tenant)
        await fill(redis, tenant, 2, start=3)
        found = [r async for r in run_query(store, tenant, EventFilter())]
        assert [r.stored_leaf_hash is not None for r in found] == [True, True, True, False, False]


class TestAuditedSteps:
    async def test_creating_and_revoking_a_client_are_audited_in_its_tenant(
        self, redis: RedisClient, scripts: Scripts, store: AuditStore, tenant: str
    ) -> None:
        """Client create and revoke write their entries; a second revoke writes none."""
        clients = ClientRegistry(RedisClientStore(redis, scripts), _Keyed())
        record, token = await clients.create(tenant, Role.AUDITOR, "for the regulator", REQUEST)
        assert token.startswith(f"ivk_{tenant}.{record.client_id}.")
        principal = await clients.authenticate(token)
        assert principal is not None
        assert (principal.tenant, principal.role) == (tenant, Role.AUDITOR)
        await clients.revoke(record.client_id, REQUEST)
        await clients.revoke(record.client_id, REQUEST)
        events = [parse_entry(leaf) for leaf in await all_leaves(store, tenant)]
        assert [(e.type, e.outcome) for e in events] == [
            ("client.created", "created"),
            ("client.revoked", "revoked"),
        ]
        assert dict(events[0].attributes) == {"client_id": record.client_id, "role": "auditor"}
        assert "regulator" not in json.dumps([dict(e.attributes) for e in events])
        assert await redis.hget(GlobalKeys.CLIENT_TENANTS, record.client_id) == tenant.encode()
        assert tenant in await clients.tenants()

    @pytest.mark.parametrize(
        "token", ["ivk_a.b", "ivk_.x.y", "ivk_UPPER.ab.cd", "ivk_t.not-hex!.s", "ivk_t.ab.", "ivk_t.ab.cd.ef"]
    )
    async def test_malformed_tokens_name_no_client(
        self, redis: RedisClient, scripts: Scripts, token: str
    ) -> None:
        """A token not of the form ivk_<tenant>.<id>.<secret> authenticates no one."""
        assert await ClientRegistry(RedisClientStore(redis, scripts), _Keyed()).authenticate(token) is None

    async def test_a_login_ip_label_is_stored_with_its_entry(
        self, redis: RedisClient, scripts: Scripts, store: AuditStore, tenant: str
    ) -> None:
        """login_ip.lua writes the label and an entry naming the database, not the place."""
        keys = TenantKeys(tenant)
        label = {
            "ip_display": "广东",
            "ip_country": "CN",
            "ip_source": "geolite2-city",
            "ip_build": "2019-12-24",
        }
        await scripts.run(
            "login_ip",
            [keys.account("ps1"), keys.audit_log()],
            [json.dumps(label), json.dumps(REQUEST), "aud1"],
        )
        assert await redis.hget(keys.account("ps1"), "ip_display") == "广东".encode()
        (entry,) = [parse_entry(leaf) for leaf in await all_leaves(store, tenant)]
        assert (entry.type, entry.account) == ("login_ip.recorded", "aud1")
        assert dict(entry.attributes) == {"source": "geolite2-city", "source_build_date": "2019-12-24"}
        assert "广东" not in json.dumps(dict(entry.attributes), ensure_ascii=False)
