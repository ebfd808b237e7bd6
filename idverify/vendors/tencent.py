# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The Tencent Cloud FaceID adapter (API 2018-03-01, TC3-HMAC-SHA256 signed JSON over HTTPS).

Actions: IdCardVerification (name + ID), PhoneVerification in detailed mode (carrier three
factors), BankCard4EVerification, and the liveness flow DetectAuth -> GetDetectInfoEnhanced,
whose result is read by BizToken and never includes an image (InfoType 1: text only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors import tc3, transport
from idverify.vendors.api import Check, Claim, LivenessRequest, LivenessSession, ProbeReport
from idverify.vendors.credentials import CREDENTIAL_OPTIONS, read_credentials
from idverify.vendors.pooled import PooledVendor, liveness_session, shown
from idverify.vendors.tencent_codes import (
    BANK_CARD_RESULTS,
    ID_CARD_RESULTS,
    PHONE_DETAILS,
    PHONE_RESULTS,
    error_outcome,
)
from idverify.vendors.tencent_encryption import FieldEncryptor
from idverify.vendors.verdicts import (
    CodeMeaning,
    Unavailable,
    VendorUnavailable,
    Verdict,
    VerdictKind,
    settle,
)

__all__ = ["API_VERSION", "DEFAULT_ENDPOINT", "SERVICE", "TencentFaceId"]

SERVICE: Final = "faceid"
API_VERSION: Final = "2018-03-01"
DEFAULT_ENDPOINT: Final = "https://faceid.tencentcloudapi.com"
_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_OPTIONS: Final = (
    transport.TRANSPORT_OPTIONS
    | CREDENTIAL_OPTIONS
    | {"kind", "endpoint", "region", "encryption_public_key_file", "liveness_rule_id", "phone_verify_mode"}
)
_SUPPORTED: Final[Mapping[Check, frozenset[DocumentType]]] = {
    Check.NAME_ID: frozenset({DocumentType.CN_RIC}),
    Check.CARRIER: frozenset({DocumentType.CN_RIC}),
    Check.BANK_CARD: frozenset({DocumentType.CN_RIC}),
    # DetectAuth also takes Hong Kong, Macau and Taiwan residence permit numbers (UseIDType 1).
    Check.LIVENESS: frozenset({DocumentType.CN_RIC, DocumentType.CN_RESIDENCE_PERMIT}),
}
# A well-formed token no flow was ever started with: the probe's harmless question.
_PROBE_TOKEN: Final = "00000000-0000-0000-0000-000000000000"  # noqa: S105 - a dummy flow id


class TencentFaceId(PooledVendor):
    """Speaks to FaceID for the vendor-backed verifiers.

    Options of its ``[vendors.<name>]`` table: the credential references (``secret_id_env`` or
    ``secret_id_file``, ``secret_key_env`` or ``secret_key_file``), ``endpoint`` (default
    ``https://faceid.tencentcloudapi.com``), ``region`` (sent as X-TC-Region when set),
    ``encryption_public_key_file`` (the RSA key from the FaceID console: name, ID, phone and
    card travel encrypted), ``liveness_rule_id`` (DetectAuth's RuleId, needed by
    ``face_liveness``), ``phone_verify_mode`` (``detailed``, the default, or ``simple``), and the
    transport options of :class:`~idverify.vendors.transport.TransportSettings`.

    Raises:
        ConfigError: an option is unknown or invalid, or a secret cannot be read.

    """

    _supported = _SUPPORTED

    def __init__(
        self, name: str, options: Mapping[str, Any], *, clock: Callable[[], float] = time.time
    ) -> None:
        where = f"vendors.{name}"
        settings = self._configure(name, options, where=where, known=_OPTIONS, default_url=DEFAULT_ENDPOINT)
        self._credentials = read_credentials(where, options)
        self._region = _text(where, options, "region")
        self._rule_id = _text(where, options, "liveness_rule_id")
        mode = options.get("phone_verify_mode", "detailed")
        if mode not in {"detailed", "simple"}:
            raise ConfigError(f"{where}.phone_verify_mode: detailed or simple")
        self._phone_mode = "1" if mode == "detailed" else "0"
        key_file = _text(where, options, "encryption_public_key_file")
        self._encryptor = FieldEncryptor.from_file(key_file) if key_file else None
        self._clock = clock
        self._transport = transport.VendorTransport(name, settings)

    async def check_name_id(self, claim: Claim) -> Verdict:
        """IdCardVerification.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        fields = {"IdCard": claim.document_number, "Name": claim.name}
        return await self._verdict("IdCardVerification", self._protect(fields, "Encryption"), ID_CARD_RESULTS)

    async def check_carrier(self, claim: Claim) -> Verdict:
        """PhoneVerification (detailed mode unless configured otherwise).

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        fields = {"IdCard": claim.document_number, "Name": claim.name, "Phone": claim.phone}
        # This action takes the envelope's members at the top level, not in an Encryption object.
        body = {**self._protect(fields, "top-level"), "VerifyMode": self._phone_mode}
        return await self._verdict("PhoneVerification", body, PHONE_RESULTS, detail=PHONE_DETAILS)

    async def check_bank_card(self, claim: Claim) -> Verdict:
        """BankCard4EVerification (CertType 0: resident ID card).

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        fields = {
            "Name": claim.name,
            "BankCard": claim.bank_card,
            "Phone": claim.phone,
            "IdCard": claim.document_number,
        }
        body = {**self._protect(fields, "Encryption"), "CertType": 0}
        return await self._verdict("BankCard4EVerification", body, BANK_CARD_RESULTS)

    async def start_liveness(self, claim: Claim, request: LivenessRequest) -> LivenessSession | Verdict:
        """DetectAuth for the claimed identity; the reference rides in Extra to tie the flow to us.

        Raises:
            VendorUnavailable: when no answer could be had.
            ConfigError: ``liveness_rule_id`` is not configured.

        """
        if not self._rule_id:
            raise ConfigError(f"vendors.{self.name}.liveness_rule_id is needed for face_liveness")
        body: dict[str, Any] = {
            "RuleId": self._rule_id,
            **self._protect({"IdCard": claim.document_number, "Name": claim.name}, "Encryption"),
            "Extra": request.reference,
        }
        if request.return_url:
            body["RedirectUrl"] = request.return_url

        def interpret(response: httpx.Response) -> LivenessSession | Verdict:
            answer = self._answer(response)
            if isinstance(answer, Verdict):
                return answer
            return liveness_session(answer, id_field="BizToken", url_field="Url", missing="NO_BIZTOKEN")

        return await self._transport.exchange(
            "DetectAuth", lambda: self._prepare("DetectAuth", body), interpret
        )

    async def liveness_result(self, token: str, reference: str) -> Verdict:
        """GetDetectInfoEnhanced, text only; PENDING until the user has finished.

        Raises:
            VendorUnavailable: when no answer could be had.

        """
        body = {"BizToken": token, "RuleId": self._rule_id, "InfoType": "1"}

        def interpret(response: httpx.Response) -> Verdict:
            answer = self._answer(response)
            if isinstance(answer, Verdict):
                return answer
            return _liveness_verdict(answer, reference)

        return await self._transport.exchange(
            "GetDetectInfoEnhanced", lambda: self._prepare("GetDetectInfoEnhanced", body), interpret
        )

    async def probe(self) -> ProbeReport:
        """Ask for the result of a flow that never existed: any answer but an auth error proves the keys."""
        body = {"BizToken": _PROBE_TOKEN, "RuleId": self._rule_id or "0", "InfoType": "1"}

        def interpret(response: httpx.Response) -> ProbeReport:
            transport.fail_on_http_status(response)
            error = _json(response).get("Response", {}).get("Error") or {}
            code = str(error.get("Code", ""))
            outcome = error_outcome(code) if code else None
            if isinstance(outcome, Unavailable) and outcome.reason in {
                "VENDOR_AUTH_FAILED",
                "VENDOR_ACCOUNT_ERROR",
            }:
                return ProbeReport(
                    ok=False, detail=f"credentials or account refused ({outcome.reason})", vendor_code=code
                )
            return ProbeReport(ok=True, detail="authenticated; endpoint reachable", vendor_code=code)

        try:
            return await self._transport.exchange(
                "GetDetectInfoEnhanced", lambda: self._prepare("GetDetectInfoEnhanced", body), interpret
            )
        except VendorUnavailable as exc:
            return ProbeReport(ok=False, detail=exc.reason, vendor_code=exc.vendor_code)

    def dry_run(self) -> str:
        """Sign the probe request without sending it; show what would go out (no secret)."""
        return shown(
            self._prepare("GetDetectInfoEnhanced", {"BizToken": _PROBE_TOKEN, "RuleId": "0", "InfoType": "1"})
        )

    # -- internals ----------------------------------------------------------------------------

    def _protect(self, fields: Mapping[str, str], placement: str) -> dict[str, Any]:
        if self._encryptor is None:
            return dict(fields)
        encrypted = self._encryptor.encrypt(fields, fields.keys())
        if placement == "top-level":
            envelope = encrypted.encryption
            return {
                **encrypted.fields,
                "EncryptList": envelope["EncryptList"],
                "CiphertextBlob": envelope["CiphertextBlob"],
                "Iv": envelope["Iv"],
            }
        return {**encrypted.fields, "Encryption": dict(encrypted.encryption)}

    def _prepare(self, action: str, body: Mapping[str, Any]) -> transport.PreparedRequest:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = int(self._clock())
        signed = {
            "Content-Type": _CONTENT_TYPE,
            "Host": self._url.netloc.decode("ascii"),
            "X-TC-Action": action,
        }
        signature = tc3.sign(
            secret_id=self._credentials.key_id,
            secret_key=self._credentials.secret,
            service=SERVICE,
            timestamp=timestamp,
            headers=signed,
            payload=payload,
        )
        headers = {
            **signed,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": API_VERSION,
            "Authorization": signature.authorization,
        }
        if self._region:
            headers["X-TC-Region"] = self._region
        return transport.PreparedRequest(
            url=str(self._url.copy_with(path="/")), headers=headers, body=payload
        )

    def _answer(self, response: httpx.Response) -> Mapping[str, Any] | Verdict:
        """The Response object of a successful call, or the verdict an error code carries.

        Raises:
            RetryableAnswer: on a non-billed transient error.
            VendorUnavailable: on any other error.

        """
        transport.fail_on_http_status(response)
        answer = _json(response).get("Response")
        if not isinstance(answer, Mapping):
            raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
        error = answer.get("Error")
        if isinstance(error, Mapping):
            code = str(error.get("Code", ""))
            return settle(error_outcome(code), code)
        return answer

    async def _verdict(
        self,
        action: str,
        body: Mapping[str, Any],
        results: Mapping[str, CodeMeaning],
        *,
        detail: Mapping[str, str] | None = None,
    ) -> Verdict:
        def interpret(response: httpx.Response) -> Verdict:
            answer = self._answer(response)
            if isinstance(answer, Verdict):
                return answer
            code = str(answer.get("Result", ""))
            verdict = settle(results.get(code, Unavailable("VENDOR_ERROR")), code)
            result_detail = answer.get("ResultDetail")
            if detail and verdict.kind is VerdictKind.MISMATCH and isinstance(result_detail, str):
                reason = detail.get(result_detail, verdict.reason)
                return Verdict(verdict.kind, reason, f"{code}/{result_detail}", verdict.billed)
            return verdict

        return await self._transport.exchange(action, lambda: self._prepare(action, body), interpret)


def _liveness_verdict(answer: Mapping[str, Any], reference: str) -> Verdict:
    text = answer.get("Text")
    code = text.get("ErrCode") if isinstance(text, Mapping) else None
    if not isinstance(text, Mapping) or code is None:
        return Verdict(VerdictKind.PENDING)
    if str(text.get("Extra", "")) != reference:
        # A token of another flow: never let it vouch for this verification.
        return Verdict(VerdictKind.MISMATCH, "CHALLENGE_INVALID", "EXTRA_MISMATCH")
    if str(code) == "0":
        return Verdict(VerdictKind.MATCH, vendor_code="0", billed=True)
    live, compare = text.get("LiveStatus"), text.get("Comparestatus")
    reason = "FACE_MISMATCH" if str(live) == "0" and compare not in {None, 0, "0"} else "LIVENESS_FAILED"
    return Verdict(VerdictKind.MISMATCH, reason, str(code), billed=True)


def _json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        parsed = response.json()
    except ValueError as exc:
        raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE") from exc
    if not isinstance(parsed, Mapping):
        raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
    return parsed


def _text(where: str, options: Mapping[str, Any], key: str) -> str:
    value = options.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string")
    return value
