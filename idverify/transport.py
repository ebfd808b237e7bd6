"""The gRPC port's transport: server options, and TLS / mutual TLS with certificates reloaded live.

Certificate files are re-read when their modification time changes, checked at most once a
second on new handshakes, so a rotated certificate (cert-manager, a Kubernetes Secret update)
takes effect without a restart; connections already open keep their session.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from idverify.config import GrpcSettings, TlsSettings
from idverify.domain.errors import ConfigError

log = logging.getLogger("idverify.transport")
_CHECK_INTERVAL_SECONDS = 1.0


def server_options(settings: GrpcSettings, *, reuse_port: bool) -> list[tuple[str, Any]]:
    """Channel arguments of the server: message sizes, keepalive, port sharing."""
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", settings.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_seconds * 1000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
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
