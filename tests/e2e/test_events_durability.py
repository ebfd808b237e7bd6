"""No event is lost: kill -9 the server and Redis (AOF always) in the middle of a signup load.

Every verification a caller was answered VERIFIED must have its ``verification.verified`` event
once both are back, since the event is written in the very step that verified it.
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
from idverify.v1 import events_pb2, verification_pb2

from .conftest import person, verify
from .test_workers import children

pytestmark = pytest.mark.e2e

THREADS = 3


def kill_9(server: ServerProcess) -> None:
    """SIGKILL to the supervisor and each worker, and waits until they are gone."""
    assert server.process is not None
    workers = children(server.process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    server.stop(signal.SIGKILL)
    for pid in workers:
        status = Path(f"/proc/{pid}/status")
        while status.exists() and "zombie" not in status.read_text(encoding="ascii"):
            time.sleep(0.05)


def test_every_verified_answer_has_its_event_after_kill_9(tmp_path: Path) -> None:
    store = RedisProcess(tmp_path / "redis", port=free_port(), appendfsync="always")
    store.start()
    server = ServerProcess(tmp_path / "server", redis_url=store.url)
    try:
        server.start()
        answered: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load(worker: int) -> None:
            with server.client() as registrar:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        done = verify(server, registrar, person(), f"durable-{worker}-{n}")
                    except grpc.RpcError:
                        return  # the server is gone
                    if done.status == verification_pb2.VERIFICATION_STATUS_VERIFIED:
                        with lock:
                            answered.append(done.verification_id)

        threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Redis first, then every process of the server: answers in flight are lost, none given.
        store.stop(hard=True)
        kill_9(server)
        stop.set()
        for thread in threads:
            thread.join(15)
        assert len(answered) >= 10, "the load did not get going"
        store.start()
        server.start()
        with server.client("platform") as platform:
            events = [
                reply.event
                for reply in platform.events.StreamEvents(
                    events_pb2.StreamEventsRequest(types=["verification.verified"], until_caught_up=True),
                    timeout=60,
                )
            ]
        told = {event.verification_id for event in events}
        assert set(answered) <= told, sorted(set(answered) - told)
    finally:
        server.stop()
        store.stop()
