"""A repeated request id is answered with its verification only once the replicas hold it.

A start that Redis ran but whose writes did not reach a replica in time answers UNAVAILABLE (a
failover could take them back). Its caller retries with the same request id: the verification
the primary holds must not be handed out then either, or a failover loses a challenge the caller
was told about (the Sentinel failover test saw submits answered NOT_FOUND).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from idverify.store.embedded import RedisProcess, redis_server_binary
from idverify.testing import ServerProcess, free_port
from idverify.v1 import verification_pb2

from .conftest import person, rich_error, start

pytestmark = pytest.mark.e2e


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    binary = redis_server_binary(prefer_system=True)
    primary = RedisProcess(tmp_path / "primary", port=free_port(), binary=binary)
    with primary:
        replica = RedisProcess(
            tmp_path / "replica",
            port=free_port(),
            binary=binary,
            extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
        )
        with replica, redis.Redis.from_url(primary.url) as store:
            deadline = time.monotonic() + 20
            while store.info("replication").get("slave0", {}).get("state") != "online":
                assert time.monotonic() < deadline, "the replica never came in sync"
                time.sleep(0.05)
            yield primary, replica


def test_a_retried_start_waits_for_the_replicas_too(
    tmp_path: Path, primary_and_replica: tuple[RedisProcess, RedisProcess]
) -> None:
    """Replica stopped: the start and its retry answer UNAVAILABLE; replica back: the same verification."""
    primary, replica = primary_and_replica
    url = f"{primary.url}?wait_replicas=1&wait_timeout_ms=300"
    with ServerProcess(tmp_path / "server", redis_url=url) as server, server.client() as registrar:
        identity = person()
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as refused:
                    start(registrar, identity, "repl-1", request_id="repl-req-1")
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE, rich_error(refused.value)
            with redis.Redis.from_url(primary.url) as store:
                # The primary holds the verification the first attempt wrote: it is what a
                # failover would take back.
                assert list(store.scan_iter(match="iv1:{t:default}:vf:*"))
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        again = start(registrar, identity, "repl-1", request_id="repl-req-1")
        assert again.status == verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT
