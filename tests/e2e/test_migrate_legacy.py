"""``idverify migrate legacy`` as operators run it, on a real redis-server.

The store holds what older servers left, written as they wrote it: identities whose members 0.1.0
bound (in ``idacc``, no ``m:`` field) and account ids in the legacy ``events:acct`` map (builds of
main before the ids moved into the accounts), with fields of accounts erased since. The command is
killed with SIGKILL in each of its phases and run again: the run ends complete, each field written
once (its counts, kept with its checkpoint, are exactly the data's). A second run changes nothing
and says so; ``--verify`` tells a migrated tenant from one that is not, and counts a tenant whose
log was born walked as walked. Bad input and a server of an older release still reporting in are
refused in one line, with nothing written.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from idverify.store.connection import close_client, connect
from idverify.store.keys import GlobalKeys, TenantKeys
from idverify.testing import RedisProcess, free_port, redis_server_binary
from tests import bind_crash
from tests.bind_crash import OWNER
from tests.tenant_births import born_walked

from .test_backup import idverify
from .test_migrate import clean_env, dumped

pytestmark = pytest.mark.e2e

IDENTITIES = 20_000
MAPPED = 5_000  # accounts whose event id is in the legacy map
ERASED = 50  # map fields of accounts erased since


def write_legacy(url: str, tenant: str, identities: int, mapped: int, erased: int) -> None:
    """The tenant's identities, one 0.1.0 member each, ``mapped`` of their ids in the legacy map."""
    keys = TenantKeys(tenant)
    with redis.Redis.from_url(url) as client:
        pipe = client.pipeline(transaction=False)
        for n in range(identities):
            ref, account = f"ref-{n}", f"acct{n:028d}"
            pipe.hset(keys.identity(ref), mapping={"name_binding": f"binding-{n}", "pepper": "pepper-1"})
            pipe.sadd(keys.identity_accounts(ref), account)
            fields = {"identity": ref, "verified_ms": "1", "method": "sms", "audit": f"audit-{account}"}
            pipe.hset(keys.account(account), mapping=fields | ({"name_tag": f"tag-{n}"} if n % 2 else {}))
            if n < mapped:
                pipe.hset(keys.events_accounts(), f"audit-{account}", f"sealed-{n}")
            if len(pipe) >= 5000:
                pipe.execute()
        for n in range(erased):
            pipe.hset(keys.events_accounts(), f"audit-erased-{n}", "sealed")
        pipe.hset(keys.audit_head(), mapping={"size": "0", "last_ms": "0"})
        pipe.execute()


def command(store: RedisProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "idverify", "migrate", "legacy", "--redis-url", store.url, *args]


