"""An identity's accounts: limits and claims from the identity's keys alone, 0.1.0's members filled.

Every binding limit and claim is decided from the ``idacc:<ref>`` set and the identity record's
``m:<account pseudonym>`` fields (``b:<claim tag>``), never from the members' ``acct`` hashes
(docs/ARCHITECTURE.md, "Identity claims in the store"): an operator who deletes or edits a member's
account, or anyone who could, frees no place and dodges no supersession. The set stays as 0.1.0
reads and writes it (0.1.0 serves beside this release): a member 0.1.0 bound has no field, is
judged from its account as before and gets its field in the script that touches it; a field 0.1.0's
cancellation (a plain SREM) left behind counts for nothing and is removed.
"""

from __future__ import annotations

import json

import pytest

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.erasure import Cancellation, EraseOutcome, ErasureItem, ErasureKind
from idverify.flows.identity_mover import IdentityMove
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits

T = "idacc"
KEYS = TenantKeys(T)
REF = "ref-1"
REQUEST_JSON = json.dumps(RequestInfo(principal="registrar01").audit_fields())
# A person's two names of one document: the first one bound (its binding is the identity
# record's), and another one under which a squatter binds until a claim is established.
OWNER = {"name_tag": "tag-owner", "name_binding": "binding-owner"}
SQUATTER = {"name_tag": "tag-squatter", "name_binding": "binding-squatter"}


def verification(account_ps: str, name: dict[str, str], *, establishes: bool = False) -> VerificationRecord:
    return VerificationRecord(
        method="sms",
        assurance=AssuranceLevel.LOW,
        kind=SubjectKind.PERSON,
        acct=account_ps,
        acct_audit=f"audit-{account_ps}",
        otp_ps=f"otp-{account_ps}",
        identity=REF,
        pepper="pepper-1",
        age_band=AgeBand.ADULT,
        age_source=AgeSource.DOCUMENT,
        establishes=establishes,
        **name,
    )


async def bind(
    redis: RedisClient, account_ps: str, name: dict[str, str], *, limit: int = 2, establishes: bool = False
) -> tuple[Status, str]:
    """A start in ``bind`` mode (what a non-challenge method's start commits): its status and reason."""
    scripts = Scripts(redis)
    store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()))
    fields = verification(account_ps, name, establishes=establishes)
    vid = f"vf-{account_ps}-{name['name_tag']}-{establishes}"
    start = NewVerification(T, f"req-{vid}", vid, account_ps, fields, 60_000, limit, REQUEST_JSON, "bind")

    async def unmoved(moved: bool) -> VerificationRecord:
        raise AssertionError(f"no identity moves here ({moved=})")

    done = await store.commit(start, unmoved)
    return done.record.status, done.record.reason


async def members(redis: RedisClient, ref: str = REF) -> dict[str, str | None]:
    """The identity's members (``idacc``, a set: a hash there fails with WRONGTYPE), each with its field.

    None for a member without an ``m:`` field; a field of an account that is no member is listed as
    ``stale:<pseudonym>``.
    """
    keys = TenantKeys(T)
    listed = {as_text(m) for m in await redis.smembers(keys.identity_accounts(ref))}
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(ref))).items()}
    fields = {k.removeprefix("m:"): v for k, v in record.items() if k.startswith("m:")}
    found: dict[str, str | None] = {member: fields.get(member) for member in listed}
    found |= {f"stale:{member}": value for member, value in fields.items() if member not in listed}
    return found


async def write_as_0_1_0(redis: RedisClient, accounts: dict[str, str | None]) -> None:
    """The identity and its accounts as 0.1.0 (or this release before the fields) left them.

    ``accounts``: pseudonym -> the claim tag its account carries (None: bound by 0.1.0, untagged,
    which counts under the identity's first name). No member has an ``m:`` field.
    """
    await redis.hset(
        KEYS.identity(REF), mapping={"name_binding": OWNER["name_binding"], "pepper": "pepper-1"}
    )
    for account_ps, tag in accounts.items():
        fields = {"identity": REF, "verified_ms": "1", "method": "sms", "audit": f"audit-{account_ps}"}
        await redis.hset(KEYS.account(account_ps), mapping=fields | ({"name_tag": tag} if tag else {}))
    await redis.sadd(KEYS.identity_accounts(REF), *accounts)


async def cancel_as_0_1_0(redis: RedisClient, account_ps: str) -> None:
    """What 0.1.0's cancel.lua does to the identity's keys: SREM, nothing in the identity record."""
    await redis.srem(KEYS.identity_accounts(REF), account_ps)
    await redis.hdel(KEYS.account(account_ps), "identity", "verified_ms", "method", "assurance", "kind")
    await redis.hset(KEYS.account(account_ps), "cancelled_ms", "1")


async def superseded(redis: RedisClient) -> list[str]:
    """The accounts named by ``binding.superseded`` entries, in the log's order."""
    log = await redis.hgetall(KEYS.audit_log())
    entries = [json.loads(log[seq]) for seq in sorted(log, key=int)]
    return [entry["account"] for entry in entries if entry["type"] == "binding.superseded"]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


