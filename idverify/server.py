"""Assembles and runs the grpc.aio server: store, keys, verifiers, servicers, health, reflection.

Start-up validates everything it can before listening (configuration, verifier plugins, the
non-biometric rule), so a bad deployment fails at once with a message instead of at the
first call. SIGTERM drains: in-flight calls finish within the grace period, new ones are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.sdk.trace.export import SpanExporter

from idverify import priority
from idverify.audit.published_heads import HeadsFileError
from idverify.audit.signing_key import load_signing_key
from idverify.audit.tile_volume import TileVolume
from idverify.audit.tree_state import TreeInTiles
from idverify.callbacks.links import EXTRAS_KEY as CALLBACK_LINKS
from idverify.callbacks.links import CallbackLinks
from idverify.config import Settings
from idverify.data_dir import DataDirLock, prepare_data_dir
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.domain.methods import check_non_biometric_coverage
from idverify.events.outbox import Outbox, trim_forever
from idverify.events.streams import EventStreams
from idverify.events.tail import OutboxTail
from idverify.flows import born_walked
from idverify.flows.account_export import AccountExportFlow
from idverify.flows.accounts import AccountFlow
from idverify.flows.audit import AuditFlow
from idverify.flows.audit_setup import build_audit_flow, integrate_forever
from idverify.flows.bucket_repair import BucketRepairer, repair_forever
from idverify.flows.context import FlowDeps
from idverify.flows.display_names import DisplayNameFlow
from idverify.flows.erasure import ErasureFlow, ErasureWorker
from idverify.flows.identity_check import IdentityCheckFlow
from idverify.flows.identity_mover import IdentityMover
from idverify.flows.incident import IncidentFlow
from idverify.flows.ip_locator import GEO_TABLE_CACHE, open_locator
from idverify.flows.key_check import check_signing_key, open_keyring, record_key_versions
from idverify.flows.keyring_watcher import KeyringWatcher, keyring_path
from idverify.flows.read_accounting import ReadLedger, close_minutes_forever
from idverify.flows.schema_version import ensure_schema
from idverify.flows.verification import VerificationFlow
from idverify.grpc_transport import calls_still_arriving, server_credentials, server_options
from idverify.observability import telemetry
from idverify.privacy.identity_index import Argon2Params, IdentityIndexer
from idverify.privacy.keyring import Keyring, LiveKeyring
from idverify.privacy.sealing import Sealer
from idverify.security.certificates import CertificatePrincipals
from idverify.security.clients import ClientRegistry
from idverify.security.rate_limits import LockoutAuditor, PrincipalLimiter, WindowLimiter
from idverify.services.account import AccountServicer
from idverify.services.admin import AdminServicer
from idverify.services.audit import AuditServicer
from idverify.services.call_budgets import CallBudgets, CallLimits
from idverify.services.consent import ConsentServicer
from idverify.services.events import EventServicer
from idverify.services.interceptor import ServiceInterceptor
from idverify.services.location_wire import encode_location
from idverify.services.reflection import enable_reflection
from idverify.services.request_info import RequestIdPseudonyms
from idverify.services.verification import VerificationServicer
from idverify.store.account_exports import RedisAccountExports
from idverify.store.accounts import RedisAccounts
from idverify.store.audit_logs import configured_audit_log, configured_tiles, refuse_trimmed_logs
from idverify.store.audit_stages import RedisAuditStages, stage_sequencer
from idverify.store.clients import RedisClientStore
from idverify.store.connection import (
    RedisClient,
    cannot_persist,
    close_client,
    connect,
    failures_as_unavailable,
)
from idverify.store.display_names import RedisDisplayNames
from idverify.store.embedded import RedisProcess
from idverify.store.erasures import RedisErasureStore
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.incident_reads import RedisIncidentStore
from idverify.store.integration_leases import RedisIntegrationLeases
from idverify.store.intent_repairs import RedisIntentRepairs
from idverify.store.key_checks import RedisKeyChecks
from idverify.store.keys import GlobalKeys
from idverify.store.outbox import RedisOutbox
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.read_records import RedisReadRecords
from idverify.store.schema_versions import RedisSchemaStore
from idverify.store.scripts import Scripts
from idverify.store.server_reports import RedisServerReports
from idverify.store.stream_leases import RedisStreamLeases
from idverify.store.topology import parse_redis_url
from idverify.store.verifications import redis_verification_flow
from idverify.store.webhook_deliveries import RedisDeliveryStore
from idverify.store.webhook_subscriptions import RedisSubscriptionStore
from idverify.v1 import (
    account_pb2,
    account_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    consent_pb2,
    consent_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from idverify.vendors.registry import EXTRAS_KEY, VendorRegistry
from idverify.verifiers.base import ChallengeVerifier, JudgedChallengeVerifier, Verifier, VerifierDeps
from idverify.verifiers.registry import build_verifier, load_sms_sender, load_verifier_factories
from idverify.webhooks.delivery import WebhookDispatcher
from idverify.webhooks.subscriptions import Subscriptions

if TYPE_CHECKING:
    from idverify.console.charts import Charts
    from idverify.console.server import RunningSite
    from idverify.console.sessions import ConsoleSessions

log = logging.getLogger("idverify.server")

SERVICE_NAMES = (
    verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].full_name,
    account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)
HEALTH_PROBE_SECONDS = 1.0
# The services that cannot answer without writing: a Redis at its memory limit (noeviction)
# refuses their writes, while AuditService, a reader, and the overall health go on serving.
WRITE_SERVICE_NAMES = tuple(name for name in SERVICE_NAMES if not name.endswith(".AuditService"))
# Overwritten in place each probe, so the probe itself never grows the store; it expires ten
# probes after the last one, so a stopped server leaves nothing behind.
WRITE_PROBE_KEY = f"{GlobalKeys.BASE}:health:write-probe"
BOOTSTRAP_TOKEN_FILE = "bootstrap-token"  # noqa: S105 - a file name


def _callback_links(settings: Settings, keyring: Keyring) -> dict[str, CallbackLinks]:
    """The callback links for vendor-run steps, when the callback endpoint is on."""
    if not settings.callbacks_enabled:
        return {}
    return {CALLBACK_LINKS: CallbackLinks(settings.callbacks.public_url, keyring)}


def build_verifiers(settings: Settings, keyring: Keyring) -> dict[str, Verifier]:
    """Loads and builds every verifier the configured methods use, and checks the method rules.

    Raises:
        ConfigError: on an unknown or broken plugin, a challenge step that is not last, or a
            subject kind left with only biometric methods.
    """
    names = sorted({step for table in settings.tenants.values() for m in table.methods for step in m.steps})
    factories = load_verifier_factories(names)
    deps = VerifierDeps(
        keyed=keyring,
        sms_sender=load_sms_sender(settings.sms.sender, settings.sms.options),
        # Vendor verifiers lease their vendor here: one pool, budget and breaker per vendor.
        extras={EXTRAS_KEY: VendorRegistry(settings.vendors), **_callback_links(settings, keyring)},
    )
    verifiers = {
        name: build_verifier(name, factory, settings.verifiers.get(name, {}), deps)
        for name, factory in factories.items()
    }
    biometric = [name for name, v in verifiers.items() if v.biometric]
    for table in settings.tenants.values():
        check_non_biometric_coverage(table, biometric)
        for method in table.methods:
            for step in method.steps[:-1]:
                if isinstance(verifiers[step], ChallengeVerifier | JudgedChallengeVerifier):
                    raise ConfigError(
                        f"tenants.{table.tenant}.methods.{method.id}: "
                        f"challenge step {step!r} must be the last step"
                    )
    return verifiers


@dataclass
class Application:
    """Everything a running server owns, for orderly shutdown."""

    settings: Settings
    redis: RedisClient
    scripts: Scripts
    clients: ClientRegistry
    indexer: IdentityIndexer
    health: HealthServicer
    server: grpc.aio.Server
    port: int
    embedded: RedisProcess | None = None
    telemetry: telemetry.Telemetry | None = None
    data_lock: DataDirLock | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    verifiers: Mapping[str, Verifier] = field(default_factory=dict)
    console: RunningSite | None = None
    callbacks: RunningSite | None = None
    webhooks: WebhookDispatcher | None = None
    tiles: TileVolume | None = None


def _redis_kind(settings: Settings, url: str) -> str:
    """Which Redis a server uses, for its start-up line: embedded or external.

    A worker reaches the embedded server its supervisor started by URL, so the URL decides.
    """
    return "embedded" if url == RedisProcess.of_data_dir(settings.data_dir).url else "external"


async def ensure_bootstrap_token(clients: ClientRegistry, data_dir: Path) -> str | None:
    """Creates the bootstrap client on first start; returns its token, or None if it exists.

    The token is written to ``<data_dir>/bootstrap-token`` (mode 0600) and returned to be shown
    once on a terminal; only its keyed hash is stored (:meth:`ClientRegistry.create_bootstrap`).
    """
    token = await clients.create_bootstrap()
    if token is None:
        return None
    path = data_dir / BOOTSTRAP_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token


def announce_bootstrap_token(token: str, data_dir: Path) -> None:
    """Says where the new bootstrap token is; shows the token itself only on a terminal.

    Logs are collected, shipped and kept (the JSON format included): a token there outlives
    any care taken with the 0600 file, so the log line names the file, never the token.
    """
    path = data_dir / BOOTSTRAP_TOKEN_FILE
    log.warning(
        "bootstrap token created in %s: it may create operator and admin clients until an operator exists",
        path,
    )
    if sys.stderr.isatty():
        print(  # noqa: T201 - shown once, by design, to the operator's terminal only
            f"idverify: bootstrap token (shown once; a copy is in {path}):\n  {token}",
            file=sys.stderr,
            flush=True,
        )


async def _redis_url(settings: Settings) -> tuple[str, RedisProcess | None, DataDirLock | None]:
    """The configured Redis, else the embedded one started here, on a data directory locked here.

    A worker's supervisor holds the data directory and passes the URL of the embedded Redis it
    started; a server that starts that Redis itself (in-process: tests, benchmarks) holds the
    directory for its life, as a supervisor does.
    """
    if settings.redis_url:
        return settings.redis_url, None, None
    data_lock = DataDirLock.acquire(settings.data_dir)
    embedded = RedisProcess.of_data_dir(settings.data_dir)
    await asyncio.to_thread(embedded.start)
    return embedded.url, embedded, data_lock


async def _release_store(
    redis: RedisClient, embedded: RedisProcess | None, data_lock: DataDirLock | None
) -> None:
    """Lets go of the store when start-up fails after reaching it (nothing may outlive a refusal)."""
    await close_client(redis)
    if embedded is not None:
        await asyncio.to_thread(embedded.stop)
    if data_lock is not None:
        data_lock.release()


async def _check_store(
    settings: Settings, redis: RedisClient, new_logs_walked: bool | None
) -> tuple[LiveKeyring, bool]:
    """The keyring, once the store's schema version is recorded and the keys checked against it.

    A schema newer than this release's is refused before anything is written or generated; then
    a lost keyring or signing key is refused. One live keyring serves every component, so a new
    key version in the file reaches them all. Also whether new logs are born walked: the
    supervisor's answer, ``new_logs_walked``, else the store's mark (``flows.born_walked``).

    Raises:
        ConfigError: a key does not open the store, or its schema is newer than this release's.
    """
    checks = RedisKeyChecks(redis)
    await ensure_schema(RedisSchemaStore(redis), checks, RedisServerReports(redis))
    keyring = LiveKeyring(await open_keyring(settings, checks))
    await check_signing_key(settings, checks)
    if new_logs_walked is None:
        new_logs_walked = await born_walked.new_logs_walked(RedisSchemaStore(redis))
    return keyring, new_logs_walked


async def start(
    settings: Settings,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    reuse_port: bool = False,
    new_logs_walked: bool | None = None,
) -> Application:
    """Builds everything and starts listening (sharing the port with ``reuse_port``: workers).

    ``new_logs_walked`` is the supervisor's answer for its workers (``flows.born_walked``); without
    it, this process reads the store's mark itself.

    Raises:
        ConfigError: on invalid configuration or plugins, or an unusable data directory.
        DataDirInUse: when it would start the embedded Redis on a data directory in use.
        RuntimeError: when the embedded Redis cannot start or the port cannot be bound.
    """
    prepare_data_dir(settings.data_dir)
    installed_telemetry = telemetry.configure(settings.telemetry, span_exporters)
    url, embedded, data_lock = await _redis_url(settings)
    redis = connect(url)
    try:
        keyring, walked = await _check_store(settings, redis, new_logs_walked)
        verifiers = build_verifiers(settings, keyring)
        priority.set_background_niceness(settings.argon2.niceness)
        geo = open_locator(
            settings.geo,
            table_cache=settings.data_dir / GEO_TABLE_CACHE,
            call_limit_seconds=settings.grpc.rpc_timeout_seconds,
        )
    except BaseException:
        await _release_store(redis, embedded, data_lock)
        raise
    scripts = Scripts(redis, ack=parse_redis_url(url).ack, share_connection=True, new_logs_walked=walked)
    clients = ClientRegistry(
        RedisClientStore(redis, scripts), keyring, cache_seconds=settings.token_cache_seconds
    )
    params = Argon2Params.from_config(
        memory_kib=settings.argon2.memory_kib,
        time_cost=settings.argon2.time_cost,
        parallelism=settings.argon2.parallelism,
    )
    indexer = IdentityIndexer(
        keyring, params, max_workers=settings.argon2.threads or None, niceness=settings.argon2.niceness
    )
    deps = FlowDeps(
        settings=settings,
        keyring=keyring,
        sealer=Sealer(keyring),
        indexer=indexer,
        verifiers=verifiers,
        window_limiter=WindowLimiter(RedisRateWindows(scripts)),
    )
    flow = redis_verification_flow(deps, redis, scripts)
    reads = ReadLedger(
        RedisReadRecords(redis, scripts),
        keyring,
        settings.reads.retention_days,
        summary_delay_seconds=settings.reads.summary_delay_seconds,
    )
    # One tile volume for the worker: a bucket's client (its connections) is shared, and closed by stop().
    audit = await _audit_flow(settings, redis, scripts, keyring, tiles := configured_tiles(settings))
    try:
        async with failures_as_unavailable():
            token = await ensure_bootstrap_token(clients, settings.data_dir)
    except (OSError, StoreUnavailable):
        # An external Redis may come up after us: the health watcher retries the bootstrap.
        log.warning("redis not reachable at start-up; bootstrap token not checked yet")
        token = None
    if token:
        announce_bootstrap_token(token, settings.data_dir)
    interceptor = ServiceInterceptor(
        clients,
        PrincipalLimiter(settings.rate_limits.per_principal_per_minute),
        lockouts=LockoutAuditor(RedisRateWindows(scripts)),
        certificates=CertificatePrincipals(dict(settings.tls.client_principals)),
        rpc_timeout_seconds=settings.grpc.rpc_timeout_seconds,
        budgets=CallBudgets(call_limits(settings)),
    )
    server = grpc.aio.server(
        interceptors=[interceptor],
        # Every share, a margin, and every call whose message may still be arriving: the shares,
        # counted by the interceptor, refuse first, and slow senders cannot fill it.
        maximum_concurrent_rpcs=interceptor.budgets.limits.grpc_limit + calls_still_arriving(settings.grpc),
        options=server_options(settings.grpc, reuse_port=reuse_port),
    )
    streams, outbox, tail = _event_services(server, deps, reads, redis, scripts, tiles=tiles)
    webhooks = Subscriptions(
        RedisSubscriptionStore(redis, scripts),
        deps.sealer,
        outbox,
        settings.webhooks,
        development=settings.development,
    )
    _add_data_services(
        server,
        deps,
        flow,
        audit,
        reads,
        redis=redis,
        scripts=scripts,
        accounts=AccountFlow(
            RedisAccounts(redis, scripts, settings.reads.retention_days),
            keyring=deps.keyring,
            sealer=deps.sealer,
            locator=geo,
            encode_label=encode_location,
            today=deps.today,
        ),
        streams=streams,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            clients,
            IncidentFlow(RedisIncidentStore(redis, scripts), audit, _report_key(settings), settings.incident),
            DisplayNameFlow(RedisDisplayNames(scripts), keyring=deps.keyring, settings=deps.settings),
            webhooks,
        ),
        server,
    )
    dispatcher = WebhookDispatcher(
        webhooks,
        outbox,
        tail,
        RedisDeliveryStore(scripts, log=configured_audit_log(redis, scripts, tiles)),
        clients.tenants,
        settings=settings.webhooks,
        development=settings.development,
    )
    health = _health_and_reflection(server, settings)
    host, port = settings.listen_host_port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if settings.tls.enabled:
        bound = server.add_secure_port(address, server_credentials(settings.tls))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"cannot listen on {settings.listen}")
    await server.start()
    app = Application(
        settings,
        redis,
        scripts,
        clients,
        indexer,
        health,
        server,
        bound,
        embedded,
        installed_telemetry,
        data_lock,
        verifiers=verifiers,
        webhooks=dispatcher,
        console=await _start_console(
            settings,
            audit,
            redis,
            scripts,
            clients,
            reads=reads,
            reuse_port=reuse_port,
            server=server,
            tiles=tiles,
        ),
        tiles=tiles,
    )
    app.callbacks = await _start_callbacks(settings, flow, keyring, reuse_port=reuse_port, app=app)
    app.tasks += [
        asyncio.create_task(_watch_redis(app, token is None)),
        asyncio.create_task(
            integrate_forever(
                audit,
                clients.tenants,
                interval_seconds=settings.audit_integration_interval_seconds,
                sequencer=stage_sequencer(redis, scripts, settings.audit_stage_buckets),
                leases=RedisIntegrationLeases(scripts),
            )
        ),
        # Beside it, the repairer of step sequences left half done (a Cluster's cancellations),
        # in every tenant that has had one (a cancellation names its tenant there first).
        asyncio.create_task(
            repair_forever(
                BucketRepairer(RedisIntentRepairs(redis, scripts, pointing=_mover(deps, redis, scripts))),
                RedisErasureStore(redis, scripts).tenants,
            )
        ),
        asyncio.create_task(
            close_minutes_forever(
                reads, clients.tenants, interval_seconds=settings.reads.close_interval_seconds
            )
        ),
        *_lifecycle_tasks(settings, keyring, redis, _erasure_flow(deps, redis, scripts)),
        asyncio.create_task(
            trim_forever(RedisOutbox(redis, scripts), clients.tenants, settings.events.retention_days)
        ),
        asyncio.create_task(dispatcher.run()),
    ]
    log.info("idverify listening on %s:%d (redis: %s)", host, bound, _redis_kind(settings, url))
    return app


def _console_reads(
    settings: Settings,
    redis: RedisClient,
    scripts: Scripts,
    clients: ClientRegistry,
    tiles: TileVolume | None,
) -> tuple[Charts, ConsoleSessions]:
    """The console's charts and sessions over the store behind ``redis`` (imported only when it is on)."""
    # Imported here: the console's modules load only when it is on (start-up time).
    from idverify.console.charts import Charts  # noqa: PLC0415
    from idverify.console.sessions import ConsoleSessions  # noqa: PLC0415
    from idverify.store.console_sessions import RedisConsoleSessions  # noqa: PLC0415

    # The log as configured: with tiles, a trimmed log's older entries and times are in them.
    log = configured_audit_log(redis, scripts, tiles)
    charts = Charts(log, log, RedisErasureStore(redis, scripts))
    sessions = ConsoleSessions(
        RedisConsoleSessions(redis, scripts), clients, settings.console.session_seconds
    )
    return charts, sessions


