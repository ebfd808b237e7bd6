# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""SMS senders for the ``sms_otp`` verifier: a console sender for development and an HTTP gateway.

The HTTP gateway protocol, for operators writing the receiving end (which talks to the SMS
vendor):

* idverify sends ``POST <url>`` with ``Content-Type: application/json`` and the body
  ``{"to": "+8613800000000", "code": "123456", "template": "<template option>",
  "tenant": "<tenant>", "verification_id": "<hex id>"}`` (UTF-8, compact separators).
* ``X-Idverify-Timestamp`` holds the sending time in Unix seconds, and
  ``X-Idverify-Signature`` holds ``v1=<hex>``, where ``<hex>`` is the lowercase hex
  HMAC-SHA256, keyed with the shared secret, of ``<timestamp> + "." + <raw body bytes>``.
* The receiver recomputes the signature over the raw body as received (before parsing it),
  compares in constant time, and rejects timestamps more than five minutes away from its own
  clock, which stops replays of captured requests.
* Any 2xx status means "accepted for delivery"; anything else, or no answer within the
  timeouts, fails the step as UNAVAILABLE. idverify never retries by itself, because a request
  that timed out may still have been delivered; ``verification_id`` lets the receiver drop
  duplicates when the user asks for a new code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from idverify.domain.errors import ConfigError
from idverify.privacy.masking import mask_phone
from idverify.security.loopback import is_loopback_host
from idverify.verifiers.base import SendFailed

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "ConsoleSender", "HttpGatewaySender", "sign_request"]

TIMESTAMP_HEADER: Final = "X-Idverify-Timestamp"
SIGNATURE_HEADER: Final = "X-Idverify-Signature"
_SIGNATURE_VERSION: Final = "v1"
_MIN_SECRET_BYTES: Final = 32
_console_log = logging.getLogger("idverify.sms.console")


def sign_request(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return the ``X-Idverify-Signature`` value for a gateway request.

    Args:
        secret: the shared gateway secret.
        timestamp: the ``X-Idverify-Timestamp`` value (Unix seconds, decimal).
        body: the exact request body bytes.

    Returns:
        ``v1=`` followed by the lowercase hex HMAC-SHA256 of ``timestamp + "." + body``.

    """
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{_SIGNATURE_VERSION}={mac.hexdigest()}"


def _reject_unknown(kind: str, options: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{kind} SMS sender: unknown options {unknown}; known: {sorted(known)}")


class ConsoleSender:
    """Writes codes to the server log instead of sending them; for development only.

    The log line carries the masked phone, never the full number, so development logs stay
    shareable. It takes no options.

    Raises:
        ConfigError: options were given.

    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        _reject_unknown("console", options, set())

    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        """Log ``code`` with the masked phone at WARNING on ``idverify.sms.console``.

        Args:
            phone_e164: the destination, E.164.
            code: the one-time code.
            tenant: the verification's tenant (unused: the log line names the verification).
            verification_id: the verification the code belongs to.

        """
        del tenant
        # WARNING so that a development server run with default logging still shows the code.
        _console_log.warning(
            "console SMS sender: code %s for %s (verification %s)",
            code,
            mask_phone(phone_e164),
            verification_id,
        )


def _positive_number(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:  # noqa: PLR2004
        raise ConfigError(f"http SMS sender: {key!r} must be a number of seconds in (0, 60]")
    return float(value)


def _read_secret(options: Mapping[str, Any]) -> bytes:
    env_name = options.get("secret_env")
    file_name = options.get("secret_file")
    if (env_name is None) == (file_name is None):
        raise ConfigError("http SMS sender: set exactly one of 'secret_env' and 'secret_file'")
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise ConfigError("http SMS sender: 'secret_env' must name an environment variable")
        secret = os.environ.get(env_name, "").encode()
        source = f"environment variable {env_name}"
    else:
        if not isinstance(file_name, str) or not file_name:
            raise ConfigError("http SMS sender: 'secret_file' must be a path")
        try:
            # Editors and `echo` add a final newline that is not part of the secret.
            secret = Path(file_name).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"http SMS sender: cannot read secret file {file_name}: {exc.strerror}"
            ) from exc
        source = f"secret file {file_name}"
    if len(secret) < _MIN_SECRET_BYTES:
        raise ConfigError(f"http SMS sender: {source} must hold at least {_MIN_SECRET_BYTES} bytes")
    return secret


def _gateway_url(options: Mapping[str, Any]) -> httpx.URL:
    raw = options.get("url")
    if not isinstance(raw, str) or not raw:
        raise ConfigError("http SMS sender: 'url' is required")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"http SMS sender: 'url' is not a URL: {exc}") from exc
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError("http SMS sender: 'url' must be an absolute http(s) URL")
    allow_plain_http = options.get("allow_plain_http", False)
    if not isinstance(allow_plain_http, bool):
        raise ConfigError("http SMS sender: 'allow_plain_http' must be true or false")
    # Phone numbers and live codes cross this link; plain HTTP is only safe on the same host
    # (or on a network the operator vouches for explicitly).
    if url.scheme == "http" and not is_loopback_host(url.host) and not allow_plain_http:
        raise ConfigError("http SMS sender: 'url' must use https (or set allow_plain_http = true)")
    return url


