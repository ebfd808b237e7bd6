"""A Sentinel failover during a load of signups: nothing acknowledged is lost.

Calls fail fast with UNAVAILABLE during the switch and succeed after it, and no verification
that was answered VERIFIED is missing afterwards.

The setup is the smallest that can fail over: a primary, one replica, one sentinel. The server
waits for one replica to hold each deciding step (``wait_replicas`` defaults to 1 for sentinel
URLs), so an answer given by a primary that is being demoted is never one the caller saw.

The crash runs in both audit layouts. With the tree in tiles (``audit_tiles_dir``) the lost
writes may include an integration round whose tiles are written: afterwards every entry is
proven in a signed head, or the tenant stops with ``AUDIT_TILES_STOPPED`` until the operator's
``idverify audit set-aside-tiles`` and a restart (``test_sentinel_tiles.py`` makes that loss
certain; here it is whatever the kill takes).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from idverify.audit import merkle
from idverify.audit.checkpoint import load_public_key, verify_signed_head
from idverify.store.local_topologies import LocalSentinel, wait_until
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, verification_pb2
from tests.e2e.conftest import person, rich_error, start, submit
from tests.e2e.test_audit import signed_head
from tests.e2e.test_binding import LOOSE_LIMITS

from .conftest import LAYOUTS, set_aside_tiles

# Serial: calls must fail fast (seconds) during the switch, under a load of signups.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED
CHALLENGE_SENT = verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT
FAIL_FAST_SECONDS = 3.5
# A retried start whose first attempt's reservation outlived an outage (its clean-up could not
# reach Redis) waits up to 3 s for that attempt before answering UNAVAILABLE (flows/verification).
DUPLICATE_WAIT_SECONDS = 3.0
_CODE = re.compile(r"console SMS sender: code (\d+) for \S+ \(verification ([0-9a-f]+)\)")


class CodeFollower:
    """Reads the server log incrementally for the codes the console sender wrote."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._codes: dict[str, str] = {}
        self._lock = threading.Lock()

    def code(self, verification_id: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                with self._path.open("rb") as log:
                    log.seek(self._offset)
                    chunk = log.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                self._offset += len(complete)
                for match in _CODE.finditer(complete.decode(errors="replace")):
                    self._codes[match.group(2)] = match.group(1)
                if verification_id in self._codes:
                    return self._codes[verification_id]
            time.sleep(0.02)
        msg = f"no code for {verification_id}"
        raise LookupError(msg)


@dataclass
class Load:
    """Signups from a few threads until stopped, with every outcome recorded."""

    server: ServerProcess
    codes: CodeFollower
    acknowledged: list[tuple[str, float]] = field(default_factory=list)
    failures: list[tuple[str, float]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _call(self, what: str, call: object) -> object:
        """Runs a call, retrying UNAVAILABLE (recording how long each failure took)."""
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                return call()  # type: ignore[operator]
            except grpc.RpcError as error:
                took = time.monotonic() - began
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                if "in progress" in (error.details() or ""):
                    took -= DUPLICATE_WAIT_SECONDS
                with self._lock:
                    self.failures.append((what, took))
                time.sleep(0.1)
        return None

    def _signup(self, registrar: object) -> None:
        n = self._next()
        account, identity, request_id = f"failover-{n}", person(), f"failover-req-{n}"
        started = self._call(
            "start",
            lambda: start(registrar, identity, account, request_id=request_id),  # type: ignore[arg-type]
        )
        if started is None:
            return
        assert isinstance(started, verification_pb2.Verification)
        if started.status != CHALLENGE_SENT:
            self.unexpected.append(f"start {account}: {started.status} {started.reason_code}")
            return
        code = self.codes.code(started.verification_id)
        try:
            answer = self._call(
                "submit",
                lambda: submit(registrar, started.verification_id, code),  # type: ignore[arg-type]
            )
        except grpc.RpcError as error:
            # An earlier attempt that failed as UNAVAILABLE may have decided it after all: it was
            # never answered VERIFIED, so it is not counted as acknowledged either way.
            if error.code() is not grpc.StatusCode.FAILED_PRECONDITION:
                self.unexpected.append(f"submit {account}: {error.code()} {error.details()}")
            return
        if answer is not None:
            assert isinstance(answer, verification_pb2.Verification)
            if answer.status == VERIFIED:
                with self._lock:
                    self.acknowledged.append((account, time.monotonic()))
            else:
                self.unexpected.append(f"submit {account}: {answer.status} {answer.reason_code}")

    def run(self) -> None:
        try:
            with self.server.client() as registrar:
                while not self.stop.is_set():
                    self._signup(registrar)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.unexpected.append(f"{type(exc).__name__}: {exc}")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    """A fresh primary + replica + sentinel for each failover (they change roles)."""
    with LocalSentinel(tmp_path / "sentinel", replicas=1, sentinels=1) as setup:
        yield setup


def run_failover(sentinel: LocalSentinel, tmp_path: Path, switch: object, config: str = "") -> None:
    """Runs the load, switches primaries with ``switch()``, and checks the outcome."""
    config += LOOSE_LIMITS
    with ServerProcess(tmp_path / "server", config=config, redis_url=sentinel.url) as server:
        load = Load(server, CodeFollower(server.log_path))
        threads = [threading.Thread(target=load.run, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(load.acknowledged) >= 10, "signups before the failover", 30)
            switched_at = time.monotonic()
            switch()  # type: ignore[operator]
            # The switch is over when the sentinel sees a writable primary with a synced replica.
            wait_until(sentinel.settled, "the new primary and its replica", 60)
            settled_at = time.monotonic()
            wait_until(
                lambda: sum(at > settled_at for _, at in load.acknowledged) >= 10, "signups after it", 30
            )
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert load.unexpected == []
        assert load.failures, "the switch went unnoticed: no call failed"
        slow = [(what, took) for what, took in load.failures if took > FAIL_FAST_SECONDS]
        assert slow == []
        assert any(at < switched_at for _, at in load.acknowledged)
        with server.client("platform") as platform:
            for account, _ in load.acknowledged:
                answer = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account))
                assert answer.account.verified, f"{account} was answered VERIFIED and then lost"
        if "audit_tiles_dir" in config:
            assert_every_entry_proven(server, sentinel)


def head_or_refusal(server: ServerProcess) -> audit_pb2.GetTreeHeadResponse | str:
    """The auditor's signed head, or the reason code it was refused with."""
    with server.client("auditor") as auditor:
        try:
            return auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
        except grpc.RpcError as error:
            return rich_error(error)[0]


def assert_every_entry_proven(server: ServerProcess, sentinel: LocalSentinel) -> None:
    """Every entry is in a signed head, proven from the tiles, after set-aside-tiles if one stopped."""
    answer = head_or_refusal(server)
    if isinstance(answer, str):
        # The kill took a round whose tiles were written, and a later round met one of them.
        assert answer == "AUDIT_TILES_STOPPED"
        server.stop()
        moved = set_aside_tiles("default", server.directory / "idverify.toml", sentinel.url, server.data_dir)
        assert "were moved to" in moved
        server.start()
        answer = head_or_refusal(server)
        assert not isinstance(answer, str), answer
    head = signed_head(answer.head)
    verify_signed_head(head, load_public_key(answer.public_key.encode()))
    size = head.head.size
    with server.client("auditor") as auditor:
        leaves = [
            merkle.leaf_hash(auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index)).leaf)
            for index in range(size)
        ]
        assert merkle.root(leaves) == head.head.root_hash
        for index in range(size):
            proof = auditor.audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)
            )
            merkle.verify_inclusion(leaves[index], index, size, list(proof.hashes), head.head.root_hash)


class TestSentinelFailover:
    def test_a_requested_failover_loses_no_acknowledged_verification(
        self, sentinel: LocalSentinel, tmp_path: Path
    ) -> None:
        """SENTINEL FAILOVER while signups run: the old primary keeps taking writes for a while."""
        run_failover(sentinel, tmp_path, sentinel.failover)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_a_crashed_primary_loses_no_acknowledged_verification(
        self, sentinel: LocalSentinel, tmp_path: Path, layout: str
    ) -> None:
        """A kill -9 of the primary, promotion of the replica, and the old one back as a replica."""
        config = f'audit_tiles_dir = "{tmp_path / "tiles"}"\n' if layout == "tiles" else ""

        def crash_and_return() -> None:
            old = sentinel.primary_port()
            sentinel.server_on(old).stop(hard=True)
            sentinel.wait_promoted(old)
            # As an orchestrator would: the crashed server comes back and Sentinel demotes it.
            sentinel.server_on(old).start()

        run_failover(sentinel, tmp_path, crash_and_return, config)
