"""The gRPC port's transport: server options, and TLS / mutual TLS with certificates reloaded live.

Certificate files are re-read when their modification time changes, checked at most once a
second on new handshakes, so a rotated certificate (cert-manager, a Kubernetes Secret update)
takes effect without a restart; connections already open keep their session.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from idverify.config import GrpcSettings, TlsSettings
from idverify.domain.errors import ConfigError

# The logger keeps the name it had before the module was renamed: log filters select it.
log = logging.getLogger("idverify.transport")
_CHECK_INTERVAL_SECONDS = 1.0
# Calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client with
# more in flight waits for a stream or opens another connection. 100 is RFC 9113's recommended
# minimum: gRPC's C-core clients do not wait for a stream reliably (a fresh channel firing 200
# calls had up to 79 refused, UNAVAILABLE, at 32; and 1-2 of 64), so an honest client with up to
# ~90 calls in flight on one channel must never come near it.
STREAMS_PER_CONNECTION = 100
# A connection must finish its TLS handshake and HTTP/2 preface within this long.
HANDSHAKE_SECONDS = 10
# A connection without calls for this long is sent GOAWAY; clients reconnect when next needed.
IDLE_CONNECTION_SECONDS = 300
# Client pings on a connection without calls come at most this often; more are strikes, and
# a client with too many strikes is sent GOAWAY.
MIN_CLIENT_PING_SECONDS = 10
PING_STRIKES = 2


def calls_still_arriving(settings: GrpcSettings) -> int:
    """The most calls one worker can hold whose request message has not arrived yet.

    gRPC starts a call when its headers arrive and counts it in its own concurrency limit from
    then, before any share of the interceptor can (the message it needs is still missing): a
    client sending headers only on many streams once filled that limit and starved every other
    caller. The streams of every connection a worker accepts fit under the limit instead; the
    connection age ends such calls (see ``server_options``).
    """
    return settings.max_connections_per_worker * STREAMS_PER_CONNECTION


def server_options(settings: GrpcSettings, *, reuse_port: bool) -> list[tuple[str, Any]]:
    """Channel arguments of the server: message sizes, keepalive, connection bounds, port sharing."""
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", settings.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_seconds * 1000),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_SECONDS * 1000),
        ("grpc.http2.max_ping_strikes", PING_STRIKES),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_concurrent_streams", STREAMS_PER_CONNECTION),
        ("grpc.max_allowed_incoming_connections", settings.max_connections_per_worker),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_SECONDS * 1000),
        ("grpc.max_connection_idle_ms", IDLE_CONNECTION_SECONDS * 1000),
        ("grpc.max_connection_age_ms", settings.max_connection_age_seconds * 1000),
        # Calls in flight at GOAWAY may finish (none runs longer than the RPC timeout); then the
        # connection closes, with any call whose message never came.
        ("grpc.max_connection_age_grace_ms", math.ceil(settings.rpc_timeout_seconds * 1000)),
    ]


class ReloadingCertificates:
    """Serves the current certificate configuration, re-reading the files when they change."""

    def __init__(self, settings: TlsSettings) -> None:
        self._paths = [Path(p) for p in (settings.cert_file, settings.key_file, settings.client_ca_file) if p]
        self._settings = settings
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamps = self._mtimes()
        self.initial = self._load()

    def _mtimes(self) -> tuple[float, ...]:
        try:
            return tuple(path.stat().st_mtime_ns for path in self._paths)
        except OSError as exc:
            raise ConfigError(f"tls: cannot read {exc.filename}") from exc

    def _load(self) -> Any:
        try:
            chain = Path(self._settings.cert_file).read_bytes()
            key = Path(self._settings.key_file).read_bytes()
            root = Path(self._settings.client_ca_file).read_bytes() if self._settings.client_ca_file else None
        except OSError as exc:
            raise ConfigError(f"tls: cannot read {exc.filename}") from exc
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=root)

    def fetch(self) -> Any:
        """Called by gRPC on handshakes: a new configuration when the files changed, else None."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < _CHECK_INTERVAL_SECONDS:
                return None
            self._checked = now
            try:
                stamps = self._mtimes()
                if stamps == self._stamps:
                    return None
                configuration = self._load()
            except ConfigError:
                log.exception("tls: keeping the current certificate; the new files cannot be read")
                return None
            self._stamps = stamps
            log.info("tls: certificate files changed; new handshakes use them")
            return configuration


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials (mutual when a client CA is configured) that follow file changes.

    Raises:
        ConfigError: when the files cannot be read.
    """
    certificates = ReloadingCertificates(settings)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial,
        certificates.fetch,
        require_client_authentication=bool(settings.client_ca_file),
    )
