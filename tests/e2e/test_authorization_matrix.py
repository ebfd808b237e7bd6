"""Every RPC x every role x own/other tenant x no/invalid/revoked token gets the expected status.

Requests are empty messages: a caller with the right role gets past authentication and
authorization and then fails validation (or succeeds); the point is which of the two security
statuses, if any, comes back.
"""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import message_factory

from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, consent_pb2, verification_pb2

pytestmark = pytest.mark.e2e
SECURITY = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
RIGHTS = {
    "VerificationService": {"registrar", "admin"},
    "ConsentService": {"registrar", "admin"},
    "AccountService": {"platform", "admin"},
    "AuditService": {"auditor", "admin"},
    "AdminService": {"admin"},
}
SERVICES = [
    verification_pb2.DESCRIPTOR.services_by_name["VerificationService"],
    account_pb2.DESCRIPTOR.services_by_name["AccountService"],
    consent_pb2.DESCRIPTOR.services_by_name["ConsentService"],
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
]
RPCS = [(service, method) for service in SERVICES for method in service.methods]


def call(channel: grpc.Channel, service: object, method: object, token: str | None) -> grpc.StatusCode:
    """Calls one RPC with an empty request; returns the status code."""
    path = f"/{service.full_name}/{method.name}"  # type: ignore[attr-defined]
    request_class = message_factory.GetMessageClass(method.input_type)  # type: ignore[attr-defined]
    response_class = message_factory.GetMessageClass(method.output_type)  # type: ignore[attr-defined]
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        if method.server_streaming:  # type: ignore[attr-defined]
            stream = channel.unary_stream(
                path,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            for _ in stream(request_class(), metadata=metadata, timeout=10):
                pass
        else:
            unary = channel.unary_unary(
                path,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            unary(request_class(), metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> dict[str, str]:
    """A token per role in the default tenant, plus a revoked one."""
    found = {role: server.token(role) for role in ("registrar", "platform", "auditor", "admin")}
    with server.client("admin") as admin:
        created = admin.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="default", role="admin"))
        admin.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=created.client.client_id))
    found["revoked"] = created.token
    time.sleep(2.2)  # past the token cache
    return found


@pytest.mark.parametrize(("service", "method"), RPCS, ids=[f"{s.name}.{m.name}" for s, m in RPCS])
class TestMatrix:
    def test_without_valid_credentials_every_rpc_is_unauthenticated(
        self, server: ServerProcess, tokens: dict[str, str], service: object, method: object
    ) -> None:
        """No token, a malformed token, an unknown token and a revoked token all get UNAUTHENTICATED."""
        with grpc.insecure_channel(server.target) as channel:
            for token in (None, "garbage", "ivk_0123456789abcdef.nope", tokens["revoked"]):
                assert call(channel, service, method, token) is grpc.StatusCode.UNAUTHENTICATED, token

    def test_each_role_reaches_exactly_its_rpcs(
        self, server: ServerProcess, tokens: dict[str, str], service: object, method: object
    ) -> None:
        """A role outside the service's rights gets PERMISSION_DENIED; one inside gets past security."""
        allowed = RIGHTS[service.name]  # type: ignore[attr-defined]
        with grpc.insecure_channel(server.target) as channel:
            for role in ("registrar", "platform", "auditor", "admin"):
                code = call(channel, service, method, tokens[role])
                if role in allowed:
                    assert code not in SECURITY, (role, code)
                else:
                    assert code is grpc.StatusCode.PERMISSION_DENIED, (role, code)


class TestTenants:
    def test_another_tenant_cannot_read_this_tenants_data(self, server: ServerProcess) -> None:
        """A platform of tenant B sees tenant A's verified account as unknown, not verified."""
        from .conftest import person, verify  # noqa: PLC0415 - shared builders

        with server.client("registrar") as registrar:
            verify(server, registrar, person(), "matrix-acct")
        with server.client("platform") as mine, server.client("platform", tenant="tenant-b") as theirs:
            assert mine.account.GetAccount(
                account_pb2.GetAccountRequest(account_id="matrix-acct")
            ).account.verified
            assert not theirs.account.GetAccount(
                account_pb2.GetAccountRequest(account_id="matrix-acct")
            ).account.verified