async def _start_console(
    settings: Settings,
    audit: AuditFlow,
    redis: RedisClient,
    scripts: Scripts,
    clients: ClientRegistry,
    *,
    reads: ReadLedger,
    reuse_port: bool,
    server: grpc.aio.Server,
    tiles: TileVolume | None,
) -> RunningSite | None:
    """The auditor's console when it is on (aiohttp is imported only then: start-up time).

    Raises:
        RuntimeError: when its port cannot be bound and it was asked for (the gRPC server is
            stopped first); development mode's own console is left out with a warning instead.
    """
    if not settings.console_enabled:
        return None
    from idverify.console.server import start_console  # noqa: PLC0415 - only when the console is on

    charts, sessions = _console_reads(settings, redis, scripts, clients, tiles)
    try:
        console = await start_console(
            settings, audit, charts, sessions, clients, reads=reads, reuse_port=reuse_port
        )
    except RuntimeError as busy:
        if settings.console.enabled.lower() == "auto":
            # Development mode's own console gives way (a second server on the machine).
            log.warning("auditor's console left out: %s (set console.listen)", busy)
            return None
        await server.stop(None)
        raise
    except BaseException:
        await server.stop(None)
        raise
    log.info("auditor's console on %s", console.url)
    return console


async def _start_callbacks(
    settings: Settings, flow: VerificationFlow, keyring: Keyring, *, reuse_port: bool, app: Application
) -> RunningSite | None:
    """The vendor callback endpoint when ``callbacks.listen`` is set (aiohttp imported only then).

    Raises:
        RuntimeError: when its port cannot be bound (the gRPC server and console are stopped first).
    """
    if not settings.callbacks_enabled:
        return None
    from idverify.callbacks.server import start_callbacks  # noqa: PLC0415 - only when callbacks are on

    links = CallbackLinks(settings.callbacks.public_url, keyring)
    try:
        callbacks = await start_callbacks(settings, flow, links, reuse_port=reuse_port)
    except BaseException:
        await app.server.stop(None)
        if app.console is not None:
            await app.console.stop()
        raise
    log.info("vendor callbacks on %s (vendors call %s)", callbacks.url, settings.callbacks.public_url)
    return callbacks


