"""AuditFlow: tenant rules, precise errors for bad positions, signed heads and account queries."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit import merkle
from idverify.audit.checkpoint import TreeHeadSigner, checkpoint_bytes, verify_signed_head
from idverify.audit.events import EntryDamaged
from idverify.audit.signing_key import DEFAULT_KEY_FILE, SIGNING_KEY_ENV, load_signing_key
from idverify.domain.errors import ConfigError, InvalidArgument, NotFound, OutOfRange, PermissionDenied
from idverify.flows.audit import AuditFlow, QueryRequest, origin_of
from idverify.privacy.keyring import Keyring
from idverify.security.principals import Principal, Role
from idverify.services.interceptor import status_for
from idverify.store.audit_logs import RedisAuditLog
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticAppender

_tenants = itertools.count()
KEYRING = Keyring.generate()
KEY = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flow(redis: RedisClient, clock: Clock) -> AuditFlow:
    return AuditFlow(
        RedisAuditLog(redis, Scripts(redis)),
        TreeHeadSigner(KEY),
        KEYRING,
        configured_tenants={"default"},
        clock_ms=clock,
    )


@pytest.fixture
async def tenant(redis: RedisClient) -> str:
    """A tenant with ten entries, two of them about account ``alice``."""
    name = f"flow-{next(_tenants)}"
    alice = KEYRING.pseudonym(name, "audit", "alice")
    events = [
        (
            {"principal": "p", "account": alice if n in {2, 7} else f"other{n}"},
            {"type": "t.x", "outcome": "o"},
        )
        for n in range(10)
    ]
    await SyntheticAppender(redis).append(name, events)
    return name


def auditor(tenant: str) -> Principal:
    return Principal(tenant, Role.AUDITOR, "c1")


class TestTenants:
    async def test_an_auditor_reads_its_own_tenant(self, flow: AuditFlow, tenant: str) -> None:
        """No tenant named, or its own: the caller's tenant."""
        assert await flow.tenant(auditor(tenant), "") == tenant
        assert await flow.tenant(auditor(tenant), tenant) == tenant

    async def test_an_auditor_may_not_name_another_tenant(self, flow: AuditFlow, tenant: str) -> None:
        """Naming another tenant is PERMISSION_DENIED, whether or not it exists."""
        for other in ("default", "no-such-tenant"):
            with pytest.raises(PermissionDenied):
                await flow.tenant(auditor(tenant), other)

    async def test_an_admin_names_its_own_tenant_only(self, flow: AuditFlow, tenant: str) -> None:
        """Admins read their own tenant's log; naming any other is PERMISSION_DENIED (issue 18)."""
        admin = Principal(tenant, Role.ADMIN, "root")
        assert await flow.tenant(admin, tenant) == tenant
        for other in ("default", "no-such-tenant", "Not A Tenant"):
            with pytest.raises(PermissionDenied) as refused:
                await flow.tenant(admin, other)
            assert refused.value.reason == "OTHER_TENANT"

    async def test_a_tenant_without_a_log_is_not_found(self, flow: AuditFlow) -> None:
        """A principal (a certificate's, say) of a tenant that has no log yet gets NOT_FOUND."""
        with pytest.raises(NotFound) as unknown:
            await flow.tenant(Principal("no-such-tenant", Role.AUDITOR, "cert:0"), "")
        assert unknown.value.reason == "UNKNOWN_TENANT"


