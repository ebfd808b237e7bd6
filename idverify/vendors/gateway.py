# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``http`` vendor kind: an operator's own identity gateway, spoken to in a small signed JSON protocol.

For a provider that is neither Tencent Cloud nor Alibaba Cloud, an operator runs a gateway
that talks to it, and idverify speaks this protocol to the gateway (docs/VENDORS.md has it in
full, with examples):

* ``POST <url>``, ``Content-Type: application/json``, body ``{"check": ..., "reference": ...,
  "claim": {...}}``, where ``check`` is ``name_id``, ``carrier``, ``bank_card``,
  ``liveness_start``, ``liveness_result``, ``org_elements`` or ``ping``, ``reference`` our
  verification id, and ``claim`` only the fields the check needs (``name``, ``document_type``,
  ``document_number``, ``phone``, ``bank_card``); ``liveness_start`` adds ``"liveness":
  {"return_url", "meta_info"}`` and ``liveness_result`` sends ``"token"`` instead of a claim.
  ``org_elements`` (the enterprise registry check) sends ``"claim": {"mode", "name", "code",
  "legal_representative_name", "legal_representative_document_type",
  "legal_representative_document_number", "registered_address"}`` with only the fields given
  and the mode needs (``ENT_2META``, ``ENT_3META``, ``ENT_4META``).
* Requests and responses are signed alike: ``X-Idverify-Timestamp`` (Unix seconds) and
  ``X-Idverify-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``, the scheme
  of the SMS gateway. Each side checks the other's signature in constant time and refuses a
  timestamp more than five minutes off; idverify refuses an unsigned answer, so a forged
  "match" cannot be injected on the way.
