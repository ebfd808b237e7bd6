"""The worker holding a tenant's integration lease killed -9: another integrates every entry, once.

Two workers on a Redis of their own; one holds the lease to integrate the default tenant's log
(its token names its pid). It is killed with SIGKILL, its lease left behind; signups go on. Within
a few seconds another worker holds the lease and its rounds alone (no head request asks for
any) bring the tree to the log's size: the stored tree is the RFC 6962 tree of the log's entries,
each once, a head signed after verifies, and the head signed before the kill is consistent with it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest
import redis

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.store.keys import TenantKeys
from idverify.testing import ServerProcess
from idverify.v1 import audit_pb2, verification_pb2

from .conftest import person, server_on_own_redis, verify
from .test_audit_crash import descendants, signed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
KEYS = TenantKeys("default")
VERIFIED = verification_pb2.VerificationStatus.Value("VERIFICATION_STATUS_VERIFIED")


def signups(server: ServerProcess, prefix: str, count: int) -> None:
    """``count`` verified signups, each retried on a fresh channel while a worker is gone."""
    for n in range(count):
        for _ in range(20):
            try:
                with server.client() as registrar:
                    assert verify(server, registrar, person(), f"{prefix}-{n}").status == VERIFIED
                break
            except grpc.RpcError:
                time.sleep(0.2)
        else:
            pytest.fail(f"signup {prefix}-{n} never went through")


def lease_holder(db: redis.Redis, timeout: float = 15) -> bytes:
    """The token holding the default tenant's lease, once one does."""
    deadline = time.monotonic() + timeout
    while (token := db.get(KEYS.audit_integration_lease())) is None:
        assert time.monotonic() < deadline, "no worker took the integration lease"
        time.sleep(0.05)
    return token


def test_the_leaseholder_killed_another_worker_integrates_every_entry_once(tmp_path: Path) -> None:
    """SIGKILL of the leaseholder: another takes the lease and its rounds integrate the whole log."""
    with (
        server_on_own_redis(tmp_path, config="workers = 2\n") as (store, server),
        redis.Redis.from_url(store.url) as db,
    ):
        signups(server, "lease-before", 5)
        with server.client("auditor") as auditor:
            before = signed(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        killed = lease_holder(db)
        pid = int(killed.split(b":")[0])
        assert server.process is not None
        assert pid in descendants(server.process.pid)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        signups(server, "lease-after", 5)
        size = int(db.hget(KEYS.audit_head(), "size") or 0)
        assert size > before.head.size
        # The background rounds alone: no head is asked for until the tree has caught up.
        while int(db.hget(KEYS.audit_tree_head(), "size") or 0) < size:
            assert time.monotonic() - killed_at < 60, "the log was not integrated after the kill"
            time.sleep(0.05)
        assert lease_holder(db) != killed
        leaves = [db.hget(KEYS.audit_log(), str(i)) for i in range(size)]
        assert None not in leaves
        root = merkle.root([merkle.leaf_hash(leaf) for leaf in leaves if leaf is not None])
        assert int(db.hget(KEYS.audit_tree_head(), "size") or 0) == size
        assert db.hget(KEYS.audit_tree_head(), "root") == root
        with server.client("auditor") as auditor:
            answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
            after = signed(answer.head)
            verify_signed_head(after, load_public_key(answer.public_key.encode()))
            for first, first_root in ((before.head.size, before.head.root_hash), (size, root)):
                proof = auditor.audit.GetConsistencyProof(
                    audit_pb2.GetConsistencyProofRequest(first=first, second=after.head.size)
                )
                merkle.verify_consistency(
                    first, after.head.size, list(proof.hashes), first_root, after.head.root_hash
                )
