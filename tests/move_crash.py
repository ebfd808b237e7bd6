"""Kills a process moving an identity at a boundary of its re-indexing's steps, for the crash tests.

``python -m tests.move_crash URL TENANT MOVE_JSON NTH`` moves an identity record (``old`` to
``new``, with ``forward_ms``) through ``RedisIdentityRecords`` with its steps run one by one
(``StepRunner(step_by_step=True)``, the test-only path that a Cluster always takes), and stops for
good once its NTH step has answered, after printing ``paused``. ``moved_killed_after`` runs it and
kills it with SIGKILL there: nothing after that boundary runs; the intent its first step wrote is
what is left.

``bound_identity`` binds accounts to one identity as signups do, with its erasure queued;
``binding_reply`` tries one more binding of it as a start in ``bind`` mode would; and
``assert_moved_once`` checks what any move, crashed and repaired or not, must leave. The tests of
``tests/unit/store/test_identity_move_steps.py`` share all of it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import replace
from typing import Any

from idverify.domain.subjects import SubjectKind
from idverify.flows.context import RequestInfo
from idverify.flows.identity_mover import IdentityMove
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text, connect
from idverify.store.identity_move_steps import intent_member
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.verification_fields import fields_of
from tests.cancel_crash import REF, TAG, Stopping, bind_accounts
from tests.sequencer_crash import paused_module
from tests.unit.store.test_identity_accounts import verification

OLD = REF
NEW = "ref-resealed"
NEW_BINDING = "binding-resealed"
DUE_MS = 4_000_000_000_000
# The identity's binding limit in these tests: as many places as it has members.
MEMBERS = 3


async def bound_identity(
    redis: RedisClient, tenant: str, accounts: list[str], *, due_ms: int = DUE_MS
) -> None:
    """Binds ``accounts`` to ``OLD`` under ``TAG`` (``tests.cancel_crash``) and queues its erasure."""
    await bind_accounts(redis, tenant, accounts)
    await redis.zadd(TenantKeys(tenant).erasure_due(), {f"i:{OLD}": due_ms})


async def move(redis: RedisClient, tenant: str, runner: StepRunner, *, forward_ms: int = 0) -> str:
    """Moves ``OLD`` to ``NEW`` as read just before, on ``runner``; the first step's reply."""
    records = RedisIdentityRecords(redis, Scripts(redis), steps=runner)
    held = await records.held(tenant, OLD)
    assert held is not None
    return await records.move(tenant, IdentityMove(OLD, NEW, NEW_BINDING, "", forward_ms, held))


async def binding_reply(redis: RedisClient, tenant: str, account_ps: str, ref: str, limit: int) -> list[Any]:
    """One start in ``bind`` mode of ``account_ps`` to ``ref`` (one script, no retry): its reply.

    The verification saw the identity's name binding, as a start that found the record does, so a
    record gone from ``ref`` answers MOVED.
    """
    keys = TenantKeys(tenant)
    name = {"name_tag": TAG, "name_binding": "binding-org", "name_binding_seen": "binding-org"}
    record = replace(verification(account_ps, name), identity=ref, kind=SubjectKind.ORGANIZATION)
    verification_id = f"vf-{account_ps}-{ref}"
    reply: list[Any] = await Scripts(redis).run(
        "start",
        [
            keys.request(f"req-{verification_id}"),
            keys.verification(verification_id),
            keys.audit_log(),
            keys.account(account_ps),
            keys.request_released(verification_id),
            keys.identity(ref),
            keys.identity_accounts(ref),
        ],
        [
            verification_id,
            60_000,
            json.dumps(fields_of(record)),
            limit,
            json.dumps(RequestInfo(principal="t/registrar/c1").audit_fields()),
            "bind",
        ],
    )
    return reply


def status_of(reply: list[Any]) -> tuple[str, str]:
    """A start's reply as (its word, the verification's reason when it answered a record)."""
    if as_text(reply[0]) != "OK":
        return as_text(reply[0]), ""
    fields = {as_text(reply[1][i]): as_text(reply[1][i + 1]) for i in range(0, len(reply[1]), 2)}
    return fields["status"], fields.get("reason", "")


async def assert_moved_once(
    redis: RedisClient, tenant: str, accounts: list[str], *, forward_ms: int = 0, due_ms: int = DUE_MS
) -> None:
    """What a move of ``OLD`` with ``accounts`` to ``NEW`` leaves, once finished.

    Every member under ``NEW`` once, with its tag; every account pointing there; the erasure
    moved; no intent, no ``moving_to`` or ``incoming`` mark; ``OLD`` gone, or a forwarding record;
    and the binding limit counted on the whole set: one more account is refused.
    """
    keys = TenantKeys(tenant)
    record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(NEW))).items()}
    assert {k: v for k, v in record.items() if k.startswith("m:")} == {f"m:{a}": f"b:{TAG}" for a in accounts}
    assert record["name_binding"] == NEW_BINDING
    assert "incoming" not in record, record
    assert "moving_to" not in record, record
    assert sorted(as_text(m) for m in await redis.smembers(keys.identity_accounts(NEW))) == sorted(accounts)
    for account_ps in accounts:
        assert await redis.hget(keys.account(account_ps), "identity") == NEW.encode()
    assert await redis.zscore(keys.erasure_due(), f"i:{NEW}") == due_ms
    assert await redis.zscore(keys.erasure_due(), f"i:{OLD}") is None
    assert await redis.exists(keys.identity_accounts(OLD)) == 0
    old = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.identity(OLD))).items()}
    assert old == ({"moved_to": NEW, "binding_was": "binding-org"} if forward_ms else {}), old
    assert await redis.zcard(keys.intents()) == 0
    assert not await redis.exists(keys.intent(intent_member(OLD)))
    one_more = f"one-more-{uuid.uuid4().hex}"
    assert status_of(await binding_reply(redis, tenant, one_more, NEW, len(accounts))) == (
        "REJECTED",
        "BINDING_LIMIT_REACHED",
    )


def moved_killed_after(url: str, tenant: str, nth: int, *, forward_ms: int = 0) -> None:
    """Moves ``OLD`` to ``NEW`` in a process and SIGKILLs it once its ``nth`` step answered.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    arguments = ["tests.move_crash", url, tenant, json.dumps({"forward_ms": forward_ms}), str(nth)]
    with paused_module(arguments, f"its step {nth} answered"):
        pass


async def _run(url: str, tenant: str, spec: str, nth: int) -> None:
    redis = connect(url)
    runner = Stopping(Scripts(redis), nth)
    await move(redis, tenant, runner, forward_ms=int(json.loads(spec)["forward_ms"]))
    print("finished", flush=True)  # noqa: T201 - not a pause: the caller says so


if __name__ == "__main__":
    url, tenant, spec, nth = sys.argv[1:]
    asyncio.run(_run(url, tenant, spec, int(nth)))