def _add_data_services(
    server: grpc.aio.Server,
    deps: FlowDeps,
    flow: VerificationFlow,
    audit: AuditFlow,
    reads: ReadLedger,
    *,
    redis: RedisClient,
    scripts: Scripts,
    accounts: AccountFlow,
    streams: EventStreams,
) -> None:
    """The services that read and change the tenants' data, each recording its reads in ``reads``."""
    verification_pb2_grpc.add_VerificationServiceServicer_to_server(
        VerificationServicer(
            flow,
            IdentityCheckFlow(
                RedisIdentityChecks(redis, scripts),
                keyring=deps.keyring,
                sealer=deps.sealer,
                indexer=deps.indexer,
                limits=deps.settings.rate_limits,
            ),
            RequestIdPseudonyms(deps.keyring),
            streams,
            reads,
        ),
        server,
    )
    account_pb2_grpc.add_AccountServiceServicer_to_server(
        AccountServicer(
            accounts,
            _erasure_flow(deps, redis, scripts),
            AccountExportFlow(
                RedisAccountExports(redis, scripts), deps.keyring, accounts, flow.consent, audit
            ),
            reads,
            consent_cooldown_ms=flow.consent.cooldown_ms,
            display_names=DisplayNameFlow(
                RedisDisplayNames(scripts), keyring=deps.keyring, settings=deps.settings
            ),
        ),
        server,
    )
    consent_pb2_grpc.add_ConsentServiceServicer_to_server(
        ConsentServicer(flow.consent, flow.guardians, reads), server
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(audit, reads), server)


