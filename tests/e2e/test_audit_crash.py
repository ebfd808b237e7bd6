"""A crash mid-load leaves no change without its audit entry, and the tree still verifies.

The server (supervisor and workers) and then Redis are killed with SIGKILL while signups run,
with the tree's nodes in Redis and with the tree kept in tiles (``audit_tiles_dir``: a round may
be killed between its tile writes and the head's).
Every state change and its entry are one Lua script, so whatever Redis kept, it kept in pairs:
after both restart, every VERIFIED verification and every bound account in Redis has its
entries, the log has no gap, its tree verifies under the signing key, and a head signed before
the crash is consistent with the head after it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import redis

from idverify.audit import merkle
from idverify.audit.checkpoint import SignedHead, TreeHead, load_public_key, verify_signed_head
from idverify.audit.events import parse_entry
from idverify.store.keys import TenantKeys
from idverify.testing import RedisProcess, ServerProcess
from idverify.v1 import audit_pb2, verification_pb2

from .conftest import person, server_on_own_redis, start, submit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
VERIFIED = verification_pb2.VerificationStatus.Value("VERIFICATION_STATUS_VERIFIED")
KEYS = TenantKeys("default")


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (its workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def signed(message: audit_pb2.SignedTreeHead) -> SignedHead:
    stamp = message.timestamp
    head = TreeHead(
        message.origin, message.tree_size, message.root_hash, stamp.seconds * 1000 + stamp.nanos // 10**6
    )
    return SignedHead(head, message.key_id, message.signature)


@pytest.fixture(params=["nodes-in-redis", "tree-in-tiles"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RedisProcess, ServerProcess]]:
    """A server on its own Redis; the second keeps the tree in tiles (rounds killed between the two)."""
    config = f'audit_tiles_dir = "{tmp_path / "tiles"}"\n' if request.param == "tree-in-tiles" else ""
    with server_on_own_redis(tmp_path, config=config) as deployment:
        yield deployment


class TestCrashMidLoad:
    def test_every_committed_change_has_its_entry_after_kill_9(
        self, deployment: tuple[RedisProcess, ServerProcess]
    ) -> None:
        """SIGKILL of every server process and of Redis mid-signups: changes and entries stay paired."""
        store, server = deployment
        with server.client("auditor") as auditor:
            before = signed(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        acknowledged = signups_until_killed(store, server)
        assert len(acknowledged) > 10
        store.start()
        server.process = None
        server.start()
        leaves = paired_log(store.url, acknowledged)
        with server.client("auditor") as auditor:
            answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
            after = signed(answer.head)
            verify_signed_head(after, load_public_key(answer.public_key.encode()))
            # The tree over the entries Redis kept is the signed tree (or a prefix of it), and
            # the head signed before the crash is a prefix too.
            for size, root in (
                (len(leaves), merkle.root([merkle.leaf_hash(x) for x in leaves])),
                (
                    before.head.size,
                    before.head.root_hash,
                ),
            ):
                proof = auditor.audit.GetConsistencyProof(
                    audit_pb2.GetConsistencyProofRequest(first=size, second=after.head.size)
                )
                merkle.verify_consistency(
                    size, after.head.size, list(proof.hashes), root, after.head.root_hash
                )
        # With tiles, a round killed between its tile writes and the head's leaves tiles ahead of
        # the head: taken without a conflict, nothing overwritten.
        assert "nothing overwritten" not in server.log_text()


def signups_until_killed(store: RedisProcess, server: ServerProcess) -> list[str]:
    """Runs signups on eight threads, kills every server process and Redis, returns the acknowledged."""
    stop = threading.Event()
    acknowledged: list[str] = []

    def signups(worker: int) -> None:
        with server.client() as registrar:
            for n in range(10_000):
                if stop.is_set():
                    return
                try:
                    started = start(registrar, person(), f"crash-audit-{worker}-{n}")
                    code = server.sms_code(started.verification_id, timeout=2)
                    if submit(registrar, started.verification_id, code).status == VERIFIED:
                        acknowledged.append(started.verification_id)
                except (grpc.RpcError, LookupError):
                    time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(signups, w) for w in range(8)]
        time.sleep(4)
        assert server.process is not None
        for pid in [server.process.pid, *descendants(server.process.pid)]:
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        store.stop(hard=True)
        stop.set()
        for future in futures:
            future.result()
    return acknowledged


def paired_log(url: str, acknowledged: list[str]) -> list[bytes]:
    """Checks that every change Redis kept has its entry; returns the log's entries."""
    with redis.Redis.from_url(url) as db:
        size = int(db.hget(KEYS.audit_head(), "size") or 0)
        found = [db.hget(KEYS.audit_log(), str(i)) for i in range(size)]
        leaves = [leaf for leaf in found if leaf is not None]
        assert len(leaves) == size, "the log has a gap"
        entries = [parse_entry(leaf) for leaf in leaves]
        logged = {kind: set() for kind in ("verification.started", "verification.verified", "account.bound")}
        for entry in entries:
            if entry.type in logged:
                logged[entry.type].add(
                    entry.account if entry.type == "account.bound" else entry.verification_id
                )
        for key in db.scan_iter(match=KEYS.verification("*"), count=1000):
            verification_id = key.decode().rsplit(":", 1)[1]
            assert verification_id in logged["verification.started"]
            if db.hget(key, "status") == b"VERIFIED":
                assert verification_id in logged["verification.verified"]
        bound = [db.hget(key, "audit") for key in db.scan_iter(match=KEYS.account("*"), count=1000)]
        bound_accounts = [a.decode() for a in bound if a is not None]
    assert set(bound_accounts) <= logged["account.bound"]
    assert len(bound_accounts) >= len(acknowledged)
    assert set(acknowledged) <= logged["verification.verified"]
    return leaves
