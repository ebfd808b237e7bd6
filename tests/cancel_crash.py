"""Kills a process running a cancellation at a boundary of its step sequence, for the crash tests.

``python -m tests.cancel_crash URL TENANT CANCELLATION_JSON NTH`` cancels an account through
``RedisErasureStore`` with its steps run one by one (``StepRunner(step_by_step=True)``, the
test-only path that a Cluster always takes), and stops for good once its NTH step has answered,
after printing ``paused``. ``killed_after`` runs it and kills it with SIGKILL there: nothing after
that boundary runs, not even a ``finally``; the intent its first step wrote is what is left.
With ``erase`` after NTH (``killed_after(..., erase=True)``) it runs the due erasure of the
cancellation's account instead, by the cancellation's request, and stops alike.
With ``flow`` after NTH (``flow_killed_after``) it cancels through CancelAccount's flow
(``ErasureFlow.cancel``, the tenant noted first) an account id under a server's keyring, for the
tests of a real server.
The URL's ``wait_replicas`` holds each acknowledged step until that many replicas have it, as a
server configured so does.

``bind_accounts`` binds accounts to one identity as a signup does, ``LaterRepairs`` is the
repairer as it runs once the intents fell due, and ``assert_cancelled_once`` checks what any
crash followed by a repair must leave; the standalone and Cluster tests share all of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from idverify.config import ErasureSettings
from idverify.domain.subjects import SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.erasure import Cancellation, ErasureFlow, ErasureItem, ErasureKind
from idverify.flows.verification.port import NewVerification
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.privacy.keyring import load_keyring
from idverify.privacy.sealing import Sealer
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.erasures import RedisErasureStore
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.topology import parse_redis_url
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from tests.sequencer_crash import paused_module
from tests.unit.store.test_identity_accounts import verification

REF = "ref-cancelled"
TAG = "tag-org"
NAME_HASH = "ab" * 16  # an organization name's keyed hash in the index of verified names
DUE_MS = 4_000_000_000_000
REPAIR_LATER_MS = 120_000  # past any intent's retry time


def pseudonym(label: str) -> str:
    """A 32-hex-digit pseudonym, as the keyring makes them (the repairer logs only such keys)."""
    return hashlib.sha256(label.encode()).hexdigest()[:32]


def cancellation(account_ps: str, request_id: str, due_ms: int = DUE_MS) -> Cancellation:
    """The cancellation of ``account_ps`` by a registrar's request ``request_id``."""
    request = RequestInfo(principal="t/registrar/c1", request_id=request_id, trace_id="ab" * 16)
    return Cancellation(account_ps, f"audit-{account_ps}", due_ms, json.dumps(request.audit_fields()))


async def bind_accounts(
    redis: RedisClient, tenant: str, accounts: list[str], *, ref: str = REF, tag: str = TAG, attempt: str = ""
) -> None:
    """Binds each account to ``ref`` under ``tag`` (a start in ``bind`` mode).

    The organization's name is indexed, and the first account has a live verification its
    cancellation must end. ``attempt`` tells the verifications and request ids of a binding of
    accounts bound before (and since erased) from those of their first.
    """
    scripts = Scripts(redis)
    store = RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()))

    async def unmoved(moved: bool) -> VerificationRecord:
        raise AssertionError(f"no identity moves here ({moved=})")

    for account_ps in accounts:
        name = {"name_tag": tag, "name_binding": "binding-org"}
        record = replace(verification(account_ps, name), identity=ref, kind=SubjectKind.ORGANIZATION)
        request = json.dumps(RequestInfo(principal="t/registrar/c1").audit_fields())
        start = NewVerification(
            tenant,
            f"req-{attempt}{account_ps}",
            f"vf-{attempt}{account_ps}",
            account_ps,
            record,
            60_000,
            5,
            request,
            "bind",
        )
        done = await store.commit(start, unmoved)
        assert done.record.status is Status.VERIFIED, done.record
    keys = TenantKeys(tenant)
    await redis.hset(keys.organization_names(), NAME_HASH, tag)
    await redis.hset(keys.organization_own_names(tag), NAME_HASH, "v")
    live = f"vf-live-{attempt}{accounts[0]}"
    await redis.hset(
        keys.verification(live),
        mapping={
            "id": live,
            "status": "CHALLENGE_SENT",
            "acct": accounts[0],
            "acct_audit": f"audit-{accounts[0]}",
            "method": "sms",
        },
    )
    await redis.zadd(keys.account_verifications(accounts[0]), {live: DUE_MS})


class LaterRepairs(RedisIntentRepairs):
    """The repairer as it runs once every intent fell due (its clock ``REPAIR_LATER_MS`` ahead)."""

    async def now_ms(self) -> int:
        return await super().now_ms() + REPAIR_LATER_MS


async def entries(redis: RedisClient, tenant: str) -> list[dict[str, Any]]:
    """The tenant's audit log, in order."""
    raw = await redis.hgetall(TenantKeys(tenant).audit_log())
    return [json.loads(raw[str(i).encode()]) for i in range(len(raw))]


