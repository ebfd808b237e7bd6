"""AdminService: API clients (tokens) for operators."""

from __future__ import annotations

from idverify.domain.errors import InvalidArgument
from idverify.security.clients import ClientRecord, ClientRegistry
from idverify.security.principals import Role
from idverify.services.convert import timestamp_ms
from idverify.services.grpc_types import Context
from idverify.services.request_info import request_info
from idverify.v1 import admin_pb2 as pb
from idverify.v1 import admin_pb2_grpc


def _client(record: ClientRecord) -> pb.Client:
    return pb.Client(
        client_id=record.client_id,
        tenant=record.tenant,
        role=record.role.value,
        description=record.description,
        created_at=timestamp_ms(record.created_ms),
        revoked=record.revoked,
    )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Client management for the admin role."""

    def __init__(self, clients: ClientRegistry) -> None:
        self._clients = clients

    async def CreateClient(
        self, request: pb.CreateClientRequest, context: Context
    ) -> pb.CreateClientResponse:
        """Creates a client and returns its token once."""
        try:
            role = Role(request.role)
        except ValueError:
            raise InvalidArgument(
                "one of registrar, platform, auditor, admin", reason="UNKNOWN_ROLE", field="role"
            ) from None
        record, token = await self._clients.create(
            request.tenant, role, request.description, request_info(context).audit_fields()
        )
        return pb.CreateClientResponse(client=_client(record), token=token)

    async def ListClients(self, request: pb.ListClientsRequest, context: Context) -> pb.ListClientsResponse:
        """Lists clients (never their tokens)."""
        del context
        return pb.ListClientsResponse(clients=[_client(r) for r in await self._clients.list(request.tenant)])

    async def RevokeClient(
        self, request: pb.RevokeClientRequest, context: Context
    ) -> pb.RevokeClientResponse:
        """Revokes a client's token."""
        if not request.client_id.isalnum() or len(request.client_id) > 32:  # noqa: PLR2004
            raise InvalidArgument("client ids are short hex strings", reason="BAD_ID", field="client_id")
        revoked = await self._clients.revoke(request.client_id, request_info(context).audit_fields())
        return pb.RevokeClientResponse(client=_client(revoked))
