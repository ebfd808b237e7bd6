"""A running server's repair loop finishes a cancellation whose worker died between its steps.

A process runs CancelAccount's flow on the server's Redis with its steps one by one (the path a
Cluster takes, ``tests/cancel_crash.py``) and is killed -9 once the account's step answered: the
account is cancelled and audited, but its identity still counts it, and the intent is left. Due,
the intent is the server's to finish (``repair_forever``, started by ``server.py`` in every
worker): within a bounded wait the identity lets the account go, no intent is left, and the API
shows the finished cancellation (GetAccount, one ``account.cancelled`` in the audit query, the
identity, which binds one account, free to bind another). Not due, it is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from idverify import Client
from idverify.flows.bucket_repair import REPAIR_INTERVAL_SECONDS
from idverify.flows.context import RequestInfo
from idverify.privacy.keyring import load_keyring
from idverify.store.keys import TenantKeys
from idverify.testing import RedisProcess, ServerProcess
from idverify.v1 import account_pb2, audit_pb2, verification_pb2
from tests.cancel_crash import flow_killed_after
from tests.e2e.conftest import Identity, person, server_on_own_redis, verify

TENANT = "default"
# One account an identity: a place the cancelled account still held would refuse the next.
CONFIG = "[verification]\nbinding_limit = 1\n"
# The loop's round is 3 s; a few of them on a busy machine.
REPAIR_WAIT_SECONDS = 30.0
NOT_DUE_MS = 4_000_000_000_000  # a retry time far ahead: a live worker might still be finishing
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED


@pytest.fixture(scope="module")
def on_own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess, ServerProcess]]:
    with server_on_own_redis(tmp_path_factory.mktemp("cancel-repair"), config=CONFIG) as pair:
        yield pair


def _binds(server: ServerProcess, registrar: Client, identity: Identity, account: str) -> bool:
    """Whether a signup of ``account`` with ``identity`` ends bound (False: the limit refused it)."""
    done = verify(server, registrar, identity, account)
    if done.status == VERIFIED:
        return True
    assert done.reason_code == "BINDING_LIMIT_REACHED", done
    return False


def _repaired(direct: redis.Redis, keys: TenantKeys) -> None:
    deadline = time.monotonic() + REPAIR_WAIT_SECONDS
    while direct.zcard(keys.intents()):
        assert time.monotonic() < deadline, "the server's repair loop left the due intent"
        time.sleep(0.2)


def test_a_cancellation_cut_after_its_first_step_is_finished_by_the_running_server(
    on_own_redis: tuple[RedisProcess, ServerProcess],
) -> None:
    store, server = on_own_redis
    identity, account = person(), "cut-after-step-1"
    keyring_path = server.data_dir / "keyring.json"
    account_ps = load_keyring(path=keyring_path).pseudonym(TENANT, "account", account)
    keys = TenantKeys(TENANT)
    request = RequestInfo(principal=f"{TENANT}/registrar/crashed", request_id="cancel-cut")
    with (
        server.client() as registrar,
        server.client("platform") as platform,
        server.client("auditor") as auditor,
        redis.Redis(port=store.port) as direct,
    ):
        assert verify(server, registrar, identity, account).status == VERIFIED
        ref = (direct.hget(keys.account(account_ps), "identity") or b"").decode()
        assert ref
        flow_killed_after(store.url, keyring_path, TENANT, account, request)
        member = f"unbind:{account_ps}".encode()
        # Before its retry time the intent is a live worker's: the server leaves it, and the
        # identity still counts the account's place.
        assert direct.zadd(keys.intents(), {member: NOT_DUE_MS}, xx=True, ch=True) == 1
        pushed = time.monotonic()
        assert not _binds(server, registrar, identity, f"{account}-too-soon")
        time.sleep(max(0.0, pushed + REPAIR_INTERVAL_SECONDS + 1 - time.monotonic()))  # a round passed
        assert direct.zcard(keys.intents()) == 1
        assert direct.sismember(keys.identity_accounts(ref), account_ps)
        assert direct.hexists(keys.identity(ref), f"m:{account_ps}")

        assert direct.zadd(keys.intents(), {member: 0}, xx=True, ch=True) == 1  # due now
        _repaired(direct, keys)

        cancelled = direct.hgetall(keys.account(account_ps))
        assert b"identity" not in cancelled
        assert cancelled[b"cancelled_ms"]
        due_ms = int(cancelled[b"erase_due_ms"])
        queued = {m: int(s) for m, s in direct.zrange(keys.erasure_due(), 0, -1, withscores=True)}
        # The account queued by its step; the identity, whose last account it was, by the repair.
        assert queued == {f"a:{account_ps}".encode(): due_ms, f"i:{ref}".encode(): due_ms}
        assert not direct.sismember(keys.identity_accounts(ref), account_ps)
        assert not direct.hexists(keys.identity(ref), f"m:{account_ps}")
        assert not direct.exists(keys.intent(member.decode()))

        shown = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account)).account
        assert not shown.verified
        assert shown.erasure_due_at.ToMilliseconds() == due_ms
        query = audit_pb2.QueryEventsRequest(account_id=account, event_types=["account.cancelled"])
        entries = [answer.event for answer in auditor.audit.QueryEvents(query)]
        assert [(e.principal, e.request_id) for e in entries] == [(request.principal, request.request_id)]
        # The place is free: the identity binds another account at once.
        assert _binds(server, registrar, identity, f"{account}-next")