async def _audit_flow(
    settings: Settings, redis: RedisClient, scripts: Scripts, keyring: Keyring, tiles: TileVolume | None
) -> AuditFlow:
    """The audit flow, its logs compared with their published heads before anything is appended.

    A log found behind then says exactly which entries it lost (``idverify.audit.rollback``);
    reads and verifications are served all the same.

    Raises:
        ConfigError: when the signing key cannot be read or the heads file is damaged.
    """
    audit_log = configured_audit_log(redis, scripts, tiles)
    audit = build_audit_flow(settings, audit_log, keyring, stages=RedisAuditStages(redis, scripts))
    try:
        await refuse_trimmed_logs(redis, tiles)
        await audit.find_rollbacks()
    except StoreUnavailable:
        log.warning("redis not reachable at start-up; the audit logs are compared with their heads later")
    except (HeadsFileError, TreeInTiles) as error:
        # A log kept in tiles, found here without audit_tiles_dir or _url, stops start-up in one line;
        # one found later is refused per request (FAILED_PRECONDITION, AUDIT_TILES_REQUIRED).
        raise ConfigError(str(error)) from None
    return audit


def _report_key(settings: Settings) -> Ed25519PrivateKey:
    """The audit log's signing key, which signs incident reports too (checked against the store at start)."""
    return load_signing_key(settings.data_dir, settings.audit_signing_key_file)


