"""A burst of starts beyond what a worker can hash in their time: the excess refused at once.

One worker with one hashing thread at nice 19 (the default), the default argon2id profile
(tens of milliseconds a hash), and calls whose deadline is a few seconds: a burst of starts
holds more hashes than fit in half that time, so the worker refuses the excess with
RESOURCE_EXHAUSTED (``HASH_QUEUE_FULL``, a retry hint) before reserving anything, and every
start it took in answers in time. Nothing asserts a time: the codes say whether a start stalled
to its deadline. The retries, with the same request ids, start.

The second test takes half of the worker's core away (a nice-0 process spinning on it, in a
session of its own as the worker is), the case where a nice-19 hash runs only while its event
loop waits: starts still either go through or are refused, none reaches its deadline.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import verification_pb2

from .conftest import LOOSE, person, retry_delay_ms, rich_error, submit, text_versions
from .test_workers import serving_workers, wait_for, workers_of

# Serial: what is refused depends on how much of the core the hashes get: the bound under test.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]
# The callers' deadline: the server gives a start's hashes half of it.
DEADLINE_SECONDS = 4.0
# Starts sent at once, over connections that each carry far fewer than the 100 calls a
# connection may hold (idverify/grpc_transport.py). Each client has a connection of its own
# (a local subchannel pool): gRPC's channels to one target with the same options otherwise share
# one, and 200 calls on it went past the 100 streams; its C-core did not wait for a stream and
# the server answered the excess with REFUSED_STREAM (UNAVAILABLE, 6-99 of 200 a run).
CONNECTIONS = 20
PER_CONNECTION = 10
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One worker (so one hashing thread and one queue), on its embedded Redis, limits out of reach."""
    with ServerProcess(
        tmp_path_factory.mktemp("hash-queue"), config=LOOSE, extra_args=["--workers", "1"]
    ) as running:
        wait_for(lambda: serving_workers(running) == 1)
        yield running


def start_request(account: str) -> verification_pb2.StartVerificationRequest:
    consents = ("identity", "phone")
    return verification_pb2.StartVerificationRequest(
        request_id=f"burst-{next(_ids)}",
        account_id=account,
        method_id="sms",
        subject=person().subject(),
        consents=list(consents),
        consent_text_versions=text_versions(consents),
        client_ip="203.0.113.9",
    )


def burst(
    server: ServerProcess, tag: str
) -> tuple[list[verification_pb2.Verification], list[tuple[object, grpc.RpcError]]]:
    """Sends CONNECTIONS x PER_CONNECTION starts at once: the answers, and the refused requests."""
    clients = [
        Client(
            server.target,
            server.token("registrar", "default"),
            credentials=server.credentials,
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(CONNECTIONS)
    ]
    try:
        for client in clients:
            # A call first: the connection's HTTP/2 settings are exchanged before the burst.
            client.verification.ListMethods(verification_pb2.ListMethodsRequest(), timeout=30)
        sent: list[tuple[verification_pb2.StartVerificationRequest, Future[object]]] = []
        for c, client in enumerate(clients):
            for n in range(PER_CONNECTION):
                request = start_request(f"{tag}-{c}-{n}")
                future = client.verification.StartVerification.future(request, timeout=DEADLINE_SECONDS)
                sent.append((request, future))
        answered, refused = [], []
        for request, future in sent:
            try:
                answered.append(future.result().verification)  # type: ignore[attr-defined]
            except grpc.RpcError as error:
                refused.append((request, error))
        return answered, refused
    finally:
        for client in clients:
            client.close()


def check_burst(server: ServerProcess, tag: str) -> None:
    answered, failed = burst(server, tag)
    refused = [(r, e) for r, e in failed if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]  # type: ignore[attr-defined]
    # Above all no DEADLINE_EXCEEDED: every start the worker took in answered in time.
    assert len(refused) == len(failed), {e.code() for _, e in failed}  # type: ignore[attr-defined]
    assert refused, "the burst holds more hashes than fit in its time"
    assert answered, "the worker took in what it could hash"
    for _, error in refused:
        assert rich_error(error)[0] == "HASH_QUEUE_FULL"
        assert retry_delay_ms(error) > 0
    assert {v.status for v in answered} == {verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT}

    with server.client() as client:
        # Every start taken in completes.
        for started in answered[:5]:
            done = submit(client, started.verification_id, server.sms_code(started.verification_id))
            assert done.status == verification_pb2.VERIFICATION_STATUS_VERIFIED
        # A refused start left nothing behind: the same request, sent again, starts.
        for request, _ in refused[:20]:
            again = client.verification.StartVerification(request, timeout=30).verification
            assert again.status == verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT
            done = submit(client, again.verification_id, server.sms_code(again.verification_id))
            assert done.status == verification_pb2.VERIFICATION_STATUS_VERIFIED


def test_a_burst_beyond_the_hashes_in_time_is_refused_at_once_and_the_rest_completes(
    one_worker: ServerProcess,
) -> None:
    check_burst(one_worker, "burst")


def test_on_a_core_shared_with_a_spinning_process_starts_never_stall_to_their_deadline(
    one_worker: ServerProcess,
) -> None:
    """The worker's core shared half and half with a busy program: nice-19 hashes still get theirs.

    The spinner runs at nice 0 on the worker's core only, in a session of its own (another
    scheduling group, as a neighbour on the machine is). While the worker's event loop is busy
    with the burst its hash gets nothing; the loop refuses what it cannot hash in time, waits
    again, and the hashes it took in run.
    """
    (worker,) = workers_of(one_worker)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        os.sched_setaffinity(spinner.pid, os.sched_getaffinity(worker))
        with one_worker.client() as client:
            # The worker learns its hash's time with a neighbour on its core, as a server
            # running among neighbours has.
            for n in range(10):
                started = client.verification.StartVerification(start_request(f"warm-{n}"), timeout=30)
                assert started.verification.status == verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT
        check_burst(one_worker, "starved")
    finally:
        spinner.kill()
        spinner.wait()
