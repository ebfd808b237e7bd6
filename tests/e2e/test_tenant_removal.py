"""A tenant leaves: ``idverify tenants remove`` beside a tenant that must not lose a byte."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from idverify.audit.tile_mirror import SIZE_FILE
from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, verification_pb2

from .conftest import embedded_redis, person, rich_error, verify
from .test_audit_tiles import tiled_size
from .test_audit_trimmed import FILLER, fill, trimmed_at_least

pytestmark = pytest.mark.e2e
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED
CONFIG = """
[rate_limits]
per_principal_per_minute = 100000
per_identity_per_hour = 100000
code_sends_per_phone_per_hour = 100000
"""
LEAVING, STAYING = "acme", "zeta"
PEOPLE = 10
COPIES = 300  # of each of the leaving tenant's account records: 3,010 accounts
# Servers rewrite these while they run, whatever any tenant does.
VOLATILE_GLOBALS = (b"iv1:{global}:keyring:", b"iv1:{global}:clock-floor")
# A tenant's integration lease: renewed by whichever worker integrates its log, ended by its TTL.
VOLATILE_TENANT_KEYS = b":audit:integrating"


def tenants(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``idverify tenants ...`` on the server's data directory, without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "idverify", "tenants", "--data-dir", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")},
    )


def ok(server: ServerProcess, *args: str) -> str:
    done = tenants(server, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def copy_records(store: redis.Redis, tenant: str, copies: int) -> None:
    """Copies each record of the tenant with a pseudonym in its key (accounts, identities, consents...).

    Each copy replaces the last 8 hex digits of the pseudonym: thousands of real records, fast.
    """
    originals = [
        key
        for key in store.scan_iter(match=f"iv1:{{t:{tenant}}}:*".encode(), count=1000)
        if b":audit:" not in key and len(key.rsplit(b":", 1)[1]) >= 16  # a pseudonym
    ]
    assert any(b":acct:" in key for key in originals)
    with store.pipeline(transaction=False) as pipe:
        for key in originals:
            value, ttl = store.dump(key), store.pttl(key)
            for n in range(copies):
                pipe.restore(key[:-8] + b"%08x" % n, max(ttl, 0), value, replace=True)
        pipe.execute()


Snapshot = tuple[bytes | None, int, Any]
"""A key's DUMP, its PTTL at the time, and its value as redis-py reads it (hashes and sets)."""


def snapshot(store: redis.Redis, pattern: bytes) -> dict[bytes, Snapshot]:
    """Every matching key, but those the servers rewrite whatever the tenants do."""
    found: dict[bytes, Snapshot] = {}
    for key in store.scan_iter(match=pattern, count=1000):
        if not key.startswith(VOLATILE_GLOBALS) and not key.endswith(VOLATILE_TENANT_KEYS):
            kind = store.type(key)
            value = store.hgetall(key) if kind == b"hash" else store.smembers(key) if kind == b"set" else None
            found[key] = (store.dump(key), store.pttl(key), value)
    return found


def unchanged(before: dict[bytes, Snapshot], after: dict[bytes, Snapshot], elapsed_ms: float) -> None:
    """Every key is byte for byte as it was, or expired by its own TTL meanwhile; none is new."""
    assert set(after) <= set(before), sorted(set(after) - set(before))[:5]
    for key, (value, ttl, _) in before.items():
        if key in after:
            assert after[key][0] == value, key
        else:
            assert 0 <= ttl < elapsed_ms, f"{key!r} was lost"


def registrar_is_refused(target: str, token: str) -> grpc.StatusCode | None:
    """The status of a read with the token (None when it is accepted)."""
    with Client(target, token) as client:
        try:
            client.verification.ListMethods(verification_pb2.ListMethodsRequest())
        except grpc.RpcError as error:
            return error.code()
    return None


def wait_integrated(store: redis.Redis, tenant: str) -> None:
    """Until the server's integrator has folded every entry of the tenant's log into its tree."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        size = store.hget(f"iv1:{{t:{tenant}}}:audit:head", "size")
        if size is not None and store.hget(f"iv1:{{t:{tenant}}}:audit:treehead", "size") == size:
            return
        time.sleep(0.1)
    raise AssertionError(f"the audit log of {tenant} was not integrated in time")


def check_export(export_dir: Path) -> None:
    """The tenant's export verifies offline with the key beside it, and ends with the removal."""
    log_file = export_dir / f"audit-{LEAVING}.jsonl"
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "idverify",
            "audit",
            "verify",
            str(log_file),
            "--public-key",
            str(export_dir / "audit-public-key.pem"),
            "--origin",
            f"idverify/{LEAVING}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout
    entries = [json.loads(line)["entry"] for line in log_file.read_text(encoding="utf-8").splitlines()[1:]]
    types = [entry["type"] for entry in entries]
    assert types[-1] == "tenant.removed"
    assert types.count("tenant.removal_scheduled") == 1
    scheduled_entry = entries[types.index("tenant.removal_scheduled")]
    assert scheduled_entry["principal"].startswith("tenants-remove/")
    assert scheduled_entry["attributes"]["clients_revoked"] == "1"
    assert any(e["type"] == "client.revoked" and e["reason"] == "TENANT_REMOVAL" for e in entries)
    assert "account.bound" in types


