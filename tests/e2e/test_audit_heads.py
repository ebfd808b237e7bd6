"""Signed tree heads across workers and replicas: a caller switching between them never sees one go back."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import (
    SignedHead,
    TreeHead,
    load_public_key,
    private_key_pem,
    verify_signed_head,
)
from idverify.privacy.keyring import Keyring
from idverify.testing import RedisProcess, ServerProcess, free_port, redis_server_binary
from idverify.v1 import admin_pb2, audit_pb2, audit_pb2_grpc

from .test_workers import serving_workers, wait_for

CHANNELS_PER_SERVER = 4
ROUNDS = 12
HEADS_PER_ROUND = 16


def signed(message: audit_pb2.SignedTreeHead) -> SignedHead:
    stamp = message.timestamp
    head = TreeHead(
        message.origin, message.tree_size, message.root_hash, stamp.seconds * 1000 + stamp.nanos // 10**6
    )
    return SignedHead(head, message.key_id, message.signature)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two servers of two workers each on one Redis, sharing the keyring and the log's signing key."""
    env = {
        "IDVERIFY_KEYRING": Keyring.generate().to_json(),
        "IDVERIFY_AUDIT_SIGNING_KEY": private_key_pem(Ed25519PrivateKey.generate()).decode("ascii"),
    }
    binary = redis_server_binary(prefer_system=True)
    with RedisProcess(tmp_path / "redis", port=free_port(), binary=binary) as store, ExitStack() as stack:
        servers = [
            stack.enter_context(
                ServerProcess(
                    tmp_path / f"replica-{n}", redis_url=store.url, env=env, extra_args=["--workers", "2"]
                )
            )
            for n in range(2)
        ]
        for server in servers:
            wait_for(lambda server=server: serving_workers(server) == 2)
        yield servers


class TestHeadsAcrossReplicas:
    def test_heads_never_go_back_in_size_or_time(self, replicas: list[ServerProcess]) -> None:
        """Heads asked of every worker of two replicas in turn, while the log grows, only move forward."""
        first = replicas[0]
        auditor = (("authorization", f"Bearer {first.token('auditor')}"),)
        with ExitStack() as stack:
            admin = stack.enter_context(first.client("admin"))
            public_key = load_public_key(
                admin.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key.encode()
            )
            # Separate subchannels: each channel is its own connection, which the kernel gives
            # to one of its server's workers.
            channels = [
                stack.enter_context(
                    grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
                )
                for server in replicas
                for _ in range(CHANNELS_PER_SERVER)
            ]
            stubs = itertools.cycle([audit_pb2_grpc.AuditServiceStub(channel) for channel in channels])
            seen: list[SignedHead] = []
            for round_number in range(ROUNDS):
                # Each new client is an audit entry: the log grows between rounds.
                admin.admin.CreateClient(
                    admin_pb2.CreateClientRequest(
                        tenant="default", role="platform", description=f"r{round_number}"
                    )
                )
                for _ in range(HEADS_PER_ROUND):
                    answer = next(stubs).GetTreeHead(audit_pb2.GetTreeHeadRequest(), metadata=auditor)
                    seen.append(signed(answer.head))
        for earlier, later in itertools.pairwise(seen):
            verify_signed_head(later, public_key)
            assert later.head.size >= earlier.head.size, (earlier.head, later.head)
            assert later.head.timestamp_ms >= earlier.head.timestamp_ms, (earlier.head, later.head)
        assert seen[-1].head.size >= seen[0].head.size + ROUNDS - 1
