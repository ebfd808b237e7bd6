"""Kills a process answering a challenge at a boundary of its binding's steps, for the crash tests.

``python -m tests.bind_crash URL TENANT VERIFICATION_ID LIMIT NTH`` answers the verification with
the right code through ``RedisVerificationStore.submit`` (with ``start ACCOUNT`` after NTH: starts
it in ``bind`` mode for the account instead, ``RedisVerificationStore.commit``, as a method without
a challenge does), its steps run one by one (the test-only
``StepRunner(step_by_step=True)``, the path a Cluster always takes), and stops for good once its
NTH step has answered, after printing ``paused`` (``tests.cancel_crash.Stopping``).
``killed_after`` runs it and SIGKILLs it there: nothing after that boundary runs, and the intents
its steps wrote are what is left for the repairer.

``challenge`` starts the verification it answers (a code sent, its digest ``DIGEST``), ``bind``
binds an account at once (a start in ``bind`` mode), ``answer`` answers in this process, and
``assert_bound_once`` checks what a binding must leave once finished, however it was interrupted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from idverify.domain.subjects import SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.verification.port import ChallengeAnswer, NewVerification, Written
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.topology import parse_redis_url
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from tests.cancel_crash import Stopping, entries, pseudonym
from tests.sequencer_crash import paused_module
from tests.unit.store.test_identity_accounts import REF, verification

CLAIM_REFUSALS_WINDOW_MS = 86_400_000  # a name's claim refusals are counted by the day
DIGEST = "c0de" * 16
REQUEST_JSON = json.dumps(RequestInfo(principal="t/registrar/c1", request_id="answer-1").audit_fields())
STARTED = ("verification.started", "challenge.sent")  # the entries of a start that sent a code
# The entries of a right answer that binds; one that establishes a claim supersedes a squatter
# (its binding.superseded names the answer's verification) before the claim's entry.
PLAIN = ["challenge.passed", "account.bound", "verification.verified"]
ESTABLISHING = [
    "challenge.passed",
    "binding.superseded",
    "claim.established",
    "account.bound",
    "verification.verified",
]
# The entries of a right answer that establishes its claim with no squatter to supersede.
ESTABLISHED = ["challenge.passed", "claim.established", "account.bound", "verification.verified"]
# An organization's names, as the keyed hashes of their folded forms its verification carries.
ORG_NAMES = ("ab" * 16, "cd" * 16)
# The entries of a right answer whose place the binding limit refused.
REFUSED = ["challenge.passed", "binding.refused", "verification.rejected"]
# A person's two names of one document (tests.unit.store.test_identity_accounts).
OWNER = {"name_tag": "tag-owner", "name_binding": "binding-owner"}
SQUATTER = {"name_tag": "tag-squatter", "name_binding": "binding-squatter"}


def store_of(
    redis: RedisClient, scripts: Scripts | None = None, runner: StepRunner | None = None
) -> RedisVerificationStore:
    """A verification store over ``redis``; with ``runner`` (of ``scripts``), its steps run there."""
    scripts = scripts or Scripts(redis)
    return RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()), steps=runner)


async def _unmoved(moved: bool) -> VerificationRecord:
    raise AssertionError(f"no identity moves here ({moved=})")


async def bind(
    redis: RedisClient,
    tenant: str,
    account_ps: str,
    name: dict[str, str],
    *,
    limit: int = 3,
    store: RedisVerificationStore | None = None,
) -> str:
    """Binds ``account_ps`` to ``REF`` under ``name`` at once (a start in ``bind`` mode); its id."""
    vid = started_id(tenant, account_ps)
    record = verification(account_ps, name)
    start = NewVerification(
        tenant, f"req-{vid}", vid, account_ps, record, 60_000, limit, REQUEST_JSON, "bind"
    )
    done = await (store or store_of(redis)).commit(start, _unmoved)
    assert done.record.status is Status.VERIFIED, done.record
    return vid


def started_id(tenant: str, account_ps: str) -> str:
    """The id of the verification :func:`bind` starts for ``account_ps``."""
    return pseudonym(f"{tenant}-bound-{account_ps}")


async def challenge(
    redis: RedisClient,
    tenant: str,
    account_ps: str,
    name: dict[str, str],
    *,
    establishes: bool = False,
    org_names: str = "",
) -> str:
    """A verification of ``account_ps`` under ``name`` whose code was sent; its id.

    ``org_names``: an organization's names (comma-separated hashes) it indexes once bound.
    """
    record = replace(
        verification(account_ps, name, establishes=establishes),
        kind=SubjectKind.ORGANIZATION if org_names else SubjectKind.PERSON,
        org_names=org_names,
        status=Status.CHALLENGE_SENT,
        step_verifier="sms_otp",
        digest=DIGEST,
        challenge_ttl_ms=60_000,
        max_attempts=5,
    )
    vid = pseudonym(f"{tenant}-answer-{account_ps}")
    start = NewVerification(
        tenant, f"req-{vid}", vid, account_ps, record, 600_000, 3, REQUEST_JSON, "challenge"
    )
    done = await store_of(redis).commit(start, _unmoved)
    assert done.record.status is Status.CHALLENGE_SENT, done.record
    return vid


async def answer(store: RedisVerificationStore, tenant: str, vid: str, *, limit: int = 3) -> Written:
    """The right code for ``vid``, as SubmitChallenge sends it after reading the record."""

    async def point(moved: bool) -> VerificationRecord:
        record = await store.record(tenant, vid)
        assert not moved
        assert record is not None
        return record

    return await store.submit(ChallengeAnswer(tenant, vid, DIGEST, limit, 60_000, REQUEST_JSON), point)


def killed_after(url: str, tenant: str, vid: str, nth: int, *, limit: int = 3, start: str = "") -> None:
    """Answers ``vid`` in a process and SIGKILLs it once its ``nth`` step answered.

    With ``start`` (an account pseudonym), starts that account's verification in ``bind`` mode
    instead (:func:`bind`; ``vid`` is then unused).

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    mode = ["start", start] if start else []
    arguments = ["tests.bind_crash", url, tenant, vid, str(limit), str(nth), *mode]
    with paused_module(arguments, f"its step {nth}"):
        pass


