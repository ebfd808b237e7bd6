"""No webhook is lost: kill -9 the workers and restart Redis (AOF always) during a signup load.

Every verification a caller was answered VERIFIED must reach the subscription's receiver (checked
by the ``standardwebhooks`` package) once the workers and Redis are back: the cursor moves only
after a 2xx, and a killed worker's lease ends so that another goes on from there.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import admin_pb2, verification_pb2

from .conftest import person, verify
from .test_workers import children
from .webhook_receiver import Receiver

pytestmark = pytest.mark.e2e

THREADS = 3
CONFIG = """
[webhooks]
allow_private_destinations = true
retry_initial_seconds = 0.05
retry_max_seconds = 0.5
scan_seconds = 0.3
lease_seconds = 3
"""


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def load(server: ServerProcess, worker: int, answered: list[str], stop: threading.Event) -> None:
    """Signups until ``stop``, each VERIFIED answer's verification id appended to ``answered``."""
    with server.client() as registrar:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                done = verify(server, registrar, person(), f"hooked-{worker}-{n}")
            except grpc.RpcError:
                time.sleep(0.2)  # a worker or Redis is down: go on when it is back
                continue
            if done.status == verification_pb2.VERIFICATION_STATUS_VERIFIED:
                answered.append(done.verification_id)  # list.append is atomic


def test_every_verified_answer_is_delivered_after_kill_9_of_workers_and_a_redis_restart(
    tmp_path: Path,
) -> None:
    store = RedisProcess(tmp_path / "redis", port=free_port(), appendfsync="always")
    store.start()
    server = ServerProcess(
        tmp_path / "server", redis_url=store.url, config=CONFIG, extra_args=["--workers", "2"]
    )
    try:
        server.start()
        receiver = Receiver().__enter__()
        with server.client("admin") as admin:
            created = admin.admin.CreateWebhook(
                admin_pb2.CreateWebhookRequest(url=receiver.url, event_types=["verification.verified"])
            )
        receiver.secret = created.secret
        answered: list[str] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=load, args=(server, w, answered, stop), daemon=True)
            for w in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        wait_for(
            lambda: len(answered) >= 10 and len(receiver.deliveries) >= 3, 60, "the load did not get going"
        )
        # Every worker, so the one holding the subscription's lease is among them.
        assert server.process is not None
        killed = children(server.process.pid)
        assert len(killed) == 2
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        delivered = len(receiver.deliveries)
        wait_for(lambda: len(answered) >= 20, 90, "the workers did not come back")
        assert not set(killed) & set(children(server.process.pid))
        wait_for(lambda: len(receiver.deliveries) > delivered, 60, "no delivery by the new workers")
        store.stop(hard=True)
        time.sleep(1)
        store.start()
        seen = len(answered)
        wait_for(lambda: len(answered) >= seen + 10, 90, "no signups after Redis came back")
        stop.set()
        for thread in threads:
            thread.join(30)
        wanted = set(answered)
        receiver.wait_for(lambda d: wanted <= {x.payload["data"]["verificationId"] for x in d}, timeout=90)
        assert not receiver.refused
        receiver.__exit__()
    finally:
        server.stop()
        store.stop()