* The answer: HTTP 200 and ``{"result": "match" | "mismatch" | "no_record" | "invalid_input"
  | "rejected" | "daily_limit" | "unsupported" | "pending" | "busy", "reason": "<optional
  reason code>", "code": "<the provider's code>", "billed": true|false}``; ``liveness_start``
  answers ``{"result": "started", "url": ..., "token": ...}``; ``ping`` answers
  ``{"result": "pong"}``. ``busy`` with ``billed: false`` is retried with backoff.
  ``org_elements`` answers ``match`` only with ``"business_status": "operating"`` (else
  ``relocated``, ``deregistered``, ``revoked``, ``cancelled``, ``suspended`` or ``other``, all
  ``ORG_NOT_ACTIVE``); its ``reason`` is one of the organization reasons of docs/VENDORS.md.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors.api import Check, Claim, LivenessRequest, LivenessSession, OrgClaim, ProbeReport
from idverify.vendors.credentials import read_secret
from idverify.vendors.pooled import PooledVendor, shown
from idverify.vendors.transport import (
    TRANSPORT_OPTIONS,
    PreparedRequest,
    VendorTransport,
    fail_on_http_status,
)
from idverify.vendors.verdicts import RetryableAnswer, VendorUnavailable, Verdict, VerdictKind
from idverify.verifiers.sms_senders import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request

__all__ = ["GATEWAY_OPTIONS", "MAX_CLOCK_SKEW_SECONDS", "HttpGateway"]

MAX_CLOCK_SKEW_SECONDS: Final = 300
_MIN_SECRET: Final = 32
GATEWAY_OPTIONS: Final = TRANSPORT_OPTIONS | {"kind", "url", "secret_env", "secret_file", "documents"}
_VERDICTS: Final = {kind.value: kind for kind in VerdictKind}
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_MISMATCH_REASONS: Final[Mapping[str, str]] = {
    "name_id": "AUTHORITY_MISMATCH",
    "carrier": "CARRIER_MISMATCH",
    "bank_card": "BANK_CARD_MISMATCH",
    "liveness_start": "AUTHORITY_MISMATCH",
    "liveness_result": "LIVENESS_FAILED",
    "org_elements": "ORG_MISMATCH",
}
# What an org_elements answer may say, by kind; anything else gets the kind's default.
_ORG_REASONS: Final[Mapping[VerdictKind, frozenset[str]]] = {
    VerdictKind.MISMATCH: frozenset(
        {
            "ORG_MISMATCH",
            "ORG_NAME_MISMATCH",
            "ORG_CODE_MISMATCH",
            "LEGAL_REP_MISMATCH",
            "LEGAL_REP_NAME_MISMATCH",
            "LEGAL_REP_ID_MISMATCH",
        }
    ),
    VerdictKind.NO_RECORD: frozenset({"ORG_NOT_FOUND", "LEGAL_REP_NOT_FOUND"}),
}
_ORG_DEFAULT_REASONS: Final[Mapping[VerdictKind, str]] = {
    VerdictKind.MISMATCH: "ORG_MISMATCH",
    VerdictKind.NO_RECORD: "ORG_NOT_FOUND",
    VerdictKind.REJECTED: "ORG_NOT_ACTIVE",
}
_NOT_OPERATING: Final = frozenset({"relocated", "deregistered", "revoked", "cancelled", "suspended", "other"})
_DEFAULT_REASONS: Final[Mapping[VerdictKind, str]] = {
    VerdictKind.NO_RECORD: "NO_RECORD",
    VerdictKind.INVALID_INPUT: "INVALID_INPUT",
    VerdictKind.REJECTED: "BANK_CARD_REJECTED",
    VerdictKind.DAILY_LIMIT: "VENDOR_DAILY_LIMIT",
    VerdictKind.UNSUPPORTED: "VENDOR_UNSUPPORTED",
}


class HttpGateway(PooledVendor):
    """Speaks the signed JSON protocol of the module docstring to an operator's gateway.

    Options: ``url`` (required; https, or http to loopback), exactly one of ``secret_env`` and
    ``secret_file`` (at least 32 bytes, shared with the gateway), ``documents`` (document types
    the gateway can check, default ``["cn_ric"]``), and the transport options.

    Raises:
        ConfigError: an option is missing, unknown or invalid, or the secret cannot be read.

    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        where: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        where = where or f"vendors.{name}"
        settings = self._configure(name, options, where=where, known=GATEWAY_OPTIONS, default_url=None)
        self._secret = read_secret(where, options, "secret", min_length=_MIN_SECRET).encode("utf-8")
        documents = options.get("documents", ["cn_ric"])
        try:
            self._documents = frozenset(DocumentType(value) for value in documents)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.documents: a list of {[d.value for d in DocumentType]}") from exc
        self._clock = clock
        self._transport = VendorTransport(name, settings)

    _url_option = "url"

    def supports(self, check: Check, document_type: DocumentType) -> bool:
        """Whether the gateway was declared able to check this document type (for any check)."""
        del check
        return document_type in self._documents

    async def check_name_id(self, claim: Claim) -> Verdict:
        """The ``name_id`` check.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        return await self._verdict("name_id", claim, {"name", "document_type", "document_number"})

    async def check_carrier(self, claim: Claim) -> Verdict:
        """The ``carrier`` check.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        return await self._verdict("carrier", claim, {"name", "document_type", "document_number", "phone"})

    async def check_bank_card(self, claim: Claim) -> Verdict:
        """The ``bank_card`` check.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        fields = {"name", "document_type", "document_number", "phone", "bank_card"}
        return await self._verdict("bank_card", claim, fields)

    async def check_organization(self, claim: OrgClaim) -> Verdict:
        """The ``org_elements`` check.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        fields = {
            "mode": claim.mode.value,
            "name": claim.name,
            "code": claim.code,
            "legal_representative_name": claim.legal_representative_name,
            "legal_representative_document_type": (
                claim.legal_representative_document_type.value
                if claim.legal_representative_document_type
                else ""
            ),
            "legal_representative_document_number": claim.legal_representative_document_number,
            "registered_address": claim.registered_address,
        }
        body = {
            "check": "org_elements",
            "reference": claim.reference,
            "claim": {key: value for key, value in fields.items() if value},
        }
        return await self._transport.exchange(
            "org_elements",
            lambda: self._prepare(body),
            lambda response: _organization_verdict(self._answer(response)),
        )

    async def start_liveness(self, claim: Claim, request: LivenessRequest) -> LivenessSession | Verdict:
        """The ``liveness_start`` check.

        Raises:
            VendorUnavailable: when no answer could be had.

        """
        body = {
            "check": "liveness_start",
            "reference": request.reference,
            "claim": _claim_fields(claim, {"name", "document_type", "document_number"}),
            "liveness": {"return_url": request.return_url, "meta_info": request.meta_info},
        }

        def interpret(response: httpx.Response) -> LivenessSession | Verdict:
            answer = self._answer(response)
            if answer.get("result") == "started":
                url, token = answer.get("url", ""), answer.get("token")
                if not isinstance(token, str) or not token or not isinstance(url, str):
                    raise VendorUnavailable("VENDOR_ERROR", "NO_TOKEN")
                return LivenessSession(url=url, token=token)
            return _verdict_of(answer, "liveness_start")

        return await self._transport.exchange("liveness_start", lambda: self._prepare(body), interpret)

    async def liveness_result(self, token: str, reference: str) -> Verdict:
        """The ``liveness_result`` check.

        Raises:
            VendorUnavailable: when no answer could be had.

        """
        body = {"check": "liveness_result", "reference": reference, "token": token}
        return await self._transport.exchange(
            "liveness_result",
            lambda: self._prepare(body),
            lambda response: _verdict_of(self._answer(response), "liveness_result"),
        )

    async def probe(self) -> ProbeReport:
        """Send ``ping``; a signed ``pong`` proves reachability and the shared secret on both sides."""
        body = {"check": "ping", "reference": ""}

        def interpret(response: httpx.Response) -> ProbeReport:
            answer = self._answer(response)
            if answer.get("result") != "pong":
                return ProbeReport(ok=False, detail="gateway answered ping without pong")
            return ProbeReport(ok=True, detail="signed pong received; secret shared")

        try:
            return await self._transport.exchange("ping", lambda: self._prepare(body), interpret)
        except VendorUnavailable as exc:
            return ProbeReport(ok=False, detail=exc.reason, vendor_code=exc.vendor_code)

    def dry_run(self) -> str:
        """Sign a ping without sending it and show it."""
        return shown(self._prepare({"check": "ping", "reference": ""}))

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, body: Mapping[str, Any]) -> PreparedRequest:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_request(self._secret, timestamp, payload),
        }
        return PreparedRequest(url=str(self._url), headers=headers, body=payload)

    def _answer(self, response: httpx.Response) -> Mapping[str, Any]:
        fail_on_http_status(response)
        timestamp = response.headers.get(TIMESTAMP_HEADER, "")
        claimed = response.headers.get(SIGNATURE_HEADER, "")
        expected = sign_request(self._secret, timestamp, response.content)
        fresh = timestamp.isdigit() and abs(int(timestamp) - self._clock()) <= MAX_CLOCK_SKEW_SECONDS
        if not fresh or not hmac.compare_digest(claimed.encode(), expected.encode()):
            raise VendorUnavailable("VENDOR_AUTH_FAILED", "BAD_RESPONSE_SIGNATURE")
        try:
            answer = json.loads(response.content)
        except ValueError as exc:
            raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE") from exc
        if not isinstance(answer, Mapping):
            raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
        return answer

    async def _verdict(self, check: str, claim: Claim, fields: set[str]) -> Verdict:
        body = {"check": check, "reference": "", "claim": _claim_fields(claim, fields)}
        return await self._transport.exchange(
            check, lambda: self._prepare(body), lambda response: _verdict_of(self._answer(response), check)
        )


def _claim_fields(claim: Claim, fields: set[str]) -> dict[str, str]:
    values = {
        "name": claim.name,
        "document_type": claim.document_type.value,
        "document_number": claim.document_number,
        "phone": claim.phone,
        "bank_card": claim.bank_card,
    }
    return {key: value for key, value in values.items() if key in fields}


def _verdict_of(answer: Mapping[str, Any], check: str) -> Verdict:
    """The verdict of a gateway answer.

    Raises:
        RetryableAnswer: ``busy`` and not billed.
        VendorUnavailable: ``busy`` but billed, or an unknown result.

    """
    result = answer.get("result")
    code = str(answer.get("code", ""))[:64]
    billed = answer.get("billed") is True
    if result == "busy":
        if billed:
            raise VendorUnavailable("VENDOR_BUSY", code)
        raise RetryableAnswer("VENDOR_BUSY", code)
    kind = _VERDICTS.get(result) if isinstance(result, str) else None
    if kind is None:
        raise VendorUnavailable("VENDOR_ERROR", "UNKNOWN_RESULT")
    reason = answer.get("reason", "")
    # A reason becomes part of our API and audit log: accept only a code-shaped one.
    if not isinstance(reason, str) or not _REASON.match(reason):
        default = _MISMATCH_REASONS[check] if kind is VerdictKind.MISMATCH else _DEFAULT_REASONS.get(kind, "")
        reason = default
    return Verdict(kind, reason if kind is not VerdictKind.MATCH else "", code, billed)


def _organization_verdict(answer: Mapping[str, Any]) -> Verdict:
    """The verdict of an ``org_elements`` answer: a match counts only for an operating organization.

    Raises:
        RetryableAnswer: ``busy`` and not billed.
        VendorUnavailable: ``busy`` but billed, an unknown result, or a match whose business
            status is missing or unknown.

    """
    verdict = _verdict_of(answer, "org_elements")
    if verdict.kind is VerdictKind.MATCH:
        status = answer.get("business_status")
        if status == "operating":
            return verdict
        # A signed answer may still carry a list or an object here: not hashable, not a status.
        if isinstance(status, str) and status in _NOT_OPERATING:
            return Verdict(VerdictKind.REJECTED, "ORG_NOT_ACTIVE", verdict.vendor_code, verdict.billed)
        raise VendorUnavailable("VENDOR_ERROR", "UNKNOWN_STATUS")
    allowed = _ORG_REASONS.get(verdict.kind)
    if allowed is not None or verdict.kind is VerdictKind.REJECTED:
        reason = (
            verdict.reason
            if allowed is not None and verdict.reason in allowed
            else _ORG_DEFAULT_REASONS[verdict.kind]
        )
        return Verdict(verdict.kind, reason, verdict.vendor_code, verdict.billed)
    return verdict