def _health_and_reflection(server: grpc.aio.Server, settings: Settings) -> HealthServicer:
    """The health service on ``server``, and reflection unless switched off."""
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.grpc.reflection:
        enable_reflection((*SERVICE_NAMES, "grpc.health.v1.Health"), server)
    return health


def _event_services(
    server: grpc.aio.Server,
    deps: FlowDeps,
    reads: ReadLedger,
    redis: RedisClient,
    scripts: Scripts,
    *,
    tiles: TileVolume | None,
) -> tuple[EventStreams, Outbox, OutboxTail]:
    """EventService on ``server``; the streams it shares with WatchVerification, their outbox and tail."""
    # The log as configured: a trimmed log's older entries are in its tiles.
    audit_log = configured_audit_log(redis, scripts, tiles)
    outbox = Outbox(RedisOutbox(redis, scripts, log=audit_log), deps.sealer)
    settings = deps.settings.events
    tail = OutboxTail(outbox, settings.poll_milliseconds / 1000)
    streams = EventStreams(outbox, tail, RedisStreamLeases(scripts), settings)
    events_pb2_grpc.add_EventServiceServicer_to_server(EventServicer(streams, reads), server)
    return streams, outbox, tail


def call_limits(settings: Settings) -> CallLimits:
    """The shares of calls in progress a worker admits, from ``max_concurrent_rpcs`` and ``grpc``."""
    return CallLimits(
        authenticated=settings.max_concurrent_rpcs,
        public_streams_per_connection=settings.grpc.public_streams_per_connection,
        public_streams=settings.grpc.public_streams_per_worker,
        public_stream_lifetime_seconds=settings.grpc.public_stream_lifetime_seconds,
        health_checks=settings.grpc.health_checks_per_worker,
    )


