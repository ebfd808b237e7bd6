"""A server's audit flow: built from its settings over a log, and its trees kept integrated.

Kept apart from ``flows.audit`` (the auditor's reads): the signing key, the witness directories
and the rollback guard come from the configuration, and the integration loop runs in every
replica for as long as the server does. Given :class:`IntegrationLeases` (the port declared here;
``store.integration_leases.RedisIntegrationLeases`` implements it), one worker at a time folds a
tenant's rounds, and the others only check its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

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

__all__ = [
    "INTEGRATION_INTERVAL_SECONDS",
    "IntegrationLeases",
    "build_audit_flow",
    "integrate_forever",
    "lease_ms_for",
]

# How often each replica folds new entries into the tree.
INTEGRATION_INTERVAL_SECONDS = 0.5
# A lease outlives this many rounds of its holder, so that a slow round keeps it; at least
# MIN_LEASE_MS, so that a short interval does not turn a busy loop's lag into a hand-over; at most
# MAX_LEASE_MS, so that a dead holder of a long interval's lease keeps no one waiting for hours
# (its lease then ends between two rounds, and whoever comes round next takes it).
LEASE_ROUNDS = 4
MIN_LEASE_MS = 2000
MAX_LEASE_MS = 10_000

log = logging.getLogger("idverify.audit")


class IntegrationLeases(Protocol):
    """Which worker integrates a tenant's log; every method may raise StoreUnavailable."""

    async def hold(self, tenant: str, token: str, lease_ms: int) -> bool:
        """Takes or renews the tenant's lease for ``token``; False while another token holds it."""
        ...

    async def give(self, tenant: str, token: str) -> None:
        """Gives the tenant's lease back, if ``token`` holds it."""
        ...


def lease_ms_for(interval_seconds: float) -> int:
    """How long an integration lease lasts, in ms, for rounds ``interval_seconds`` apart."""
    return min(MAX_LEASE_MS, max(MIN_LEASE_MS, round(LEASE_ROUNDS * interval_seconds * 1000)))


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
    leases: IntegrationLeases | None = None,
) -> None:
    """Keeps every tenant's tree close behind its log, so that heads and proofs stay fast.

    With a ``sequencer`` (``audit_stage_buckets`` set) each tenant's staged entries are folded
    into its log first, so that the round integrates them too. Runs in every replica. With
    ``leases``, a tenant's rounds are run by the worker holding its lease (taken by whoever asks
    first, renewed every round, lost within ``lease_ms_for(interval_seconds)`` when its holder
    dies): without one, workers racing each other fold the same entries and all but one lose
    their round to the check-and-set, CPU spent for nothing. Correctness never rests on the
    lease: the sequencer's and the integrator's check-and-sets still decide, so a lease that
    lapsed during a long round, or a replica of a release without leases, only costs a race.
    Failures are logged and retried at the next round (Redis being down is the health watcher's
    news); a tenant whose round is refused (its tiles stopped, its tree kept in tiles this server
    lacks) does not hold back the others, and its lease is given back for a replica that can
    integrate it: this worker goes on trying without the lease until its rounds pass again.
    """
    rounds = _TenantRounds(flow, sequencer, leases, lease_ms_for(interval_seconds))
    try:
        await _integrate_rounds(flow, tenants, rounds, interval_seconds)
    finally:
        await rounds.give_back_all()  # a worker stopped: the next takes over at once


async def _integrate_rounds(
    flow: AuditFlow,
    tenants: Callable[[], Awaitable[Collection[str]]],
    rounds: _TenantRounds,
    interval_seconds: float,
) -> None:
    refused: dict[str, str] = {}  # tenant: the reason last logged, so a stopped tenant logs once
    while True:
        try:
            for tenant in sorted({*await tenants(), *flow.configured_tenants}):
                try:
                    await rounds.run(tenant, leased=tenant not in refused)
                except IdverifyError as error:
                    if isinstance(error, StoreUnavailable):
                        raise
                    await rounds.give_back(tenant)
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


class _TenantRounds:
    """One worker's rounds of a tenant: sequenced, then integrated, under its lease if leased."""

    def __init__(
        self,
        flow: AuditFlow,
        sequencer: StageSequencer | None,
        leases: IntegrationLeases | None,
        lease_ms: int,
    ) -> None:
        self._flow = flow
        self._sequencer = sequencer
        self._leases = leases
        self._lease_ms = lease_ms
        # The pid tells an operator (and a test) which process holds a lease; the random part
        # keeps two hosts' equal pids apart.
        self._token = f"{os.getpid()}:{secrets.token_hex(8)}"
        self._held: set[str] = set()

    async def run(self, tenant: str, *, leased: bool) -> None:
        """A round of ``tenant``; with ``leased``, only while this worker holds its lease."""
        if leased and self._leases is not None:
            if not await self._leases.hold(tenant, self._token, self._lease_ms):
                self._held.discard(tenant)
                return  # another worker integrates it
            self._held.add(tenant)
        if self._sequencer is not None:
            await self._sequencer.sequence(tenant)
        await self._flow.integrate(tenant)

    async def give_back(self, tenant: str) -> None:
        """Gives the tenant's lease back (if held), for a worker whose rounds it does not refuse."""
        if self._leases is not None:
            self._held.discard(tenant)
            await self._leases.give(tenant, self._token)

    async def give_back_all(self) -> None:
        """Gives back every lease this worker holds, as far as Redis answers (it is stopping)."""
        for tenant in sorted(self._held):
            with contextlib.suppress(Exception):  # an unanswered give ends with the lease's TTL
                await self.give_back(tenant)