async def assert_cancelled_once(
    redis: RedisClient, tenant: str, cancelled: Cancellation, others: list[str]
) -> None:
    """What a cancellation of ``cancelled`` leaves, ``others`` still bound, once it is finished.

    The account unbound and queued, the identity without it (set and ``m:`` field), queued with
    its names dropped when it was the last, kept with them otherwise; one ``account.cancelled``
    entry naming the original request and one ``verification.rejected`` of its live
    verification; no intent left.
    """
    keys = TenantKeys(tenant)
    account_ps = cancelled.account_pseudonym
    account = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.account(account_ps))).items()}
    assert "identity" not in account, account
    assert "name_tag" not in account, account
    assert account["cancelled_ms"]
    assert account["erase_due_ms"] == str(DUE_MS)
    queue = {as_text(m): int(s) for m, s in await redis.zrange(keys.erasure_due(), 0, -1, withscores=True)}
    assert queue.pop(f"a:{account_ps}") == DUE_MS
    members = {as_text(m) for m in await redis.smembers(keys.identity_accounts(REF))}
    assert members == set(others)
    record = {as_text(k) for k in await redis.hkeys(keys.identity(REF))}
    assert {k for k in record if k.startswith("m:")} == {f"m:{other}" for other in others}
    names = await redis.hgetall(keys.organization_own_names(TAG))
    if others:
        assert queue == {}
        assert names
        assert await redis.hget(keys.organization_names(), NAME_HASH) == TAG.encode()
    else:
        assert queue == {f"i:{REF}": DUE_MS}
        assert not names
        assert not await redis.hexists(keys.organization_names(), NAME_HASH)
    log = await entries(redis, tenant)
    request = json.loads(cancelled.request_json)
    cancels = [e for e in log if e["type"] == "account.cancelled"]
    assert len(cancels) == 1, cancels
    assert cancels[0]["account"] == cancelled.audit_pseudonym
    assert (cancels[0]["principal"], cancels[0]["request_id"]) == (
        request["principal"],
        request["request_id"],
    )
    rejected = [e for e in log if e["type"] == "verification.rejected"]
    assert [(e["verification_id"], e["reason"]) for e in rejected] == [
        (f"vf-live-{account_ps}", "ACCOUNT_CANCELLED")
    ]
    assert await redis.zcard(keys.intents()) == 0
    assert not await redis.exists(keys.intent(f"unbind:{account_ps}"))


class Watching(StepRunner):
    """A runner that records each boundary it crosses (none, when its steps run as one EVAL)."""

    def __init__(self, scripts: Scripts) -> None:
        super().__init__(scripts)
        self.seen: list[int] = []

    async def _reached(self, sequence: str, done: int) -> None:
        del sequence
        self.seen.append(done)


class Stopping(StepRunner):
    """Step by step, but the process stops dead once its ``nth`` step answered."""

    def __init__(self, scripts: Scripts, nth: int) -> None:
        super().__init__(scripts, step_by_step=True)
        self._nth = nth

    async def _reached(self, sequence: str, done: int) -> None:
        del sequence
        if done == self._nth:
            print("paused", flush=True)  # noqa: T201 - the line the killing test waits for
            # Blocks the loop: nothing else of this process runs again.
            time.sleep(3600)  # noqa: ASYNC251


def killed_after(url: str, tenant: str, cancellation: Cancellation, nth: int, *, erase: bool = False) -> None:
    """Runs a cancellation in a process and SIGKILLs it once its ``nth`` step answered.

    With ``erase``, the due erasure of the cancellation's account instead.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    spec = json.dumps(
        {
            "account_pseudonym": cancellation.account_pseudonym,
            "audit_pseudonym": cancellation.audit_pseudonym,
            "due_ms": cancellation.due_ms,
            "request_json": cancellation.request_json,
        }
    )
    arguments = ["tests.cancel_crash", url, tenant, spec, str(nth), *(["erase"] if erase else [])]
    with paused_module(arguments, f"its step {nth} answered"):
        pass


def flow_killed_after(url: str, keyring: Path, tenant: str, account_id: str, request: RequestInfo) -> None:
    """CancelAccount's flow on ``account_id`` in a process, SIGKILLed once its first step answered.

    The account's step is done (cancelled, unbound, audited, the intent written); the identity's
    is not: what a server's repairer finds after a worker died between them.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    spec = json.dumps({"keyring": str(keyring), "account_id": account_id, "request": asdict(request)})
    with paused_module(["tests.cancel_crash", url, tenant, spec, "1", "flow"], "its step 1 answered"):
        pass


def _scripts(url: str) -> tuple[RedisClient, Scripts]:
    """A client of ``url`` and its scripts, acknowledged steps waiting for the URL's replicas."""
    redis = connect(url)
    return redis, Scripts(redis, ack=parse_redis_url(url).ack)


async def _run(url: str, tenant: str, spec: str, nth: int, erase: bool) -> None:
    redis, scripts = _scripts(url)
    store = RedisErasureStore(redis, scripts, steps=Stopping(scripts, nth))
    cancelled = Cancellation(**json.loads(spec))
    if erase:
        item = ErasureItem(ErasureKind.ACCOUNT, cancelled.account_pseudonym)
        await store.erase(tenant, item, cancelled.request_json)
    else:
        await store.cancel(tenant, cancelled)
    print("finished", flush=True)  # noqa: T201 - not a pause: the caller says so


async def _run_flow(url: str, tenant: str, spec: str, nth: int) -> None:
    redis, scripts = _scripts(url)
    asked = json.loads(spec)
    keyring = load_keyring(path=Path(asked["keyring"]))
    store = RedisErasureStore(redis, scripts, steps=Stopping(scripts, nth))
    flow = ErasureFlow(store, ErasureSettings(), keyring, Sealer(keyring))
    await flow.cancel(tenant, asked["account_id"], RequestInfo(**asked["request"]))
    print("finished", flush=True)  # noqa: T201 - not a pause: the caller says so


if __name__ == "__main__":
    url, tenant, spec, nth, *mode = sys.argv[1:]
    if mode == ["flow"]:
        asyncio.run(_run_flow(url, tenant, spec, int(nth)))
    else:
        asyncio.run(_run(url, tenant, spec, int(nth), mode == ["erase"]))
