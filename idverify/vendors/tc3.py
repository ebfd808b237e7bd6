# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0 (FaceID among them).

Written from Tencent Cloud's "Signature v3" page, published alike for every API 3.0 product
(https://www.tencentcloud.com/document/api/266/34114); the tests reproduce its worked example
(CVM DescribeInstances, timestamp 1551113065) byte for byte. Pure functions: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "ALGORITHM",
    "Tc3Signature",
    "canonical_headers",
    "canonical_request",
    "credential_scope",
    "parse_authorization",
    "sign",
    "signing_key",
    "string_to_sign",
]

ALGORITHM: Final = "TC3-HMAC-SHA256"
_TERMINATOR: Final = "tc3_request"
_AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<key_id>[^/]+)/(?P<scope>\d{4}-\d{2}-\d{2}/[a-z0-9-]+/tc3_request), "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class Tc3Signature:
    """Every intermediate value of one signature, so that a failing test shows where it differs.

    Attributes:
        canonical_request: step 1 of the algorithm.
        string_to_sign: step 2.
        signature: step 3, lowercase hex.
        authorization: step 4, the ``Authorization`` header value.
    """

    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The CanonicalHeaders and SignedHeaders strings of the headers to sign.

    Names and values are lower-cased and trimmed, and the entries sorted by name, as the page
    prescribes (so ``X-TC-Action: IdCardVerification`` signs as ``x-tc-action:idcardverification``).

    Args:
        headers: the headers to sign, at least ``content-type`` and ``host``.

    Returns:
        ``(canonical_headers, signed_headers)``.

    """
    entries = sorted((name.strip().lower(), value.strip().lower()) for name, value in headers.items())
    canonical = "".join(f"{name}:{value}\n" for name, value in entries)
    return canonical, ";".join(name for name, _ in entries)


def canonical_request(
    method: str, uri: str, query: str, headers: Mapping[str, str], payload: bytes
) -> tuple[str, str]:
    """Step 1: the canonical request, and the SignedHeaders value it names.

    Args:
        method: the HTTP method (POST for every call idverify makes).
        uri: the canonical URI, ``/`` for API 3.0.
        query: the URL-encoded query string, empty for POST.
        headers: the headers to sign.
        payload: the exact body bytes.

    Returns:
        ``(canonical_request, signed_headers)``.

    """
    canonical, signed = canonical_headers(headers)
    text = "\n".join((method.upper(), uri, query, canonical, signed, _sha256_hex(payload)))
    return text, signed


def credential_scope(timestamp: int, service: str) -> str:
    """``<UTC date>/<service>/tc3_request``: the date is UTC, never the local one."""
    day = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    return f"{day}/{service}/{_TERMINATOR}"


def string_to_sign(timestamp: int, scope: str, canonical: str) -> str:
    """Step 2: algorithm, timestamp, credential scope and the hashed canonical request."""
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{_sha256_hex(canonical.encode('utf-8'))}"


def signing_key(secret_key: str, day: str, service: str) -> bytes:
    """Step 3a: the key derived from the SecretKey for one UTC day and one service."""
    secret_date = _hmac(f"TC3{secret_key}".encode(), day)
    return _hmac(_hmac(secret_date, service), _TERMINATOR)


def sign(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    timestamp: int,
    headers: Mapping[str, str],
    payload: bytes,
    method: str = "POST",
    uri: str = "/",
    query: str = "",
) -> Tc3Signature:
    """Sign one request.

    Args:
        secret_id: the SecretId, named in the Authorization header.
        secret_key: the SecretKey; only its derived key touches the request.
        service: the product's service name (``faceid``).
        timestamp: the ``X-TC-Timestamp`` value, Unix seconds.
        headers: the headers to sign (``content-type``, ``host``, ``x-tc-action`` ...), exactly
            as sent.
        payload: the exact body bytes.
        method: the HTTP method.
        uri: the canonical URI.
        query: the canonical query string.

    Returns:
        The signature with its intermediate values.

    """
    canonical, signed = canonical_request(method, uri, query, headers, payload)
    scope = credential_scope(timestamp, service)
    to_sign = string_to_sign(timestamp, scope, canonical)
    key = signing_key(secret_key, scope.split("/", 1)[0], service)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return Tc3Signature(canonical, to_sign, signature, authorization)


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of a received ``Authorization`` header (for a verifying server)."""

    secret_id: str
    scope: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``Authorization`` header, or None when it is not a TC3 one."""
    match = _AUTHORIZATION.match(value)
    if match is None:
        return None
    return ParsedAuthorization(
        secret_id=match["key_id"],
        scope=match["scope"],
        signed_headers=tuple(match["signed"].split(";")),
        signature=match["signature"],
    )
