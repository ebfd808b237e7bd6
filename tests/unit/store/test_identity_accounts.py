"""An identity's accounts (``idacc``) as a tagged hash: limits from it alone, older sets converted.

Every binding limit and claim is decided from ``idacc:<ref>``'s values (member -> ``b:<claim
tag>``), never from the members' ``acct`` hashes (docs/ARCHITECTURE.md, "Identity claims in the
store"): an operator who deletes or edits a member's account, or anyone who could, frees no place
and dodges no supersession. A set of pseudonyms as older releases wrote it (the tags in the
accounts, none for an account 0.1.0 bound) becomes the hash in the first script that touches it,
and every decision is the one the set gave.
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


async def members(redis: RedisClient, ref: str = REF) -> dict[str, str]:
    """The identity's ``idacc`` hash (a set left there fails the test with WRONGTYPE)."""
    raw = await redis.hgetall(KEYS.identity_accounts(ref))
    return {as_text(k): as_text(v) for k, v in raw.items()}


async def write_as_older_releases(redis: RedisClient, accounts: dict[str, str | None]) -> None:
    """The identity and its accounts as 0.1.0 and 0.2.0 before the hash left them: a set.

    ``accounts``: pseudonym -> the claim tag its account carries (None: bound by 0.1.0, untagged,
    which counts under the identity's first name).
    """
    await redis.hset(
        KEYS.identity(REF), mapping={"name_binding": OWNER["name_binding"], "pepper": "pepper-1"}
    )
    for account_ps, tag in accounts.items():
        fields = {"identity": REF, "verified_ms": "1", "method": "sms", "audit": f"audit-{account_ps}"}
        await redis.hset(KEYS.account(account_ps), mapping=fields | ({"name_tag": tag} if tag else {}))
    await redis.sadd(KEYS.identity_accounts(REF), *accounts)


async def superseded(redis: RedisClient) -> list[str]:
    """The accounts named by ``binding.superseded`` entries, in the log's order."""
    log = await redis.hgetall(KEYS.audit_log())
    entries = [json.loads(log[seq]) for seq in sorted(log, key=int)]
    return [entry["account"] for entry in entries if entry["type"] == "binding.superseded"]


@pytest.fixture
def redis(own_client: RedisClient) -> RedisClient:
    return own_client