def _mover(deps: FlowDeps, redis: RedisClient, scripts: Scripts) -> IdentityMover:
    """Where a moved identity lives now, for the repairer of a binding whose identity moved."""
    return IdentityMover(RedisIdentityRecords(redis, scripts), deps.sealer)


def _erasure_flow(deps: FlowDeps, redis: RedisClient, scripts: Scripts) -> ErasureFlow:
    """Cancellation and erasure over the store's erasure queue."""
    return ErasureFlow(RedisErasureStore(redis, scripts), deps.settings.erasure, deps.keyring, deps.sealer)


def _lifecycle_tasks(
    settings: Settings, keyring: LiveKeyring, redis: RedisClient, erasure: ErasureFlow
) -> list[asyncio.Task[None]]:
    """The keyring file watcher and, unless switched off, the erasure worker."""
    path = keyring_path(settings)
    checks = RedisKeyChecks(redis)
    watcher = KeyringWatcher(
        keyring,
        path,
        RedisServerReports(redis),
        settings.keyring_reload_seconds,
        record=lambda candidate: record_key_versions(checks, candidate, f"keyring file {path}"),
    )
    tasks = [asyncio.create_task(watcher.run())]
    if settings.erasure.worker:
        tasks.append(asyncio.create_task(ErasureWorker(erasure, settings.erasure.poll_seconds).run()))
    return tasks