async def assert_bound_once(
    redis: RedisClient,
    tenant: str,
    vid: str,
    account_ps: str,
    tag: str,
    *,
    types: list[str],
    started: Sequence[str] = STARTED,
) -> None:
    """What a right answer's binding leaves once finished: ``types`` its entries, in order.

    The verification VERIFIED with a TTL and without the in-flight mark, the account bound under
    ``tag``, its member bound (no ``p:`` member anywhere), no intent, and the entries of
    ``vid`` after its start's (``started``, the entries of a start that sent a code by default)
    exactly ``types``, naming the answer's request.
    """
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.verification(vid))).items()}
    assert record["status"] == "VERIFIED", record
    assert "binding" not in record, record
    assert await redis.pttl(keys.verification(vid)) > 0
    account = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.account(account_ps))).items()}
    assert account["identity"] == REF, account
    assert account.get("name_tag", "") == tag, account
    assert "binding" not in account, account
    assert await redis.hget(keys.identity(REF), f"m:{account_ps}") == f"b:{tag}".encode()
    assert await redis.sismember(keys.identity_accounts(REF), account_ps)
    await assert_nothing_pending(redis, tenant)
    mine = [e for e in await entries(redis, tenant) if e["verification_id"] == vid][len(started) :]
    assert [e["type"] for e in mine] == types, mine
    assert {(e["principal"], e["request_id"]) for e in mine} == {("t/registrar/c1", "answer-1")}


async def assert_superseded_once(redis: RedisClient, tenant: str, squatter: str, vid: str) -> None:
    """``squatter`` superseded by the claim ``vid`` established: unbound, no member, one entry."""
    keys = TenantKeys(tenant)
    assert not await redis.hexists(keys.account(squatter), "identity")
    assert not await redis.sismember(keys.identity_accounts(REF), squatter)
    assert not await redis.hexists(keys.identity(REF), f"m:{squatter}")
    superseded = [e for e in await entries(redis, tenant) if e["type"] == "binding.superseded"]
    assert [(e["account"], e["verification_id"]) for e in superseded] == [(f"audit-{squatter}", vid)]


async def assert_refused_once(redis: RedisClient, tenant: str, vid: str, tag: str) -> None:
    """What a right answer refused at the binding limit leaves once finished, however interrupted.

    The verification REJECTED with ``BINDING_LIMIT_REACHED``, the refusal counted once against
    ``tag``'s claim refusals (with the window's TTL), its marker there, nothing pending, and its
    entries after the start's (``REFUSED``) once each.
    """
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.verification(vid))).items()}
    assert (record["status"], record["reason"]) == ("REJECTED", "BINDING_LIMIT_REACHED"), record
    assert "binding" not in record, record
    counter = keys.rate_limit("claim_refusals", tag)
    assert await redis.get(counter) == b"1"
    assert 0 < await redis.pttl(counter) <= CLAIM_REFUSALS_WINDOW_MS
    assert 0 < await redis.pttl(keys.claim_refusal_counted(tag, vid)) <= CLAIM_REFUSALS_WINDOW_MS
    await assert_nothing_pending(redis, tenant)
    mine = [e for e in await entries(redis, tenant) if e["verification_id"] == vid][len(STARTED) :]
    assert [e["type"] for e in mine] == REFUSED, mine


async def names_indexed(redis: RedisClient, tenant: str, tag: str) -> dict[str, str]:
    """``tag``'s names in the index of verified organization names: hash -> its owners there.

    Checked against the organization's own list (``orgnames:<tag>``), which must list the same.
    """
    keys = TenantKeys(tenant)
    index = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.organization_names())).items()}
    own = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.organization_own_names(tag))).items()}
    held = {name: owners for name, owners in index.items() if tag in owners.split()}
    assert set(held) == set(own), (held, own)
    assert set(own.values()) <= {"v"}, own
    return held


async def assert_nothing_pending(redis: RedisClient, tenant: str) -> None:
    """No intent, no pending member left."""
    keys = TenantKeys(tenant)
    assert await redis.zcard(keys.intents()) == 0
    assert [k async for k in redis.scan_iter(match=keys.intent("*"))] == []
    fields = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(REF))).items()}
    assert not [v for k, v in fields.items() if k.startswith("m:") and v.startswith("p:")], fields


async def _run(url: str, tenant: str, vid: str, limit: int, nth: int, start: str) -> None:
    redis = connect(url)
    scripts = Scripts(redis, ack=parse_redis_url(url).ack)
    store = store_of(redis, scripts, Stopping(scripts, nth))
    if start:
        await bind(redis, tenant, start, OWNER, limit=limit, store=store)
    else:
        await answer(store, tenant, vid, limit=limit)
    print("finished", flush=True)  # noqa: T201 - not a pause: the caller says so


if __name__ == "__main__":
    url, tenant, vid, limit, nth, *mode = sys.argv[1:]
    asyncio.run(_run(url, tenant, vid, int(limit), int(nth), mode[1] if mode else ""))
