"""A server's audit flow: built from its settings over a log, and its trees kept integrated.

Kept apart from ``flows.audit`` (the auditor's reads): the signing key, the witness directories
and the rollback guard come from the configuration, and the integration loop runs in every
replica for as long as the server does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from idverify.audit.checkpoint import TreeHeadSigner
from idverify.audit.pending import PendingStages
from idverify.audit.published_heads import PublishedHeads
from idverify.audit.rollback import RollbackGuard
from idverify.audit.sequencer import StageSequencer
from idverify.audit.signing_key import load_signing_key
from idverify.config import Settings
from idverify.data_dir import check_witness_dirs
from idverify.domain.errors import IdverifyError, StoreUnavailable
from idverify.domain.tenants import valid_tenant
from idverify.flows.audit import AuditFlow, AuditLog
from idverify.privacy.keyring import Keyring

__all__ = ["INTEGRATION_INTERVAL_SECONDS", "build_audit_flow", "integrate_forever"]

# How often each replica folds new entries into the tree.
INTEGRATION_INTERVAL_SECONDS = 0.5

log = logging.getLogger("idverify.audit")


def build_audit_flow(
    settings: Settings, audit_log: AuditLog, keyring: Keyring, *, stages: PendingStages | None = None
) -> AuditFlow:
    """The audit flow of a server: its log, signing key and rollback guard, and its stage streams.

    Raises:
        ConfigError: when the configured signing key cannot be read, or a witness directory is
            missing or not writable.
    """
    check_witness_dirs(settings.audit_witness_dirs)
    signer = TreeHeadSigner(load_signing_key(settings.data_dir, settings.audit_signing_key_file))
    heads = PublishedHeads(settings.data_dir, settings.audit_witness_dirs)
    guard = RollbackGuard(audit_log, audit_log, heads)
    # Tenants reached only through mapped client certificates have no client records to list.
    certificate_tenants = {target.split("/")[0] for target in settings.tls.client_principals.values()}
    configured = {t for t in (*settings.tenants, *certificate_tenants) if valid_tenant(t)}
    return AuditFlow(
        audit_log,
        signer,
        keyring,
        configured_tenants=configured,
        guard=guard,
        stages=stages,
        stage_buckets=settings.audit_stage_buckets,
    )


async def integrate_forever(
    flow: AuditFlow,
    tenants: Callable[[], Awaitable[Collection[str]]],
    *,
    interval_seconds: float = INTEGRATION_INTERVAL_SECONDS,
    sequencer: StageSequencer | None = None,
) -> None:
    """Keeps every tenant's tree close behind its log, so that heads and proofs stay fast.

    With a ``sequencer`` (``audit_stage_buckets`` set) each tenant's staged entries are folded
    into its log first, so that the round integrates them too. Runs in every replica; they share
    the work through the sequencer's and the integrator's check-and-sets. Failures
    are logged and retried at the next round (Redis being down is the health watcher's news); a
    tenant whose round is refused (its tiles stopped, its tree kept in tiles this server lacks)
    does not hold back the others.
    """
    refused: dict[str, str] = {}  # tenant: the reason last logged, so a stopped tenant logs once
    while True:
        try:
            for tenant in sorted({*await tenants(), *flow.configured_tenants}):
                try:
                    await _sequence_and_integrate(flow, sequencer, tenant)
                except IdverifyError as error:
                    if isinstance(error, StoreUnavailable):
                        raise
                    if refused.get(tenant) != error.reason:
                        log.warning("audit integration of %s refused: %s", tenant, error.reason)
                    refused[tenant] = error.reason
                else:
                    if refused.pop(tenant, None) is not None:
                        log.info("audit integration of %s goes on", tenant)
        except StoreUnavailable:
            pass
        except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad round
            # The type, not the message: a foreign exception's text is not ours to log.
            log.error("audit integration failed: %s", type(error).__name__)  # noqa: TRY400
        await asyncio.sleep(interval_seconds)


async def _sequence_and_integrate(flow: AuditFlow, sequencer: StageSequencer | None, tenant: str) -> None:
    if sequencer is not None:
        await sequencer.sequence(tenant)
    await flow.integrate(tenant)