def everything_but_the_leaver(store: redis.Redis) -> dict[bytes, Snapshot]:
    """Every key of the other tenants, the phones and the deployment."""
    leaver = f"iv1:{{t:{LEAVING}}}:".encode()
    return {key: found for key, found in snapshot(store, b"iv1:*").items() if not key.startswith(leaver)}


def neighbours_untouched(store: redis.Redis, before: dict[bytes, Snapshot], elapsed_ms: float) -> None:
    """All is as before, byte for byte, but the global lists that named the leaver."""
    owners = b"iv1:{global}:client-tenant"
    was = {k: v for k, v in before[owners][2].items() if v != LEAVING.encode()}
    assert was != before[owners][2]
    assert store.hgetall(owners) == was
    assert STAYING.encode() in was.values()
    erasures = b"iv1:{global}:erasure:tenants"
    assert store.smembers(erasures) == before.get(erasures, (None, 0, set()))[2] - {LEAVING.encode()}
    after = everything_but_the_leaver(store)
    for listing in (owners, erasures):
        before.pop(listing, None)
        after.pop(listing, None)
    unchanged(before, after, elapsed_ms)


def test_a_tenant_with_thousands_of_accounts_leaves_and_its_neighbour_loses_nothing(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "server", config=CONFIG) as server:
        store = embedded_redis(server)
        leaving_token = server.token("registrar", LEAVING)
        with server.client("registrar", LEAVING) as leaving, server.client("registrar", STAYING) as staying:
            for n in range(PEOPLE):
                assert verify(server, leaving, person(), f"leaving-{n}").status == VERIFIED
                assert verify(server, staying, person(), f"staying-{n}").status == VERIFIED
        copy_records(store, LEAVING, COPIES)
        accounts = sum(1 for _ in store.scan_iter(match=f"iv1:{{t:{LEAVING}}}:acct:*".encode(), count=1000))
        assert accounts == PEOPLE * (COPIES + 1)
        wait_integrated(store, STAYING)
        before = everything_but_the_leaver(store)
        started = time.monotonic()

        # The first run revokes the tenant's tokens at once and schedules the erasure.
        scheduled = ok(server, "remove", LEAVING, "--grace", "0", "--yes")
        assert "1 client(s) revoked" in scheduled
        deadline = time.monotonic() + 15  # the servers' token cache lasts seconds
        while registrar_is_refused(server.target, leaving_token) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert registrar_is_refused(server.target, leaving_token) == grpc.StatusCode.UNAUTHENTICATED
        with (
            Client(server.target, server.token("operator")) as operator,
            pytest.raises(grpc.RpcError) as refused,
        ):
            operator.admin.CreateClient(admin_pb2.CreateClientRequest(tenant=LEAVING, role="admin"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rich_error(refused.value) == ("TENANT_REMOVED", "tenant")
        assert LEAVING in ok(server, "status")

        # Without a directory for the log nothing is erased; then a run stopped part-way.
        assert tenants(server, "remove", LEAVING, "--yes").returncode == 2
        export_dir = tmp_path / "export"
        stopped = ok(
            server,
            "remove",
            LEAVING,
            "--export-dir",
            str(export_dir),
            "--yes",
            "--limit",
            "5000",
            "--batch",
            "500",
            "--no-progress",
        )
        assert "stopped; run it again to resume" in stopped
        assert any(True for _ in store.scan_iter(match=f"iv1:{{t:{LEAVING}}}:acct:*".encode(), count=1000))
        finished = ok(server, "remove", LEAVING, "--no-progress")
        assert "removed" in finished

        left = set(store.scan_iter(match=f"iv1:{{t:{LEAVING}}}:*".encode(), count=1000))
        assert left
        assert all(key.startswith(f"iv1:{{t:{LEAVING}}}:audit:".encode()) for key in left), sorted(left)[:5]
        neighbours_untouched(store, before, (time.monotonic() - started) * 1000)
        check_export(tmp_path / "export")

        # Running it again changes nothing; the neighbour still works; the token stays dead.
        everything = {key: value for key, (value, _, _) in snapshot(store, b"iv1:*").items()}
        assert "nothing to do" in ok(server, "remove", LEAVING)
        assert {key: value for key, (value, _, _) in snapshot(store, b"iv1:*").items()} == everything
        assert "no tenant removals" in ok(server, "status")
        with server.client("platform", STAYING) as platform:
            account = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id="staying-0"))
            assert account.account.verified
        assert registrar_is_refused(server.target, leaving_token) == grpc.StatusCode.UNAUTHENTICATED


