"""Every RPC x every role x own/other tenant x no/invalid/revoked token gets the expected status.

Requests are empty messages: a caller with the right role gets past authentication and
authorization and then fails validation (or succeeds); the point is which of the two security
statuses, if any, comes back. The tenant matrix then crosses tenant x role x target tenant for
the calls that name a tenant: every role acts on its own tenant only, admins included; the
operator administers clients of every tenant and reads no audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
    "AdminService": {"admin", "operator"},
}
# RPCs narrower than their service's rights.
METHOD_RIGHTS = {
    "CreateIncidentReport": {"admin"},
    # A tenant's approved names, and what a refusal says of its other organizations.
    "SetApprovedNames": {"admin"},
    # Webhooks send a tenant's events where the tenant says: its admin's decision alone.
    **{
        name: {"admin"}
        for name in ("CreateWebhook", "ListWebhooks", "UpdateWebhook", "DeleteWebhook", "ReplayWebhook")
    },
}
ROLES = ("registrar", "platform", "auditor", "admin", "operator", "bootstrap")
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
    """A token per role in the default tenant, the (retired) bootstrap token, and a revoked one."""
    found = {role: server.token(role) for role in ROLES if role != "bootstrap"}
    found["bootstrap"] = server.bootstrap_token()  # retired: the operator exists
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
        """A role outside the service's rights gets PERMISSION_DENIED; one inside gets past security.

        The bootstrap token, retired once the operator exists, gets PERMISSION_DENIED everywhere.
        """
        allowed = METHOD_RIGHTS.get(method.name) or RIGHTS[service.name]  # type: ignore[attr-defined]
        with grpc.insecure_channel(server.target) as channel:
            for role in ROLES:
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


TENANTS = ("default", "tb")
TENANT_ROLES = ("registrar", "auditor", "admin", "operator")


def code_of(call_it: Callable[[], object]) -> grpc.StatusCode:
    """The status of a call: OK, or the code it failed with."""
    try:
        call_it()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def expected(role: str, own: bool, *, admin_call: bool) -> grpc.StatusCode:
    """What a role gets for a call on its own or another tenant: client administration or an audit read."""
    if role == "operator":
        return grpc.StatusCode.OK if admin_call else grpc.StatusCode.PERMISSION_DENIED
    allowed = {"admin"} if admin_call else {"auditor", "admin"}
    return grpc.StatusCode.OK if role in allowed and own else grpc.StatusCode.PERMISSION_DENIED


CASES = [
    (tenant, role, target)
    for tenant in TENANTS
    for role in TENANT_ROLES
    for target in TENANTS
    if not (role == "operator" and tenant != "default")  # the operator has one home
]


@pytest.mark.parametrize(("tenant", "role", "target"), CASES, ids=[f"{t}-{r}-on-{g}" for t, r, g in CASES])
class TestTenantMatrix:
    def test_audit_reads_stay_in_the_callers_tenant(
        self, server: ServerProcess, tenant: str, role: str, target: str
    ) -> None:
        """Only the target's own auditors and admins read its log; the operator reads none."""
        server.token("auditor", tenant="tb")  # tb has a log
        with server.client(role, tenant=tenant) as client:
            code = code_of(lambda: client.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant=target)))
        assert code is expected(role, tenant == target, admin_call=False)

    def test_staged_positions_stay_in_the_callers_tenant(
        self, server: ServerProcess, tenant: str, role: str, target: str
    ) -> None:
        """GetStagedEntry as the other audit reads, the tenant checked before the request.

        This server stages nowhere, so a caller let in is told its bucket is out of range.
        """
        server.token("auditor", tenant="tb")
        request = audit_pb2.GetStagedEntryRequest(tenant=target, bucket=0, stream_id="1-0")
        with server.client(role, tenant=tenant) as client:
            code = code_of(lambda: client.audit.GetStagedEntry(request))
        want = expected(role, tenant == target, admin_call=False)
        assert code is (grpc.StatusCode.INVALID_ARGUMENT if want is grpc.StatusCode.OK else want)

    def test_client_administration_stays_in_the_callers_tenant(
        self, server: ServerProcess, tenant: str, role: str, target: str
    ) -> None:
        """Creating, listing and revoking another tenant's clients is for the operator alone."""
        want = expected(role, tenant == target, admin_call=True)
        with server.client(role, tenant=tenant) as client:
            create = lambda: client.admin.CreateClient(  # noqa: E731 - read once below
                admin_pb2.CreateClientRequest(tenant=target, role="auditor", description="matrix")
            )
            assert code_of(create) is want
            assert (
                code_of(lambda: client.admin.ListClients(admin_pb2.ListClientsRequest(tenant=target))) is want
            )
        with server.client("operator") as operator:
            victim = operator.admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant=target, role="registrar", description="victim")
            ).client
        with server.client(role, tenant=tenant) as client:
            code = code_of(
                lambda: client.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=victim.client_id))
            )
        # Another tenant's client is absent to an admin, as every other tenant's object is.
        assert code is (
            grpc.StatusCode.NOT_FOUND if role == "admin" and want is not grpc.StatusCode.OK else want
        )


class TestAdminLimits:
    def test_an_admins_listing_holds_its_own_tenant_only(self, server: ServerProcess) -> None:
        """ListClients without a tenant lists the admin's own tenant's clients, no other."""
        server.token("registrar", tenant="tb")
        with server.client("admin", tenant="default") as admin:
            listed = admin.admin.ListClients(admin_pb2.ListClientsRequest()).clients
        assert listed
        assert {c.tenant for c in listed} == {"default"}
        with server.client("operator") as operator:
            everything = operator.admin.ListClients(admin_pb2.ListClientsRequest()).clients
        assert {"default", "tb"} <= {c.tenant for c in everything}

    def test_no_admin_or_operator_creates_an_operator(self, server: ServerProcess) -> None:
        """Operators come from the bootstrap token or the break-glass CLI only."""
        for role in ("admin", "operator"):
            with server.client(role) as client, pytest.raises(grpc.RpcError) as refused:
                client.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="default", role="operator"))
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED, role

    def test_an_admin_cannot_revoke_an_operator_of_its_tenant(self, server: ServerProcess) -> None:
        """The operator lives in default; default's admin still may not revoke it."""
        with server.client("operator") as operator:
            listed = operator.admin.ListClients(admin_pb2.ListClientsRequest(tenant="default")).clients
        operator_id = next(c.client_id for c in listed if c.role == "operator" and not c.revoked)
        with server.client("admin") as admin, pytest.raises(grpc.RpcError) as refused:
            admin.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=operator_id))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