def migrate(store: RedisProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return idverify("migrate", "legacy", "--redis-url", store.url, *args)


def run_record(store: RedisProcess, tenant: str) -> dict[str, str]:
    with redis.Redis.from_url(store.url, decode_responses=True) as client:
        return dict(client.hgetall(TenantKeys(tenant).legacy_move()))


def killed_when(store: RedisProcess, reached: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """Runs the command and kills it with SIGKILL once its run record shows ``reached``; the record."""
    run = subprocess.Popen(command(store), env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while run.poll() is None:
        if reached(run_record(store, "acme")):
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    _, err = run.communicate(timeout=120)
    assert run.returncode == -signal.SIGKILL, f"the run ended before it was killed: {err!r}"
    return run_record(store, "acme")


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    directory = tmp_path_factory.mktemp("legacy-redis")
    with RedisProcess(directory, port=free_port(), binary=redis_server_binary(prefer_system=True)) as server:
        yield server


@pytest.mark.timeout(300)
def test_killed_in_each_phase_and_run_again_it_ends_complete_each_field_written_once(
    store: RedisProcess,
) -> None:
    write_legacy(store.url, "acme", IDENTITIES, MAPPED, ERASED)
    write_legacy(store.url, "beta", 10, 3, 0)
    unverified = migrate(store, "--verify", "--json")
    assert unverified.returncode == 1, unverified.stderr
    acme_before = json.loads(unverified.stdout)["tenants"]["acme"]
    assert acme_before["members_without_field"] == IDENTITIES
    assert acme_before["map_fields"] == MAPPED + ERASED
    assert "tenant acme: FAILED" in unverified.stderr

    # Killed amid the identity records, then amid the accounts: each kill keeps its pages' counts.
    members = killed_when(store, lambda r: r.get("phase") == "members" and int(r.get("records", "0")) >= 2000)
    assert members["phase"] == "members"
    assert 0 < int(members["fields_written"]) < IDENTITIES
    events = killed_when(store, lambda r: r.get("phase") == "event_ids" and int(r.get("ids_moved", "0")) > 0)
    assert int(events["fields_written"]) == IDENTITIES
    assert 0 < int(events["ids_moved"]) < MAPPED

    done = migrate(store, "--json")
    assert done.returncode == 0, done.stderr
    acme = json.loads(done.stdout)["tenants"]["acme"]
    # Over three runs, each field once: the counts are the data's, exactly.
    assert acme["resumed"]
    assert (acme["fields_written"], acme["ids_moved"], acme["ids_dropped"]) == (IDENTITIES, MAPPED, ERASED)
    keys = TenantKeys("acme")
    with redis.Redis.from_url(store.url) as client:
        assert not client.exists(keys.events_accounts())
        assert client.hget(keys.audit_head(), "legacy_moved") == b"1"
        assert client.hget(keys.identity("ref-1"), "m:" + f"acct{1:028d}") == b"b:tag-1"
        assert client.hget(keys.identity("ref-2"), "m:" + f"acct{2:028d}") == b"b:"
        assert client.hget(keys.account(f"acct{7:028d}"), "event_account") == b"sealed-7"

    verified = migrate(store, "--verify")
    assert verified.returncode == 0, verified.stderr
    assert f"tenant acme: OK: {IDENTITIES} identity records, {IDENTITIES} members" in verified.stderr

    before = dumped(store)
    again = migrate(store, "--tenant", "acme")
    assert again.returncode == 0, again.stderr
    assert "tenant acme: nothing to change" in again.stderr
    after = dumped(store)
    run_key = TenantKeys("acme").legacy_move().encode()
    assert {k: v for k, v in after.items() if k != run_key} == {
        k: v for k, v in before.items() if k != run_key
    }


def test_bad_input_and_an_older_server_are_refused_in_one_line_writing_nothing(
    store: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_legacy(store.url, "acme", 20, 5, 1)
    before = dumped(store)
    away = RedisProcess(tmp_path_factory.mktemp("away"), port=free_port())
    cases = {
        "not a name": (migrate(store, "--tenant", "no such/tenant"), "is not a tenant name"),
        "no log": (migrate(store, "--tenant", "nobody"), "nobody has no audit log"),
        "no log, verify": (migrate(store, "--verify", "--tenant", "nobody"), "nobody has no audit log"),
        "redis away": (idverify("migrate", "legacy", "--redis-url", away.url), ""),
        "a mistyped flag": (migrate(store, "--tenants", "acme"), "--tenants"),
    }
    # A 0.1.0 server's keyring report (no schema field) while it serves, and one of this release.
    with redis.Redis.from_url(store.url) as client:
        report = {"wrapping_current": "1", "wrapping": ["1"], "pepper_current": "1"}
        client.set(GlobalKeys.keyring_instance("old-worker"), json.dumps(report), px=60_000)
        client.set(GlobalKeys.keyring_instance("new-worker"), json.dumps(report | {"schema": 2}), px=60_000)
    with_reports = dumped(store)
    cases["an older server"] = (migrate(store), "old-worker (schema 1)")
    for case, (result, said) in cases.items():
        assert result.returncode in (1, 2), (case, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
        assert said in result.stderr, (case, result.stderr)
    assert "new-worker" not in cases["an older server"][0].stderr
    assert dumped(store) == with_reports
    assert {k: v for k, v in with_reports.items() if b"{global}" not in k} == before

    # Once the older server is gone (its report withdrawn or expired), the run goes ahead, and
    # servers started from now on create their new tenants' logs born walked.
    with redis.Redis.from_url(store.url) as client:
        client.delete(GlobalKeys.keyring_instance("old-worker"))
        assert not client.exists(GlobalKeys.LOGS_BORN_WALKED)
        ran = migrate(store)
        assert ran.returncode == 0, ran.stderr
        assert "tenant acme: 20 member fields written" in ran.stderr
        assert client.get(GlobalKeys.LOGS_BORN_WALKED) == b"1"


def test_a_tenant_born_walked_verifies_as_walked(store: RedisProcess) -> None:
    """A tenant whose log this release created with no older server reporting in: nothing to walk."""

    async def born() -> None:
        client = connect(store.url)
        try:
            await born_walked(client, "fresh")
            await bind_crash.bind(client, "fresh", "acct-fresh", OWNER)
        finally:
            await close_client(client)

    asyncio.run(born())
    verified = migrate(store, "--verify", "--json")
    assert verified.returncode == 0, verified.stderr
    fresh = json.loads(verified.stdout)["tenants"]["fresh"]
    assert (fresh["ok"], fresh["head_marked"], fresh["born_walked"], fresh["members"]) == (
        True,
        True,
        True,
        1,
    )
    assert "tenant fresh: OK: 1 identity records, 1 members" in verified.stderr
    assert "its log born walked" in verified.stderr
    ran = migrate(store, "--tenant", "fresh")
    assert ran.returncode == 0, ran.stderr
    assert "tenant fresh: nothing to change" in ran.stderr
