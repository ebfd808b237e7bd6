"""AuditFlow over an in-memory AuditLog: an auditor's reads decided without Redis or gRPC.

Each test shows one decision of the use case: which tenant a caller reads, the precise error for
a position that does not exist or is not reached yet, a proof that verifies against the tree it
integrated on demand, heads re-signed only when the tree grew or the head aged and never going
back in time, a head another replica stored handed out, and the checks on a query's filters.
``tests/unit/audit/test_audit_log_flow.py`` and ``tests/e2e/test_audit.py`` run it on Redis.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import TreeHeadSigner, verify_signed_head
from idverify.audit.merkle import leaf_hash
from idverify.domain.errors import InvalidArgument, NotFound, OutOfRange, PermissionDenied, StoreUnavailable
from idverify.flows.audit import HEAD_MAX_AGE_MS, AuditFlow, QueryRequest, origin_of
from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal, Role
from idverify.testing.memory_audit_log import MemoryAuditLog

KEYRING = Keyring.generate()
KEY = Ed25519PrivateKey.generate()
REQUEST = {"principal": "acme/registrar/c1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


def flow_over(log: MemoryAuditLog, clock: Clock | None = None, key: Ed25519PrivateKey = KEY) -> AuditFlow:
    return AuditFlow(
        log, TreeHeadSigner(key), KEYRING, configured_tenants={"fresh"}, clock_ms=clock or Clock()
    )


def log_of(size: int, tenant: str = "acme") -> MemoryAuditLog:
    log = MemoryAuditLog()
    alice = KEYRING.pseudonym(tenant, "audit", "alice")
    for n in range(size):
        log.append(
            tenant, REQUEST, {"type": "t.x", "outcome": "o", "account": alice if n in {2, 7} else f"x{n}"}
        )
    return log


async def test_a_caller_reads_its_own_tenant_and_only_an_operator_names_another() -> None:
    flow = flow_over(log_of(3))
    assert await flow.tenant(Principal("acme", Role.AUDITOR, "c1"), "") == "acme"
    with pytest.raises(PermissionDenied):
        await flow.tenant(Principal("globex", Role.AUDITOR, "c2"), "acme")
    assert await flow.tenant(Principal("globex", Role.OPERATOR, "c3"), "acme") == "acme"
    with pytest.raises(InvalidArgument) as bad:
        await flow.tenant(Principal("globex", Role.OPERATOR, "c3"), "Not A Tenant")
    assert bad.value.reason == "BAD_TENANT"
    with pytest.raises(NotFound):
        await flow.tenant(Principal("ghost", Role.AUDITOR, "c4"), "")
    assert await flow.tenant(Principal("fresh", Role.AUDITOR, "c5"), "") == "fresh"  # configured, no log


async def test_a_tenant_found_once_is_not_looked_up_again() -> None:
    log = log_of(1)
    flow = flow_over(log)
    await flow.tenant(Principal("acme", Role.AUDITOR, "c1"), "")
    log.down = True
    assert await flow.tenant(Principal("acme", Role.AUDITOR, "c1"), "") == "acme"


async def test_an_inclusion_proof_integrates_the_tree_it_needs_and_verifies() -> None:
    log = log_of(10)
    flow = flow_over(log)
    assert (await log.tree_state("acme")).size == 0
    proof = await flow.inclusion_proof("acme", 3, 8)
    leaves = [leaf_hash(entry or b"") for entry in await log.entries("acme", range(10))]
    assert proof.leaf_hash == leaves[3]
    merkle.verify_inclusion(proof.leaf_hash, 3, 8, proof.hashes, merkle.root(leaves[:8]))
    with pytest.raises(InvalidArgument) as outside:
        await flow.inclusion_proof("acme", 8, 8)
    assert outside.value.reason == "INDEX_NOT_IN_TREE"
    with pytest.raises(OutOfRange) as ahead:
        await flow.inclusion_proof("acme", 3, 11)
    assert ahead.value.reason == "TREE_SIZE_NOT_REACHED"


async def test_a_consistency_proof_verifies_and_a_self_contradicting_request_is_refused() -> None:
    log = log_of(10)
    flow = flow_over(log)
    proof = await flow.consistency_proof("acme", 3, 10)
    leaves = [leaf_hash(entry or b"") for entry in await log.entries("acme", range(10))]
    merkle.verify_consistency(3, 10, proof, merkle.root(leaves[:3]), merkle.root(leaves))
    for first, second, reason in ((5, 4, "FIRST_AFTER_SECOND"), (0, 4, "EMPTY_TREE")):
        with pytest.raises(InvalidArgument) as refused:
            await flow.consistency_proof("acme", first, second)
        assert refused.value.reason == reason
    with pytest.raises(OutOfRange):
        await flow.consistency_proof("acme", 3, 12)


async def test_an_event_is_read_once_the_log_reached_it() -> None:
    log = log_of(3)
    flow = flow_over(log)
    event, leaf = await flow.event("acme", 2)
    assert (event.index, event.type, leaf) == (2, "t.x", (await log.entries("acme", [2]))[0])
    with pytest.raises(OutOfRange) as ahead:
        await flow.event("acme", 3)
    assert ahead.value.reason == "INDEX_NOT_REACHED"


async def test_a_head_is_signed_again_only_when_the_tree_grew_or_it_aged() -> None:
    log, clock = log_of(4), Clock()
    flow = flow_over(log, clock)
    head = await flow.signed_head("acme")
    verify_signed_head(head, KEY.public_key())
    assert (head.head.origin, head.head.size, head.head.timestamp_ms) == (origin_of("acme"), 4, clock.now)
    clock.now += HEAD_MAX_AGE_MS - 1
    assert await flow.signed_head("acme") == head
    clock.now += 1
    aged = await flow.signed_head("acme")
    assert (aged.head.size, aged.head.timestamp_ms) == (4, clock.now)
    log.append("acme", REQUEST, {"type": "t.y"})
    grown = await flow.signed_head("acme")
    assert (grown.head.size, grown.head.timestamp_ms) == (5, clock.now)


async def test_heads_never_go_back_in_time_across_replicas() -> None:
    log, early, late = log_of(2), Clock(), Clock()
    late.now += 30_000
    from_late = await flow_over(log, late).signed_head("acme")
    log.append("acme", REQUEST, {"type": "t.y"})
    from_early = await flow_over(log, early).signed_head("acme")  # a replica whose clock is behind
    assert from_early.head.timestamp_ms == from_late.head.timestamp_ms
    assert await flow_over(log, early).signed_head("acme") == from_early  # stored, handed out


async def test_a_head_under_another_key_is_signed_afresh() -> None:
    log, clock = log_of(2), Clock()
    await flow_over(log, clock, Ed25519PrivateKey.generate()).signed_head("acme")
    ours = await flow_over(log, clock).signed_head("acme")
    verify_signed_head(ours, KEY.public_key())


async def test_a_query_finds_an_account_under_its_pseudonym_and_checks_its_filters() -> None:
    flow = flow_over(log_of(10))
    found = [r.event.index async for r in flow.query("acme", QueryRequest(account_id="alice"))]
    assert found == [2, 7]
    limited = [r.event.index async for r in flow.query("acme", QueryRequest(start_index=4, limit=2))]
    assert limited == [4, 5]
    for request, reason in (
        (QueryRequest(start_ms=2, end_ms=1), "REVERSED_RANGE"),
        (QueryRequest(start_ms=-1), "NEGATIVE_TIME"),
        (QueryRequest(types=[f"t{n}" for n in range(65)]), "TOO_MANY"),
        (QueryRequest(outcomes=[""]), "BAD_FILTER"),
        (QueryRequest(method="\n"), "BAD_FILTER"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            flow.query("acme", request)
        assert refused.value.reason == reason


async def test_an_unreachable_store_is_told_as_such() -> None:
    log = log_of(2)
    log.down = True
    with pytest.raises(StoreUnavailable):
        await flow_over(log).signed_head("acme")