class HttpGatewaySender:
    """Sends codes through an operator-run HTTP gateway, signing each request (see module doc).

    Options: ``url`` (required), exactly one of ``secret_env`` (name of an environment variable)
    and ``secret_file`` (path), both holding at least 32 bytes; ``template`` (default
    ``verification_code``); ``timeout_seconds`` (default 5) and ``connect_timeout_seconds``
    (default 2); ``max_connections`` (default 10); ``ca_file`` (PEM bundle for a private CA);
    ``allow_plain_http`` (default false; http is always allowed to loopback addresses).

    Connections are pooled and kept alive for the life of the sender; call :meth:`aclose` at
    shutdown.

    Raises:
        ConfigError: an option is missing, unknown or invalid, or the secret cannot be read.

    """

    _OPTIONS: Final = frozenset(
        {
            "url",
            "secret_env",
            "secret_file",
            "template",
            "timeout_seconds",
            "connect_timeout_seconds",
            "max_connections",
            "ca_file",
            "allow_plain_http",
        }
    )

    def __init__(self, options: Mapping[str, Any]) -> None:
        _reject_unknown("http", options, set(self._OPTIONS))
        self._url = _gateway_url(options)
        self._secret = _read_secret(options)
        template = options.get("template", "verification_code")
        if not isinstance(template, str) or not template:
            raise ConfigError("http SMS sender: 'template' must be a non-empty string")
        self._template = template
        max_connections = options.get("max_connections", 10)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError("http SMS sender: 'max_connections' must be a positive integer")
        timeout = httpx.Timeout(
            _positive_number(options, "timeout_seconds", 5.0),
            connect=_positive_number(options, "connect_timeout_seconds", 2.0),
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=self._tls_context(options.get("ca_file")),
            # Proxy variables in the server's environment must not reroute phone numbers.
            trust_env=False,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpGatewaySender(url={str(self._url)!r})"

    @staticmethod
    def _tls_context(ca_file: object) -> ssl.SSLContext | bool:
        if ca_file is None:
            return True
        if not isinstance(ca_file, str) or not ca_file:
            raise ConfigError("http SMS sender: 'ca_file' must be a path")
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"http SMS sender: cannot load CA bundle {ca_file}: {exc}") from exc

    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        """Post a signed request to the gateway.

        Args:
            phone_e164: the destination, E.164.
            code: the one-time code.
            tenant: the verification's tenant, for the gateway's routing and billing.
            verification_id: the verification the code belongs to.

        Raises:
            SendFailed: the gateway answered with a non-2xx status or could not be reached in
                time. The message never contains the phone number or the code.

        """
        payload = {
            "to": phone_e164,
            "code": code,
            "template": self._template,
            "tenant": tenant,
            "verification_id": verification_id,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_request(self._secret, timestamp, body),
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The type alone tells an operator what went wrong (timeout versus refused) and,
            # unlike a formatted message, can never echo request data into a log.
            raise SendFailed(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        if not response.is_success:
            raise SendFailed(f"SMS gateway answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()