def test_the_grace_period_cancellation_and_refusals(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, config=CONFIG) as server:
        server.token("registrar", "brief")
        # No terminal to confirm on, and no --yes: nothing happens.
        unconfirmed = tenants(server, "remove", "brief")
        assert unconfirmed.returncode == 2
        assert "--yes" in unconfirmed.stderr
        # The operators' tenant is refused: no one would be left to administer the others.
        holds = tenants(server, "remove", "default", "--yes")
        assert holds.returncode == 1
        assert "HOLDS_OPERATORS" in holds.stderr
        unknown = tenants(server, "remove", "nobody", "--yes")
        assert unknown.returncode == 1
        assert "NOT_FOUND" in unknown.stderr

        assert "removal due" in ok(server, "remove", "brief", "--grace", "5", "--yes")
        early = tenants(server, "remove", "brief", "--export-dir", str(tmp_path / "out"), "--yes")
        assert early.returncode == 1
        assert "REMOVAL_NOT_DUE" in early.stderr
        assert not (tmp_path / "out").exists()
        assert "cancelled" in ok(server, "remove", "brief", "--cancel")
        again = tenants(server, "remove", "brief", "--cancel")
        assert again.returncode == 1
        assert "NO_REMOVAL" in again.stderr
        # Cancelled: the tenant takes new clients, whose tokens work, and its data is all there.
        with Client(server.target, server.token("operator")) as operator:
            created = operator.admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="brief", role="auditor")
            )
        with Client(server.target, created.token) as auditor:
            events = [found.event.type for found in auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest())]
        assert events[-3:] == ["tenant.removal_scheduled", "tenant.removal_cancelled", "client.created"]


def test_a_removal_writes_the_audit_tiles_too(tmp_path: Path) -> None:
    """Run while the server is stopped, the command's own integration writes the closing entries' tiles."""
    tiles = tmp_path / "tiles"
    with ServerProcess(tmp_path / "server", config=f'audit_tiles_dir = "{tiles}"\n{CONFIG}') as server:
        server.token("registrar", "brief")
        assert "removal due" in ok(server, "remove", "brief", "--grace", "0", "--yes")
        store = embedded_redis(server)
        wait_integrated(store, "brief")
        integrated = int(store.hget("iv1:{t:brief}:audit:treehead", "size") or 0)
        tiled_size(tiles, integrated, tenant="brief")
    config = str(server.directory / "idverify.toml")
    export_dir = tmp_path / "export"
    assert "removed" in ok(
        server, "--config", config, "remove", "brief", "--export-dir", str(export_dir), "--yes"
    )
    exported = (export_dir / "audit-brief.jsonl").read_text(encoding="utf-8").splitlines()[1:]
    assert len(exported) > integrated
    assert (tiles / "brief" / SIZE_FILE).read_text() == f"{len(exported)}\n"


def test_a_trimmed_log_is_exported_whole_and_its_tiles_stay(tmp_path: Path) -> None:
    """Older entries in the tiles alone: the removal's export has them all and verifies; the tiles stay."""
    tiles = tmp_path / "tiles"
    with ServerProcess(tmp_path / "server", config=f'audit_tiles_dir = "{tiles}"\n{CONFIG}') as server:
        with server.client("registrar", LEAVING) as leaving:  # its entries are trimmed below
            assert verify(server, leaving, person(), "trimmed-0").status == VERIFIED
        asyncio.run(fill(server, FILLER, tenant=LEAVING))
        trimmed = trimmed_at_least(server, FILLER - 4096, tenant=LEAVING)
        careless = tenants(server, "remove", LEAVING, "--grace", "0", "--yes")  # no audit_tiles_dir
        assert careless.returncode == 2
        assert f"audit logs of {LEAVING} keep their older entries in audit tiles alone" in careless.stderr
        config = str(server.directory / "idverify.toml")
        assert "removal due" in ok(server, "--config", config, "remove", LEAVING, "--grace", "0", "--yes")
        wait_integrated(embedded_redis(server), LEAVING)
    export_dir = tmp_path / "export"
    assert "removed" in ok(
        server, "--config", config, "remove", LEAVING, "--export-dir", str(export_dir), "--yes"
    )
    check_export(export_dir)
    exported = (export_dir / f"audit-{LEAVING}.jsonl").read_text(encoding="utf-8").splitlines()[1:]
    assert len(exported) > FILLER > trimmed
    # The log is kept after a removal, and so are the tiles that hold its older entries.
    assert int((tiles / LEAVING / SIZE_FILE).read_text()) >= trimmed
