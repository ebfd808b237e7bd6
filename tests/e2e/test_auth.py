"""Authentication, roles and rate limits, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, verification_pb2

from .conftest import person, rich_error, start

pytestmark = pytest.mark.e2e
LIMITS = """
[rate_limits]
code_sends_per_phone_per_hour = 2
per_identity_per_hour = 3
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small rate limits."""
    with ServerProcess(tmp_path_factory.mktemp("auth"), config=LIMITS) as running:
        yield running


def list_methods(client: Client) -> object:
    return client.verification.ListMethods(verification_pb2.ListMethodsRequest())


class TestAuthentication:
    def test_no_token_is_unauthenticated(self, server: ServerProcess) -> None:
        """A call without credentials gets UNAUTHENTICATED."""
        with Client(server.target) as anonymous, pytest.raises(grpc.RpcError) as refused:
            list_methods(anonymous)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    @pytest.mark.parametrize("token", ["nonsense", "ivk_deadbeef.secret", "ivk_.", "ivk_" + "a" * 500])
    def test_invalid_tokens_are_unauthenticated(self, server: ServerProcess, token: str) -> None:
        """Malformed or unknown tokens get UNAUTHENTICATED."""
        with Client(server.target, token) as client, pytest.raises(grpc.RpcError) as refused:
            list_methods(client)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def test_a_tampered_secret_is_refused(self, server: ServerProcess) -> None:
        """A real client id with a wrong secret does not authenticate."""
        token = server.token("registrar")
        with Client(server.target, token[:-2] + "xx") as client, pytest.raises(grpc.RpcError) as refused:
            list_methods(client)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def test_a_revoked_token_stops_working(self, server: ServerProcess) -> None:
        """Revocation takes effect within the token cache time."""
        with server.client("admin") as admin:
            created = admin.admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="registrar")
            )
            with Client(server.target, created.token) as client:
                list_methods(client)
                admin.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=created.client.client_id))
                time.sleep(2.2)
                with pytest.raises(grpc.RpcError) as refused:
                    list_methods(client)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def test_clients_are_listed_without_secrets(self, server: ServerProcess) -> None:
        """ListClients shows ids, tenants and roles, never tokens."""
        token = server.token("platform")
        with server.client("admin") as admin:
            listed = admin.admin.ListClients(admin_pb2.ListClientsRequest())
        assert any(c.role == "platform" for c in listed.clients)
        assert token.rsplit(".", 1)[1] not in str(listed)  # ivk_<tenant>.<client id>.<secret>


class TestRoles:
    def test_platform_may_not_verify(self, server: ServerProcess) -> None:
        """A platform token calling the registrar's RPCs gets PERMISSION_DENIED."""
        with server.client("platform") as platform, pytest.raises(grpc.RpcError) as refused:
            list_methods(platform)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    def test_registrar_may_not_read_accounts_or_audit_or_admin(self, server: ServerProcess) -> None:
        """A registrar gets PERMISSION_DENIED outside its rights."""
        with server.client("registrar") as registrar:
            for call in (
                lambda: registrar.account.GetAccount(account_pb2.GetAccountRequest(account_id="a")),
                lambda: registrar.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()),
                lambda: registrar.admin.ListClients(admin_pb2.ListClientsRequest()),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    def test_tenants_do_not_see_each_other(self, server: ServerProcess) -> None:
        """A verification of one tenant is NOT_FOUND for another tenant's registrar."""
        with server.client("registrar") as mine, server.client("registrar", tenant="other") as theirs:
            started = start(mine, person(), "acct-tenant")
            with pytest.raises(grpc.RpcError) as hidden:
                theirs.verification.GetVerification(
                    verification_pb2.GetVerificationRequest(verification_id=started.verification_id)
                )
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND


class TestRateLimits:
    def test_code_sends_per_phone_are_limited_with_retry_info(self, server: ServerProcess) -> None:
        """The third code to one phone within the hour gets RESOURCE_EXHAUSTED with a retry delay."""
        with server.client("registrar") as registrar:
            shared_phone = person().phone
            for n in range(2):
                start(registrar, person(), f"acct-rl-{n}", phone_number=shared_phone)
            with pytest.raises(grpc.RpcError) as limited:
                start(registrar, person(), "acct-rl-2", phone_number=shared_phone)
        assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rich_error(limited.value)[0] == "PHONE_RATE_LIMITED"
        details = dict(limited.value.trailing_metadata())["grpc-status-details-bin"]
        retry = [
            d
            for d in status_pb2.Status.FromString(details).details
            if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
        ]
        assert retry

    def test_starts_per_identity_are_limited(self, server: ServerProcess) -> None:
        """One identity can start only a few verifications per hour, whatever the account."""
        identity = person()
        with server.client("registrar") as registrar:
            for n in range(3):
                start(registrar, identity, f"acct-id-{n}", phone_number=person().phone)
            with pytest.raises(grpc.RpcError) as limited:
                start(registrar, identity, "acct-id-3", phone_number=person().phone)
        assert rich_error(limited.value)[0] == "IDENTITY_RATE_LIMITED"


class TestBootstrapToken:
    def test_it_creates_operators_and_admins_only_and_retires_when_an_operator_exists(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Before an operator: admins and operators, nothing else; after: BOOTSTRAP_RETIRED."""
        with ServerProcess(tmp_path_factory.mktemp("bootstrap")) as fresh:
            with Client(fresh.target, fresh.bootstrap_token()) as bootstrap:
                for refused_call in (
                    lambda: bootstrap.admin.ListClients(admin_pb2.ListClientsRequest()),
                    lambda: bootstrap.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()),
                    lambda: bootstrap.account.GetAccount(account_pb2.GetAccountRequest(account_id="a")),
                    lambda: bootstrap.admin.CreateClient(
                        admin_pb2.CreateClientRequest(tenant="default", role="registrar")
                    ),
                ):
                    with pytest.raises(grpc.RpcError) as refused:
                        refused_call()
                    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
                admin = bootstrap.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="tb", role="admin"))
                assert (admin.client.tenant, admin.client.role) == ("tb", "admin")
                bootstrap.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="default", role="operator"))
                with pytest.raises(grpc.RpcError) as retired:
                    bootstrap.admin.CreateClient(admin_pb2.CreateClientRequest(tenant="tb", role="admin"))
            assert retired.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert rich_error(retired.value)[0] == "BOOTSTRAP_RETIRED"
            assert "operator" in (retired.value.details() or "")
            with Client(fresh.target, admin.token) as tb_admin:  # what it created still works
                tb_admin.admin.CreateClient(admin_pb2.CreateClientRequest(role="registrar"))

    def test_it_is_never_written_to_the_log(self, server: ServerProcess) -> None:
        """The log (stderr, not a terminal) names the 0600 file, never the token."""
        log = server.log_text()
        assert server.bootstrap_token() not in log
        assert f"bootstrap token created in {server.data_dir / 'bootstrap-token'}" in log