class TestHeadsAndProofs:
    async def test_the_head_is_signed_over_the_whole_log(
        self, flow: AuditFlow, tenant: str, clock: Clock
    ) -> None:
        """GetTreeHead integrates, signs the checkpoint, and re-signs only when stale or grown."""
        signed = await flow.signed_head(tenant)
        verify_signed_head(signed, KEY.public_key())
        assert signed.head.size == 10
        assert signed.head.origin == origin_of(tenant)
        assert checkpoint_bytes(signed.head).startswith(f"idverify/{tenant}\n10\n".encode())
        assert await flow.signed_head(tenant) is signed
        clock.now += 61_000
        assert (await flow.signed_head(tenant)).head.timestamp_ms == clock.now

    async def test_proofs_verify_against_signed_heads(
        self, flow: AuditFlow, tenant: str, redis: RedisClient
    ) -> None:
        """Inclusion and consistency proofs verify against the roots of signed heads."""
        old = await flow.signed_head(tenant)
        await SyntheticAppender(redis).append(tenant, [({}, {"type": "t.y"})] * 5)
        new = await flow.signed_head(tenant)
        event, leaf = await flow.event(tenant, 3)
        proof = await flow.inclusion_proof(tenant, 3, new.head.size)
        assert proof.leaf_hash == merkle.leaf_hash(leaf)
        merkle.verify_inclusion(proof.leaf_hash, event.index, new.head.size, proof.hashes, new.head.root_hash)
        hashes = await flow.consistency_proof(tenant, old.head.size, new.head.size)
        merkle.verify_consistency(
            old.head.size, new.head.size, hashes, old.head.root_hash, new.head.root_hash
        )
        assert await flow.consistency_proof(tenant, 4, 4) == []

    async def test_a_proof_for_an_appended_but_unsigned_size_integrates_first(
        self, flow: AuditFlow, tenant: str
    ) -> None:
        """A size the log has reached but the tree has not yet is integrated on demand."""
        proof = await flow.inclusion_proof(tenant, 9, 10)
        head = await flow.signed_head(tenant)
        merkle.verify_inclusion(proof.leaf_hash, 9, 10, proof.hashes, head.head.root_hash)

    @pytest.mark.parametrize(
        ("index", "size", "error", "field"),
        [
            (0, 0, InvalidArgument, "index"),
            (5, 5, InvalidArgument, "index"),
            (7, 3, InvalidArgument, "index"),
            (0, 11, OutOfRange, "tree_size"),
            (2**64 - 2, 2**64 - 1, OutOfRange, "tree_size"),
        ],
    )
    async def test_bad_inclusion_requests_get_precise_errors(
        self, flow: AuditFlow, tenant: str, index: int, size: int, error: type[Exception], field: str
    ) -> None:
        """An index past the tree size is INVALID_ARGUMENT; a size not reached yet is OUT_OF_RANGE."""
        with pytest.raises(error) as raised:
            await flow.inclusion_proof(tenant, index, size)
        assert getattr(raised.value, "field", "") == field

    @pytest.mark.parametrize(
        ("first", "second", "error", "reason"),
        [
            (5, 3, InvalidArgument, "FIRST_AFTER_SECOND"),
            (0, 3, InvalidArgument, "EMPTY_TREE"),
            (0, 0, InvalidArgument, "EMPTY_TREE"),
            (3, 11, OutOfRange, "TREE_SIZE_NOT_REACHED"),
        ],
    )
    async def test_bad_consistency_requests_get_precise_errors(
        self, flow: AuditFlow, tenant: str, first: int, second: int, error: type[Exception], reason: str
    ) -> None:
        """Reversed or empty ranges are INVALID_ARGUMENT; a size not reached yet is OUT_OF_RANGE."""
        with pytest.raises(error) as raised:
            await flow.consistency_proof(tenant, first, second)
        assert getattr(raised.value, "reason", "") == reason

    async def test_an_event_past_the_end_is_out_of_range(self, flow: AuditFlow, tenant: str) -> None:
        """GetEvent beyond the log's size is OUT_OF_RANGE."""
        with pytest.raises(OutOfRange):
            await flow.event(tenant, 10)