class TestTheLimitComesFromIdaccAlone:
    """The careless operator and the thief with write access: a member's account edited or gone."""

    async def test_a_deleted_member_account_frees_no_place(self, redis: RedisClient) -> None:
        assert await bind(redis, "owner-1", OWNER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-2", SQUATTER) == (Status.VERIFIED, "")
        await redis.delete(KEYS.account("squat-1"))
        assert await bind(redis, "squat-3", SQUATTER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        assert set(await members(redis)) == {"owner-1", "squat-1", "squat-2"}

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


class TestSetsOfOlderReleasesAreConverted:
    """A store upgraded in place: the next script that touches a set decides as the set did."""

    async def test_the_limit_counts_untagged_accounts_under_the_first_name(self, redis: RedisClient) -> None:
        await write_as_older_releases(
            redis, {"old-1": None, "owner-1": "tag-owner", "squat-1": "tag-squatter"}
        )
        assert await bind(redis, "owner-2", OWNER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")
        assert await members(redis) == {"old-1": "b:", "owner-1": "b:tag-owner", "squat-1": "b:tag-squatter"}
        assert await bind(redis, "squat-2", SQUATTER) == (Status.VERIFIED, "")
        assert await bind(redis, "squat-3", SQUATTER) == (Status.REJECTED, "BINDING_LIMIT_REACHED")

    async def test_an_untagged_account_is_not_the_first_name_for_another_name(
        self, redis: RedisClient
    ) -> None:
        await write_as_older_releases(redis, {"old-1": None, "old-2": None})
        assert await bind(redis, "squat-1", SQUATTER) == (Status.VERIFIED, "")
        assert await members(redis) == {"old-1": "b:", "old-2": "b:", "squat-1": "b:tag-squatter"}

    async def test_establishing_supersedes_and_tags_as_the_set_did(self, redis: RedisClient) -> None:
        await write_as_older_releases(redis, {"old-1": None, "squat-1": "tag-squatter"})
        assert await bind(redis, "owner-1", OWNER, establishes=True) == (Status.VERIFIED, "")
        assert await superseded(redis) == ["audit-squat-1"]
        assert await members(redis) == {"old-1": "b:tag-owner", "owner-1": "b:tag-owner"}
        assert await redis.hget(KEYS.account("old-1"), "name_tag") == b"tag-owner"
        assert await redis.hget(KEYS.account("squat-1"), "identity") is None
        assert await bind(redis, "squat-2", SQUATTER) == (Status.REJECTED, "NAME_MISMATCH")

    async def test_reverifying_an_untagged_account_writes_its_tag_in_both(self, redis: RedisClient) -> None:
        await write_as_older_releases(redis, {"old-1": None})
        assert await bind(redis, "old-1", OWNER, limit=1) == (Status.VERIFIED, "")
        assert await members(redis) == {"old-1": "b:tag-owner"}
        assert await redis.hget(KEYS.account("old-1"), "name_tag") == b"tag-owner"

    async def test_a_cancellation_converts_and_leaves_the_identity_when_it_was_the_last(
        self, redis: RedisClient
    ) -> None:
        await write_as_older_releases(redis, {"old-1": None, "squat-1": "tag-squatter"})
        erasures = RedisErasureStore(redis, Scripts(redis))
        await erasures.cancel(T, Cancellation("squat-1", "audit-squat-1", 1, REQUEST_JSON))
        assert await members(redis) == {"old-1": "b:"}
        assert await redis.zscore(KEYS.erasure_due(), f"i:{REF}") is None
        await erasures.cancel(T, Cancellation("old-1", "audit-old-1", 1, REQUEST_JSON))
        assert await redis.exists(KEYS.identity_accounts(REF)) == 0
        assert await redis.zscore(KEYS.erasure_due(), f"i:{REF}") == 1

    async def test_an_identity_erasure_converts_and_keeps_an_identity_in_use(
        self, redis: RedisClient
    ) -> None:
        await write_as_older_releases(redis, {"old-1": None})
        await redis.zadd(KEYS.erasure_due(), {f"i:{REF}": 1})
        erasures = RedisErasureStore(redis, Scripts(redis))
        item = ErasureItem(ErasureKind.IDENTITY, REF)
        assert await erasures.erase(T, item, REQUEST_JSON) is EraseOutcome.ERASED
        assert await members(redis) == {"old-1": "b:"}
        assert await redis.exists(KEYS.identity(REF)) == 1

    async def test_a_move_reads_the_set_and_carries_the_tags_to_the_new_ref(self, redis: RedisClient) -> None:
        await write_as_older_releases(redis, {"old-1": None, "squat-1": "tag-squatter"})
        await redis.sadd(KEYS.identity_accounts("ref-2"), "elsewhere-1")
        records = RedisIdentityRecords(redis, Scripts(redis))
        held = await records.held(T, REF)
        assert held is not None
        assert held.accounts == ("old-1", "squat-1")
        move = IdentityMove(REF, "ref-2", "binding-2", "", 0, held)
        assert await records.move(T, move) == "OK"
        assert await members(redis, "ref-2") == {
            "old-1": "b:",
            "squat-1": "b:tag-squatter",
            "elsewhere-1": "b:",
        }
        assert await redis.hget(KEYS.account("old-1"), "identity") == b"ref-2"
        held_again = await records.held(T, "ref-2")
        assert held_again is not None
        assert held_again.accounts == ("elsewhere-1", "old-1", "squat-1")
