# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""ACS3-HMAC-SHA256, the V3 request signature of Alibaba Cloud OpenAPI (Cloudauth among them).

Written from Alibaba Cloud's "V3 request structure and signature" page
(https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature; English:
https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature);
the tests reproduce its worked example (ECS RunInstances, 2023-10-26T10:22:32Z) byte for byte.
Pure functions: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

__all__ = [
    "ALGORITHM",
    "Acs3Signature",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "form_body",
    "parse_authorization",
    "percent_encode",
    "sign",
    "string_to_sign",
]

ALGORITHM: Final = "ACS3-HMAC-SHA256"
_AUTHORIZATION = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<key_id>[^,]+),SignedHeaders=(?P<signed>[a-z0-9;-]+),"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class Acs3Signature:
    """Every intermediate value of one signature.

    Attributes:
        canonical_request: step 1.
        string_to_sign: step 2.
        signature: step 3, lowercase hex.
        authorization: step 4, the ``Authorization`` header value.
    """

    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def percent_encode(value: str) -> str:
    """RFC 3986 encoding over UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay as they are.

    This is the page's rule (space as ``%20``, ``*`` as ``%2A``, ``~`` kept), the same for
    path segments, query names and values, and form bodies.
    """
    return quote(value, safe="-_.~", encoding="utf-8")


def canonical_query(params: Sequence[tuple[str, str]]) -> str:
    """The CanonicalQueryString: encoded pairs sorted by encoded name (then value), joined by ``&``."""
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def form_body(params: Mapping[str, str]) -> bytes:
    """An ``application/x-www-form-urlencoded`` body with the page's encoding, in sorted order."""
    return canonical_query(list(params.items())).encode("ascii")


def _is_signed(name: str) -> bool:
    return name in {"host", "content-type"} or name.startswith("x-acs-")


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """CanonicalHeaders and SignedHeaders: ``host``, ``content-type`` and every ``x-acs-*`` header.

    Names are lower-cased and sorted, values trimmed (not lower-cased, unlike TC3).

    Returns:
        ``(canonical_headers, signed_headers)``.

    """
    entries = sorted(
        (name.strip().lower(), value.strip())
        for name, value in headers.items()
        if _is_signed(name.strip().lower())
    )
    canonical = "".join(f"{name}:{value}\n" for name, value in entries)
    return canonical, ";".join(name for name, _ in entries)


def _canonical_uri(path: str) -> str:
    return "/".join(percent_encode(segment) for segment in path.split("/")) or "/"


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], hashed_payload: str
) -> tuple[str, str]:
    """Step 1: the canonical request, and the SignedHeaders value it names.

    Args:
        method: the HTTP method, upper case.
        path: the resource path, ``/`` for RPC-style APIs such as Cloudauth.
        query: query parameters (name, value), unencoded.
        headers: every header of the request; the signed ones are picked here.
        hashed_payload: the ``x-acs-content-sha256`` value (hex SHA-256 of the body).

    Returns:
        ``(canonical_request, signed_headers)``.

    """
    canonical, signed = canonical_headers(headers)
    text = "\n".join(
        (method.upper(), _canonical_uri(path), canonical_query(query), canonical, signed, hashed_payload)
    )
    return text, signed


def string_to_sign(canonical: str) -> str:
    """Step 2: the algorithm and the hex SHA-256 of the canonical request."""
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def sign(
    *,
    access_key_id: str,
    access_key_secret: str,
    headers: Mapping[str, str],
    method: str = "POST",
    path: str = "/",
    query: Sequence[tuple[str, str]] = (),
) -> Acs3Signature:
    """Sign one request whose headers already hold ``x-acs-content-sha256`` and the other ``x-acs-*``.

    Args:
        access_key_id: the AccessKey ID, named in the Authorization header.
        access_key_secret: the AccessKey secret, the HMAC key.
        headers: the request's headers, exactly as sent (``host``, ``x-acs-action``,
            ``x-acs-version``, ``x-acs-date``, ``x-acs-signature-nonce``,
            ``x-acs-content-sha256``, and ``content-type`` when there is a body).
        method: the HTTP method.
        path: the resource path.
        query: the query parameters.

    Returns:
        The signature with its intermediate values.

    Raises:
        ValueError: ``x-acs-content-sha256`` is missing from the headers.

    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if "x-acs-content-sha256" not in lowered:
        raise ValueError("the x-acs-content-sha256 header must be set before signing")
    canonical, signed = canonical_request(method, path, query, headers, lowered["x-acs-content-sha256"])
    to_sign = string_to_sign(canonical)
    signature = hmac.new(
        access_key_secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    authorization = f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}"
    return Acs3Signature(canonical, to_sign, signature, authorization)


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of a received ``Authorization`` header (for a verifying server)."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``Authorization`` header, or None when it is not an ACS3 one."""
    match = _AUTHORIZATION.match(value)
    if match is None:
        return None
    return ParsedAuthorization(match["key_id"], tuple(match["signed"].split(";")), match["signature"])