class TestHeadsNeverGoBack:
    """Heads from several processes on one Redis, as callers switching between them see them."""

    @staticmethod
    def replica(redis: RedisClient, clock: Clock) -> AuditFlow:
        return AuditFlow(RedisAuditLog(redis, Scripts(redis)), TreeHeadSigner(KEY), KEYRING, clock_ms=clock)

    async def test_a_head_is_never_older_than_one_another_replica_gave_out(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """Replicas that signed one size at different times never hand out the older head after the newer."""
        clock = Clock()
        first, second = self.replica(redis, clock), self.replica(redis, clock)
        seen = [await first.signed_head(tenant)]
        clock.now += 1_000
        seen.append(await second.signed_head(tenant))
        clock.now += 1_000
        seen.append(await first.signed_head(tenant))
        stamps = [signed.head.timestamp_ms for signed in seen]
        assert stamps == sorted(stamps)

    async def test_a_replica_whose_clock_is_behind_never_signs_into_the_past(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """A head signed on a slow clock, even of a grown log, is no older than the last head given out."""
        fast, slow = Clock(), Clock()
        slow.now -= 30_000
        ahead, behind = self.replica(redis, fast), self.replica(redis, slow)
        seen = []
        for round_number in range(6):
            await SyntheticAppender(redis).append(tenant, [({}, {"type": "t.z"})])
            seen.append(await (ahead if round_number % 2 else behind).signed_head(tenant))
            seen.append(await (behind if round_number % 2 else ahead).signed_head(tenant))
            fast.now += 70_000
            slow.now += 70_000
        for earlier, later in itertools.pairwise(seen):
            assert later.head.size >= earlier.head.size
            assert later.head.timestamp_ms >= earlier.head.timestamp_ms
            verify_signed_head(later, KEY.public_key())
        assert seen[-1].head.size == 16

    async def test_concurrent_signers_agree_on_one_head(self, redis: RedisClient, tenant: str) -> None:
        """Replicas with clocks apart, asked at once for a stale head, all give out the head stored first."""
        clocks = [Clock() for _ in range(6)]
        replicas = [self.replica(redis, clock) for clock in clocks]
        await replicas[0].signed_head(tenant)
        for skew, clock in enumerate(clocks):
            clock.now += 61_000 + 100 * skew
        heads = await asyncio.gather(*(replica.signed_head(tenant) for replica in replicas))
        assert len({signed.head.timestamp_ms for signed in heads}) == 1
        assert all(signed.head.size == 10 for signed in heads)

    async def test_a_head_stored_by_another_key_is_not_given_out(
        self, redis: RedisClient, tenant: str
    ) -> None:
        """After a key change, a replica signs afresh with its own key rather than hand out a foreign head."""
        clock = Clock()
        other_key = Ed25519PrivateKey.generate()
        old = AuditFlow(
            RedisAuditLog(redis, Scripts(redis)), TreeHeadSigner(other_key), KEYRING, clock_ms=clock
        )
        await old.signed_head(tenant)
        fresh = await self.replica(redis, clock).signed_head(tenant)
        verify_signed_head(fresh, KEY.public_key())
        assert await self.replica(redis, clock).signed_head(tenant) == fresh

    async def test_a_stored_head_that_is_no_head_is_replaced(
        self, redis: RedisClient, tenant: str, clock: Clock
    ) -> None:
        """Garbage where the last head is kept is signed over, not handed out and not taken as a time."""
        await redis.hset(
            f"iv1:{{t:{tenant}}}:audit:treehead",
            mapping={
                "head_checkpoint": b"x\n99\n\n9999999999999999\n",
                "head_key_id": "k",
                "head_signature": "s",
            },
        )
        signed = await self.replica(redis, clock).signed_head(tenant)
        verify_signed_head(signed, KEY.public_key())
        assert signed.head.timestamp_ms == clock.now


class TestQueries:
    async def test_an_account_id_is_matched_through_its_audit_pseudonym(
        self, flow: AuditFlow, tenant: str
    ) -> None:
        """The server hashes the account id; entries carry only the pseudonym."""
        found = [r.event.index async for r in flow.query(tenant, QueryRequest(account_id="alice"))]
        assert found == [2, 7]

    @pytest.mark.parametrize(
        ("request_", "field"),
        [
            (QueryRequest(start_ms=10, end_ms=5), "start_time"),
            (QueryRequest(start_ms=-1), "start_time"),
            (QueryRequest(types=["x"] * 65), "event_types"),
            (QueryRequest(outcomes=[""]), "outcomes[0]"),
            (QueryRequest(method="m" * 65), "method_id"),
            (QueryRequest(account_id=" "), "account_id"),
        ],
    )
    def test_malformed_queries_are_invalid(
        self, flow: AuditFlow, tenant: str, request_: QueryRequest, field: str
    ) -> None:
        """A reversed or negative time range and oversized filters are INVALID_ARGUMENT."""
        with pytest.raises(InvalidArgument) as raised:
            flow.query(tenant, request_)
        assert raised.value.field == field


class TestDamagedEntries:
    """An entry altered in the log: a precise answer naming it, never an internal error.

    Planted by someone with Redis write access, or sequenced before the sequencer checked UTF-8.
    """

    @staticmethod
    async def damage(redis: RedisClient, tenant: str, how: str) -> None:
        log_key = TenantKeys(tenant).audit_log()
        entry = await redis.hget(log_key, "4")
        assert entry is not None
        if how == "missing":
            await redis.hdel(log_key, "4")
            return
        damaged = {
            "not UTF-8": entry.replace(b'"principal":"p"', b'"principal":"\xff"'),
            "a surrogate": entry.replace(b'"principal":"p"', b'"principal":"\xed\xa0\x80"'),
            "not JSON": entry[:-1],
            "another number": entry.replace(b'"seq":4', b'"seq":5'),
        }[how]
        await redis.hset(log_key, "4", damaged)

    @pytest.mark.parametrize("how", ["not UTF-8", "a surrogate", "not JSON", "another number", "missing"])
    async def test_a_query_gives_the_entries_before_it_then_names_it(
        self, redis: RedisClient, flow: AuditFlow, tenant: str, how: str
    ) -> None:
        await self.damage(redis, tenant, how)
        results = aiter(flow.query(tenant, QueryRequest()))
        assert [(await anext(results)).event.index for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(EntryDamaged) as damaged:
            await anext(results)
        status = status_for(damaged.value)
        assert status.code is grpc.StatusCode.FAILED_PRECONDITION
        assert (damaged.value.reason, damaged.value.metadata) == ("AUDIT_ENTRY_DAMAGED", {"index": "4"})
        # A caller reads on after it, and one entry at a time the others are there.
        after = [r.event.index async for r in flow.query(tenant, QueryRequest(start_index=5))]
        assert after == [5, 6, 7, 8, 9]
        with pytest.raises(EntryDamaged):
            await flow.event(tenant, 4)
        assert (await flow.event(tenant, 5))[0].index == 5
        # A filter whose postings pass the entry by never reads it.
        assert [r.event.index async for r in flow.query(tenant, QueryRequest(account_id="alice"))] == [2, 7]


class TestSigningKey:
    def test_the_default_key_is_generated_once_with_mode_0600(self, tmp_path: Path) -> None:
        """First start creates the key file; later starts read the same key."""
        first = load_signing_key(tmp_path, environ={})
        assert (tmp_path / DEFAULT_KEY_FILE).stat().st_mode & 0o777 == 0o600
        again = load_signing_key(tmp_path, environ={})
        assert first.private_bytes_raw() == again.private_bytes_raw()

    def test_the_environment_wins_and_bad_keys_are_config_errors(self, tmp_path: Path) -> None:
        """IDVERIFY_AUDIT_SIGNING_KEY overrides files; garbage stops start-up with ConfigError."""
        from idverify.audit.checkpoint import private_key_pem  # noqa: PLC0415

        pem = private_key_pem(KEY).decode()
        assert (
            load_signing_key(tmp_path, environ={SIGNING_KEY_ENV: pem}).private_bytes_raw()
            == KEY.private_bytes_raw()
        )
        assert not (tmp_path / DEFAULT_KEY_FILE).exists()
        with pytest.raises(ConfigError, match=SIGNING_KEY_ENV):
            load_signing_key(tmp_path, environ={SIGNING_KEY_ENV: "not a key"})
        with pytest.raises(ConfigError, match="audit_signing_key_file"):
            load_signing_key(tmp_path, str(tmp_path / "missing.pem"), environ={})