async def _probe_redis(redis: RedisClient) -> tuple[bool, bool]:
    """Whether Redis answers, and whether it takes a write (a full one refuses with OOM)."""
    try:
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
        # lands as the ping completes, and the watcher would then outlive stop().
        async with asyncio.timeout(HEALTH_PROBE_SECONDS):
            await redis.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to answer means not serving
        if not cannot_persist(exc):  # a Redis that cannot write its disk refuses PING, yet reads
            return False, False
    try:
        async with asyncio.timeout(HEALTH_PROBE_SECONDS):
            await redis.set(WRITE_PROBE_KEY, b"1", px=int(HEALTH_PROBE_SECONDS * 10_000))
    except Exception:  # noqa: BLE001 - any refused write means the writers are not serving
        return True, False
    return True, True


async def _watch_redis(app: Application, bootstrap_pending: bool) -> None:
    """Keeps gRPC health in step with Redis: reachable for all, writable for the writers."""
    serving: tuple[bool, bool] | None = None  # (reachable, writable) as last published
    while True:
        now_serving = await _probe_redis(app.redis)
        if now_serving != serving:
            reachable, writable = now_serving
            for name in ("", *SERVICE_NAMES):
                up = writable if name in WRITE_SERVICE_NAMES else reachable
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if up
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await app.health.set(name, status)
            if serving is not None:
                log.warning(
                    "redis is %s",
                    "unreachable" if not reachable else "taking writes" if writable else "refusing writes",
                )
            serving = now_serving
        if all(now_serving) and bootstrap_pending:
            token = await ensure_bootstrap_token(app.clients, app.settings.data_dir)
            bootstrap_pending = False
            if token:
                announce_bootstrap_token(token, app.settings.data_dir)
        await asyncio.sleep(HEALTH_PROBE_SECONDS)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancels a background task and waits for its end, cancelling again if one was swallowed.

    A library call that completes just as the cancellation arrives may return instead of
    raising it; a loop around such a call would then run on, and a plain ``await task`` with it.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a background task had failed before shutdown: %s", type(task.exception()).__name__)


