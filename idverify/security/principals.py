"""Who is calling: principals (tenant, role) and the rights of each role per RPC.

The tenant always comes from the principal, never from a request body (DESIGN 5). Every role
acts on its own tenant only, admins included; the one exception is the operator, whose only
right is client administration of any tenant (it reads no identities and no audit log).
Operators are created by the bootstrap token, until the first one exists, or by
``idverify clients create --role operator --break-glass`` on the server's host.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import Enum

from idverify.domain.errors import PermissionDenied, Unauthenticated


class Role(Enum):
    """What a client may do."""

    REGISTRAR = "registrar"  # verification, consent, binding
    PLATFORM = "platform"  # account reads, IP location, cancellation
    AUDITOR = "auditor"  # the audit log of its own tenant
    ADMIN = "admin"  # everything of its own tenant, its clients included
    OPERATOR = "operator"  # client administration of every tenant, nothing else
    # The bootstrap token's client: never stored as a role (its record says admin, for servers
    # of earlier versions), recognised by id. It may only create operators and admins, and only
    # until an operator exists.
    BOOTSTRAP = "bootstrap"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    role: Role
    client_id: str

    @property
    def label(self) -> str:
        """How the principal appears in audit entries and logs (no secrets)."""
        return f"{self.tenant}/{self.role.value}/{self.client_id}"


_REGISTRAR = frozenset({Role.REGISTRAR, Role.ADMIN})
_PLATFORM = frozenset({Role.PLATFORM, Role.ADMIN})
_AUDITOR = frozenset({Role.AUDITOR, Role.ADMIN})
_ADMIN = frozenset({Role.ADMIN, Role.OPERATOR, Role.BOOTSTRAP})
# Roles a client or a certificate may be given: every one but the bootstrap token's own.
GRANTABLE_ROLES = frozenset(role for role in Role if role is not Role.BOOTSTRAP)
# Roles that administer clients of any tenant (AdminService only: authorize keeps them there).
CROSS_TENANT = frozenset({Role.OPERATOR, Role.BOOTSTRAP})

_SERVICE_RIGHTS: dict[str, frozenset[Role]] = {
    "idverify.v1.VerificationService": _REGISTRAR,
    "idverify.v1.ConsentService": _REGISTRAR,
    "idverify.v1.AccountService": _PLATFORM,
    "idverify.v1.AuditService": _AUDITOR,
    "idverify.v1.AdminService": _ADMIN,
    # Registrars follow their verifications, platforms their accounts; both may stream events.
    "idverify.v1.EventService": _REGISTRAR | _PLATFORM,
}
# RPCs narrower than their service: an incident report counts what the tenant's clients read
# and what it holds, which operators (client administration only) and the bootstrap token may
# not see.
_METHOD_RIGHTS: dict[str, frozenset[Role]] = {
    "/idverify.v1.AdminService/CreateIncidentReport": frozenset({Role.ADMIN}),
    # Approved names are the tenant's decision, and each refusal says whether another
    # organization of the tenant holds a name: an operator administers clients only.
    "/idverify.v1.AdminService/SetApprovedNames": frozenset({Role.ADMIN}),
    # Webhooks send a tenant's events where the tenant says: its admin's decision alone.
    **{
        f"/idverify.v1.AdminService/{name}": frozenset({Role.ADMIN})
        for name in ("CreateWebhook", "ListWebhooks", "UpdateWebhook", "DeleteWebhook", "ReplayWebhook")
    },
}
# The only RPC the bootstrap token reaches.
BOOTSTRAP_METHOD = "/idverify.v1.AdminService/CreateClient"
# Services anyone may call without a token: probes and tooling discovery.
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


def is_public(full_method: str) -> bool:
    """True for RPCs that need no credentials (health, reflection)."""
    return service_of(full_method) in PUBLIC_SERVICES


def service_of(full_method: str) -> str:
    """``/pkg.Service/Method`` -> ``pkg.Service``."""
    return full_method.lstrip("/").split("/", 1)[0]


def authorize(principal: Principal | None, full_method: str) -> None:
    """Checks that the principal's role may call the method.

    Raises:
        Unauthenticated: when there is no principal.
        PermissionDenied: when the role may not call it (or the method is unknown).
    """
    if principal is None:
        raise Unauthenticated("missing or invalid credentials")
    allowed = _METHOD_RIGHTS.get(full_method) or _SERVICE_RIGHTS.get(service_of(full_method), frozenset())
    if principal.role not in allowed or (
        principal.role is Role.BOOTSTRAP and full_method != BOOTSTRAP_METHOD
    ):
        raise PermissionDenied(f"role {principal.role.value} may not call {full_method}")


current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("idverify_principal")


def caller() -> Principal:
    """The principal of the running RPC (set by the auth interceptor)."""
    return current_principal.get()


def tenant_for(principal: Principal, requested: str) -> str:
    """The tenant a call acts on: the caller's own; only operators (and bootstrap) may name another.

    Raises:
        PermissionDenied: when any other role names a tenant other than its own.
    """
    if not requested or requested == principal.tenant:
        return principal.tenant
    if principal.role in CROSS_TENANT:
        return requested
    raise PermissionDenied("a principal may only act on its own tenant", reason="OTHER_TENANT")