class TestTheLimitComesFromTheIdentitysKeysAlone:
    """The careless operator and the thief with write access: a member's account edited or gone."""

    async def test_a_deleted_member_account_frees_no_place(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-2", SQUATTER) == (Status.VERIFIED, "")
        await redis.delete(KEYS.account("squat-1"))
        assert await bind(redis, "squat-3", SQUATTER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        assert await members(redis) == {
            "owner-1": "b:tag-owner",
            "squat-1": "b:tag-squatter",
            "squat-2": "b:tag-squatter",
        }

    async def test_a_member_account_given_another_tag_frees_no_place(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "owner-2", OWNER) == (Status.VERIFIED, "")
        await redis.hset(KEYS.account("owner-1"), "name_tag", "edited")
        assert await bind(redis, "owner-3", OWNER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")

    async def test_a_squatter_given_the_owners_tag_is_still_superseded(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        await redis.hset(KEYS.account("squat-1"), "name_tag", OWNER["name_tag"])
        assert await bind(redis, "owner-2", OWNER, establishes=True) == (Status.VERIFIED, "")
        assert await superseded(redis) == ["audit-squat-1"]
        assert await members(redis) == {"owner-1": "b:tag-owner", "owner-2": "b:tag-owner"}
        assert await redis.hget(KEYS.account("squat-1"), "identity") is None


class TestMembersThat010Bound:
    """A member 0.1.0 bound (in the set, no ``m:`` field): judged from its account as before, once.

    Its field is written in the script that judges it, and decides from then on.
    """

    async def test_the_limit_counts_untagged_accounts_under_the_first_name(self, redis: RedisClient) -> None:
        await write_as_0_1_0(redis, {"old-1": None, "owner-1": "tag-owner", "squat-1": "tag-squatter"})
        assert await bind(redis, "owner-2", OWNER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        assert await members(redis) == {"old-1": "b:", "owner-1": "b:tag-owner", "squat-1": "b:tag-squatter"}
        assert await bind(redis, "squat-2", SQUATTER) == (Status.VERIFIED, "")
        # Filled: the account is not read again, so an edit of it frees no place.
        await redis.hdel(KEYS.account("squat-1"), "name_tag")
        assert await bind(redis, "squat-3", SQUATTER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")

    async def test_an_untagged_account_is_not_the_first_name_for_another_name(
        self, redis: RedisClient
    ) -> None:
        await write_as_0_1_0(redis, {"old-1": None, "old-2": None})
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        assert await members(redis) == {"old-1": "b:", "old-2": "b:", "squat-1": "b:tag-squatter"}

    async def test_establishing_supersedes_and_tags_as_the_old_code_did(self, redis: RedisClient) -> None:
        await write_as_0_1_0(redis, {"old-1": None, "squat-1": "tag-squatter"})
        assert await bind(redis, "owner-1", OWNER, establishes=True) == (Status.VERIFIED, "")
        assert await superseded(redis) == ["audit-squat-1"]
        assert await members(redis) == {"old-1": "b:tag-owner", "owner-1": "b:tag-owner"}
        assert await redis.hget(KEYS.account("old-1"), "name_tag") == b"tag-owner"
        assert await redis.hget(KEYS.account("squat-1"), "identity") is None
        assert await bind(redis, "squat-2", SQUATTER) == (Status.REJECTED, "NAME_MISMATCH")

    async def test_reverifying_an_untagged_account_writes_its_tag_in_both(self, redis: RedisClient) -> None:
        await write_as_0_1_0(redis, {"old-1": None})
        assert await bind(redis, "old-1", OWNER, limit=1) == (Status.VERIFIED, "")
        assert await members(redis) == {"old-1": "b:tag-owner"}
        assert await redis.hget(KEYS.account("old-1"), "name_tag") == b"tag-owner"

    async def test_a_member_0_1_0_binds_beside_filled_ones_is_filled_in_turn(
        self, redis: RedisClient
    ) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        await write_as_0_1_0(redis, {"old-1": None})
        assert await members(redis) == {"owner-1": "b:tag-owner", "old-1": None}
        assert await bind(redis, "owner-2", OWNER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        assert await members(redis) == {"owner-1": "b:tag-owner", "old-1": "b:"}


class TestFieldsOfAccountsNoLongerBound:
    """0.1.0's cancellation removes the member from the set and leaves its field in the record."""

    async def test_a_field_0_1_0_left_counts_for_nothing_and_goes_at_the_next_binding(
        self, redis: RedisClient
    ) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-2", SQUATTER) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "squat-1")
        assert (await members(redis))["stale:squat-1"] == "b:tag-squatter"
        assert await bind(redis, "squat-3", SQUATTER) == (Status.VERIFIED, "")
        assert await members(redis) == {
            "owner-1": "b:tag-owner",
            "squat-2": "b:tag-squatter",
            "squat-3": "b:tag-squatter",
        }

    async def test_a_field_0_1_0_left_is_not_superseded(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "squat-1")
        assert await bind(redis, "owner-2", OWNER, establishes=True) == (Status.VERIFIED, "")
        assert await superseded(redis) == []
        assert await members(redis) == {"owner-1": "b:tag-owner", "owner-2": "b:tag-owner"}

    async def test_a_cancellation_takes_the_members_field_and_those_0_1_0_left(
        self, redis: RedisClient
    ) -> None:
        await write_as_0_1_0(redis, {"old-1": None})
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "owner-2", OWNER, limit=3) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "owner-1")
        erasures = RedisErasureStore(redis, Scripts(redis))
        await erasures.cancel(T, Cancellation("owner-2", "audit-owner-2", 1, REQUEST_JSON))
        assert await members(redis) == {"old-1": "b:"}
        assert await redis.zscore(KEYS.erasure_due(), f"i:{REF}") is None
        await erasures.cancel(T, Cancellation("old-1", "audit-old-1", 1, REQUEST_JSON))
        assert await redis.exists(KEYS.identity_accounts(REF)) == 0
        assert await members(redis) == {}
        assert await redis.zscore(KEYS.erasure_due(), f"i:{REF}") == 1

    async def test_an_identity_kept_in_use_by_its_erasure_loses_the_fields_0_1_0_left(
        self, redis: RedisClient
    ) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "owner-2", OWNER) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "owner-1")
        await redis.zadd(KEYS.erasure_due(), {f"i:{REF}": 1})
        erasures = RedisErasureStore(redis, Scripts(redis))
        item = ErasureItem(ErasureKind.IDENTITY, REF)
        assert await erasures.erase(T, item, REQUEST_JSON) is EraseOutcome.ERASED
        assert await members(redis) == {"owner-2": "b:tag-owner"}
        assert await redis.exists(KEYS.identity(REF)) == 1

    async def test_an_identity_erased_leaves_no_field(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "owner-1")
        await redis.zadd(KEYS.erasure_due(), {f"i:{REF}": 1})
        erasures = RedisErasureStore(redis, Scripts(redis))
        item = ErasureItem(ErasureKind.IDENTITY, REF)
        assert await erasures.erase(T, item, REQUEST_JSON) is EraseOutcome.ERASED
        assert await redis.exists(KEYS.identity(REF), KEYS.identity_accounts(REF)) == 0


class TestMovesCarryTheFields:
    """A key rotation or pepper move (``reseal_identity``) moves each member's field with it."""

    async def prepared(self, redis: RedisClient) -> RedisIdentityRecords:
        """ref-1 with members of every kind, and a field 0.1.0's cancellation left (gone-1's).

        old-1 and squat-1 were bound by 0.1.0 and filled by squat-2's binding; elsewhere-0 was
        bound by 0.1.0 after it and has no field yet.
        """
        await write_as_0_1_0(redis, {"old-1": None, "squat-1": "tag-squatter", "gone-1": "tag-squatter"})
        assert await bind(redis, "squat-2", SQUATTER, limit=3) == (Status.VERIFIED, "")
        await cancel_as_0_1_0(redis, "gone-1")
        await redis.sadd(KEYS.identity_accounts(REF), "elsewhere-0")
        await redis.hset(KEYS.account("elsewhere-0"), mapping={"identity": REF, "name_tag": "tag-owner"})
        return RedisIdentityRecords(redis, Scripts(redis))

    async def move(self, records: RedisIdentityRecords, to: str) -> None:
        held = await records.held(T, REF)
        assert held is not None
        assert held.accounts == ("elsewhere-0", "old-1", "squat-1", "squat-2")
        assert await records.move(T, IdentityMove(REF, to, "binding-2", "", 0, held)) == "OK"

    async def test_to_a_new_ref(self, redis: RedisClient) -> None:
        records = await self.prepared(redis)
        await self.move(records, "ref-2")
        assert await members(redis, "ref-2") == {
            "elsewhere-0": None,
            "old-1": "b:",
            "squat-1": "b:tag-squatter",
            "squat-2": "b:tag-squatter",
        }
        assert await redis.hget(KEYS.identity("ref-2"), "name_binding") == b"binding-2"
        assert await redis.exists(KEYS.identity(REF), KEYS.identity_accounts(REF)) == 0

    async def test_into_an_existing_ref(self, redis: RedisClient) -> None:
        records = await self.prepared(redis)
        stale = {"m:elsewhere-0": "b:stale"}
        await redis.hset(KEYS.identity("ref-2"), mapping={"name_binding": "binding-2"} | stale)
        await redis.sadd(KEYS.identity_accounts("ref-2"), "elsewhere-1")
        await self.move(records, "ref-2")
        assert await members(redis, "ref-2") == {
            "elsewhere-0": None,
            "elsewhere-1": None,
            "old-1": "b:",
            "squat-1": "b:tag-squatter",
            "squat-2": "b:tag-squatter",
        }
        assert await redis.hget(KEYS.account("old-1"), "identity") == b"ref-2"