async def stop(app: Application) -> None:
    """Drains and releases everything: calls in flight finish within the grace period."""
    await app.health.enter_graceful_shutdown()
    if app.console is not None:
        await app.console.stop()
    if app.callbacks is not None:
        await app.callbacks.stop()
    await app.server.stop(app.settings.grace_seconds)
    for task in app.tasks:
        await _cancelled(task)
    if app.webhooks is not None:
        await app.webhooks.aclose()  # gives its leases back: another worker goes on at once
    # Optional: verifiers holding connections, a bucket's client (a directory holds nothing).
    for holder in [*app.verifiers.values(), app.tiles]:
        close = getattr(holder, "aclose", None)
        if close is not None:
            await close()
    await app.scripts.aclose()
    await close_client(app.redis)
    app.indexer.close()
    if app.telemetry is not None:
        app.telemetry.shutdown()
    if app.embedded is not None:
        await asyncio.to_thread(app.embedded.stop)
    if app.data_lock is not None:
        app.data_lock.release()


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, span_exporters: Sequence[SpanExporter] = ()
) -> AsyncIterator[Application]:
    """Starts a server for the duration of a block (tests, benchmarks)."""
    app = await start(settings, span_exporters=span_exporters)
    try:
        yield app
    finally:
        await stop(app)


def freeze_heap() -> None:
    """Moves what start-up allocated out of the garbage collector's reach, once serving.

    A full collection walks every object the process holds (tens of thousands after start-up) in
    whichever event-loop callback happens to allocate the one too many, so a call that arrived
    meanwhile waits for it: under a signup load it was the longest callback left
    (``bench/verify.py --rate --loop-callbacks``; docs/PERFORMANCE.md). Start-up's objects live as long as
    the process; frozen, later collections walk only what calls allocate. Not in :func:`start`,
    which tests call over and over in one process: frozen garbage would never be freed.
    """
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then drains."""
    app = await start(settings)
    freeze_heap()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("draining (grace %.0fs)", settings.grace_seconds)
    await stop(app)
    log.info("stopped")
