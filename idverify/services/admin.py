"""AdminService: API clients (tokens), for admins of their own tenant and for operators.

Who may do what (DESIGN: principals):

* an admin creates registrar, platform, auditor and admin clients of its own tenant, and lists
  and revokes its own tenant's clients except operators; another tenant's client is NOT_FOUND
  to it, as every other tenant's object is;
* an operator does the same for every tenant, and may revoke operators, but creates none;
* the bootstrap token creates operators and admins of any tenant, nothing else, until the
  first operator exists (then ``BOOTSTRAP_RETIRED``);
* operators are also created by ``idverify clients create --role operator --break-glass`` on
  the server's host;
* webhook subscriptions (``*Webhook*``) are an admin's, of its own tenant: where its events go
  is the tenant's decision, and a secret is shown once to whoever makes it;
* an incident report (``CreateIncidentReport``) is an admin's, of its own tenant: it counts what
  the tenant's clients read and what it holds, which operators may not see
  (``security.principals`` keeps them and the bootstrap token out).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from idverify.domain.errors import InvalidArgument, NotFound, PermissionDenied
from idverify.flows.display_names import DisplayNameFlow
from idverify.flows.incident import IncidentFlow
from idverify.flows.incident_request import IncidentRequest
from idverify.security.clients import ClientRecord, ClientRegistry
from idverify.security.principals import CROSS_TENANT, Principal, Role, caller, tenant_for
from idverify.services.convert import timestamp_ms
from idverify.services.grpc_types import Context
from idverify.services.request_info import request_info
from idverify.v1 import admin_pb2 as pb
from idverify.v1 import admin_pb2_grpc
from idverify.webhooks.subscriptions import Subscription, Subscriptions

# The roles a client may be created with, and who may create each.
_CREATABLE = {
    Role.REGISTRAR: frozenset({Role.ADMIN, Role.OPERATOR}),
    Role.PLATFORM: frozenset({Role.ADMIN, Role.OPERATOR}),
    Role.AUDITOR: frozenset({Role.ADMIN, Role.OPERATOR}),
    Role.ADMIN: frozenset({Role.ADMIN, Role.OPERATOR, Role.BOOTSTRAP}),
    Role.OPERATOR: frozenset({Role.BOOTSTRAP}),
}
_ROLE_NAMES = ", ".join(role.value for role in _CREATABLE)


def _webhook(subscription: Subscription) -> pb.Webhook:
    answer = pb.Webhook(
        webhook_id=subscription.webhook_id,
        tenant=subscription.tenant,
        url=subscription.url,
        event_types=sorted(subscription.types),
        enabled=subscription.enabled,
        state=subscription.state,
        cursor=subscription.cursor,
        created_at=timestamp_ms(subscription.created_ms),
        timeout_seconds=subscription.timeout_ms // 1000,
        concurrency=subscription.concurrency,
        last_error=subscription.last_error,
    )
    since = subscription.failing_ms or subscription.first_failure_ms
    if since:
        answer.failing_since.CopyFrom(timestamp_ms(since))
    return answer


def _client(record: ClientRecord) -> pb.Client:
    return pb.Client(
        client_id=record.client_id,
        tenant=record.tenant,
        role=record.role.value,
        description=record.description,
        created_at=timestamp_ms(record.created_ms),
        revoked=record.revoked,
    )


@dataclass(eq=False, slots=True)
class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Client management for admins (own tenant), operators (any tenant) and the bootstrap token."""

    clients: ClientRegistry
    incidents: IncidentFlow
    display_names: DisplayNameFlow
    webhooks: Subscriptions

    async def CreateWebhook(
        self, request: pb.CreateWebhookRequest, context: Context
    ) -> pb.CreateWebhookResponse:
        """Subscribes a URL to the tenant's events; the secret is in this answer only."""
        tenant = tenant_for(caller(), request.tenant)
        subscription, secret = await self.webhooks.create(
            tenant,
            request.url,
            list(request.event_types),
            request.timeout_seconds,
            request_info(context).audit_fields(),
            from_oldest=request.from_oldest,
            concurrency=request.concurrency,
        )
        return pb.CreateWebhookResponse(webhook=_webhook(subscription), secret=secret)

    async def ListWebhooks(
        self, request: pb.ListWebhooksRequest, context: Context
    ) -> pb.ListWebhooksResponse:
        """The tenant's subscriptions and their state (never a secret)."""
        del context
        tenant = tenant_for(caller(), request.tenant)
        return pb.ListWebhooksResponse(webhooks=[_webhook(s) for s in await self.webhooks.list(tenant)])

    async def UpdateWebhook(
        self, request: pb.UpdateWebhookRequest, context: Context
    ) -> pb.UpdateWebhookResponse:
        """Enables, disables or re-keys a subscription (a new secret is in this answer only)."""
        tenant = tenant_for(caller(), request.tenant)
        subscription, secret = await self.webhooks.update(
            tenant, request.webhook_id, request.action, request_info(context).audit_fields()
        )
        return pb.UpdateWebhookResponse(webhook=_webhook(subscription), secret=secret)

    async def DeleteWebhook(
        self, request: pb.DeleteWebhookRequest, context: Context
    ) -> pb.DeleteWebhookResponse:
        """Deletes a subscription."""
        tenant = tenant_for(caller(), request.tenant)
        await self.webhooks.delete(tenant, request.webhook_id, request_info(context).audit_fields())
        return pb.DeleteWebhookResponse()

    async def ReplayWebhook(
        self, request: pb.ReplayWebhookRequest, context: Context
    ) -> pb.ReplayWebhookResponse:
        """Moves a subscription's cursor so its events after it are delivered again."""
        tenant = tenant_for(caller(), request.tenant)
        subscription = await self.webhooks.replay(
            tenant,
            request.webhook_id,
            request.after,
            _ms(request, "since"),
            request_info(context).audit_fields(),
        )
        return pb.ReplayWebhookResponse(webhook=_webhook(subscription))

    async def CreateClient(
        self, request: pb.CreateClientRequest, context: Context
    ) -> pb.CreateClientResponse:
        """Creates a client and returns its token once."""
        principal = caller()
        if principal.role is Role.BOOTSTRAP and await self.clients.bootstrap_retired():
            raise PermissionDenied(
                "an operator client exists, so the bootstrap token is retired: use an operator token",
                reason="BOOTSTRAP_RETIRED",
            )
        try:
            role = Role(request.role)
        except ValueError:
            role = None
        if role not in _CREATABLE:
            raise InvalidArgument(f"one of {_ROLE_NAMES}", reason="UNKNOWN_ROLE", field="role")
        if principal.role not in _CREATABLE[role]:
            raise PermissionDenied(
                f"role {principal.role.value} may not create {role.value} clients", reason="ROLE_NOT_GRANTED"
            )
        tenant = tenant_for(principal, request.tenant)
        record, token = await self.clients.create(
            tenant, role, request.description, request_info(context).audit_fields()
        )
        return pb.CreateClientResponse(client=_client(record), token=token)

    async def ListClients(self, request: pb.ListClientsRequest, context: Context) -> pb.ListClientsResponse:
        """Lists clients (never their tokens): an admin's own tenant's, or any an operator names."""
        del context
        principal = caller()
        # An operator's empty tenant means every tenant; an admin's means its own.
        tenant = request.tenant if principal.role in CROSS_TENANT else tenant_for(principal, request.tenant)
        return pb.ListClientsResponse(clients=[_client(r) for r in await self.clients.list(tenant)])

    async def RevokeClient(
        self, request: pb.RevokeClientRequest, context: Context
    ) -> pb.RevokeClientResponse:
        """Revokes a client's token."""
        if not request.client_id.isalnum() or len(request.client_id) > 32:  # noqa: PLR2004
            raise InvalidArgument("client ids are short hex strings", reason="BAD_ID", field="client_id")
        _may_revoke(caller(), await self.clients.get(request.client_id))
        revoked = await self.clients.revoke(request.client_id, request_info(context).audit_fields())
        return pb.RevokeClientResponse(client=_client(revoked))

    async def CreateIncidentReport(
        self, request: pb.CreateIncidentReportRequest, context: Context
    ) -> pb.CreateIncidentReportResponse:
        """The signed incident report of the admin's own tenant, and its Markdown."""
        tenant = tenant_for(caller(), request.tenant)
        asked = IncidentRequest(
            principals=tuple(request.principals),
            since_ms=_ms(request, "since"),
            until_ms=_ms(request, "until"),
            detected_ms=_ms(request, "detected_at"),
            critical_infrastructure=request.critical_infrastructure,
            store_breach=request.store_breach,
        )
        signed, markdown = await self.incidents.create(tenant, asked, request_info(context))
        return pb.CreateIncidentReportResponse(signed_report=signed, markdown=markdown)

    async def SetApprovedNames(
        self, request: pb.SetApprovedNamesRequest, context: Context
    ) -> pb.SetApprovedNamesResponse:
        """Records the short names and brands a tenant approves for an organization account."""
        tenant = tenant_for(caller(), request.tenant)
        count = await self.display_names.set_approved(
            tenant, request.account_id, list(request.names), request_info(context)
        )
        return pb.SetApprovedNamesResponse(approved_count=count)


def _ms(request: pb.CreateIncidentReportRequest | pb.ReplayWebhookRequest, field: str) -> int:
    """A timestamp field in ms (0 when unset; the flow says it is required).

    Raises:
        InvalidArgument: the time is before 1970 or not a valid timestamp.
    """
    if not request.HasField(field):  # type: ignore[arg-type]
        return 0
    stamp: Timestamp = getattr(request, field)
    if stamp.seconds <= 0 or not 0 <= stamp.nanos < 1_000_000_000:  # noqa: PLR2004
        raise InvalidArgument("a time after 1970", reason="BAD_TIME", field=field)
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def _may_revoke(principal: Principal, target: ClientRecord) -> None:
    """Checks that the principal may revoke the client.

    Raises:
        NotFound: when the client belongs to another tenant than an admin's (as if absent).
        PermissionDenied: when an admin names an operator of its own tenant.
    """
    if principal.role in CROSS_TENANT:
        return
    if target.tenant != principal.tenant:
        raise NotFound("no such client", field="client_id")
    if target.role is Role.OPERATOR:
        raise PermissionDenied("only an operator may revoke an operator", reason="ROLE_NOT_GRANTED")
