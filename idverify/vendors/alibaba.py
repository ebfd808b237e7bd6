# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The Alibaba Cloud ID Verification adapter (Cloudauth 2019-03-07, ACS3-HMAC-SHA256, RPC style).

Actions: Id2MetaVerify (name + ID), Mobile3MetaDetailVerify (carrier three factors, detailed),
BankMetaVerify (BANK_CARD_4_META), the face flow InitFaceVerify -> DescribeFaceVerify, and the
enterprise element check EntElementVerifyV2 (or EntElementVerify), which Cloudauth serves under
its 2022-11-25 version with ``Code``/``Result`` answers instead of ``Code``/``ResultObject``.
Parameters travel as a signed form body, never in the URL, so no proxy or access log on the way
sees them (the V3 signature covers both; Alibaba's SDK sends these actions as form data too).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.vendors import acs3, transport
from idverify.vendors.alibaba_codes import (
    BANK_SUBCODES,
    CARRIER_SUBCODES,
    FACE_CODES,
    FACE_SUBCODES,
    INFO_CODES,
    gateway_outcome,
)
from idverify.vendors.alibaba_enterprise_codes import (
    ENT_CODES,
    ENT_REASON_CODES,
    ENT_REASON_FLAGS,
    NOT_OPERATING_STATUSES,
    OPERATING_STATUS,
    SUCCESS,
)
from idverify.vendors.api import Check, Claim, LivenessRequest, LivenessSession, OrgClaim, ProbeReport
from idverify.vendors.credentials import CREDENTIAL_OPTIONS, read_credentials
from idverify.vendors.pooled import PooledVendor, liveness_session, shown
from idverify.vendors.verdicts import (
    CodeMeaning,
    Unavailable,
    VendorUnavailable,
    Verdict,
    VerdictKind,
    settle,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_ENDPOINT",
    "ENTERPRISE_ACTIONS",
    "ENTERPRISE_API_VERSION",
    "AlibabaCloudauth",
]

API_VERSION: Final = "2019-03-07"
ENTERPRISE_API_VERSION: Final = "2022-11-25"
# V2 takes every kind of registered organization for two and three elements (V1: enterprises
# and sole proprietorships only) and answers the same fields but the retired ReasonCode.
ENTERPRISE_ACTIONS: Final = ("EntElementVerifyV2", "EntElementVerify")
_SCENE_CODE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
DEFAULT_ENDPOINT: Final = "https://cloudauth.aliyuncs.com"
_FORM: Final = "application/x-www-form-urlencoded"
_OPTIONS: Final = (
    transport.TRANSPORT_OPTIONS
    | CREDENTIAL_OPTIONS
    | {
        "kind",
        "endpoint",
        "liveness_scene_id",
        "liveness_product_code",
        "liveness_model",
        "enterprise_action",
        "enterprise_scene_code",
    }
)
_SUPPORTED: Final[Mapping[Check, frozenset[DocumentType]]] = {
    # The two- and three-factor checks take resident ID and HK/Macau/Taiwan residence permit numbers.
    Check.NAME_ID: frozenset({DocumentType.CN_RIC, DocumentType.CN_RESIDENCE_PERMIT}),
    Check.CARRIER: frozenset({DocumentType.CN_RIC, DocumentType.CN_RESIDENCE_PERMIT}),
    Check.BANK_CARD: frozenset({DocumentType.CN_RIC}),
    Check.LIVENESS: frozenset({DocumentType.CN_RIC}),
    # The organization's unified social credit code, and its legal representative's resident
    # ID number in ENT_4META (法人身份证号).
    Check.ORGANIZATION: frozenset({DocumentType.CN_USCC, DocumentType.CN_RIC}),
}
_PROBE_CERTIFY_ID: Final = "0" * 32


class AlibabaCloudauth(PooledVendor):
    """Speaks to Cloudauth for the vendor-backed verifiers.

    Options of its ``[vendors.<name>]`` table: the credential references (``secret_id_*`` holds
    the AccessKey ID, ``secret_key_*`` the AccessKey secret), ``endpoint`` (default
    ``https://cloudauth.aliyuncs.com``), ``liveness_scene_id`` (the console's SceneId, needed by
    ``face_liveness``), ``liveness_product_code`` (default ``ID_PRO``), ``liveness_model``
    (default ``LIVENESS``), and the transport options.

    Raises:
        ConfigError: an option is unknown or invalid, or a secret cannot be read.

    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        where = f"vendors.{name}"
        settings = self._configure(name, options, where=where, known=_OPTIONS, default_url=DEFAULT_ENDPOINT)
        self._credentials = read_credentials(where, options)
        scene = options.get("liveness_scene_id", 0)
        if isinstance(scene, bool) or not isinstance(scene, int) or scene < 0:
            raise ConfigError(f"{where}.liveness_scene_id: expected the console's numeric SceneId")
        self._scene_id = str(scene)
        self._product_code = str(options.get("liveness_product_code", "ID_PRO"))
        self._model = str(options.get("liveness_model", "LIVENESS"))
        self._enterprise_action = options.get("enterprise_action", ENTERPRISE_ACTIONS[0])
        if self._enterprise_action not in ENTERPRISE_ACTIONS:
            raise ConfigError(f"{where}.enterprise_action: expected one of {list(ENTERPRISE_ACTIONS)}")
        scene_code = options.get("enterprise_scene_code", "idverify")
        if not isinstance(scene_code, str) or not _SCENE_CODE.match(scene_code):
            raise ConfigError(f"{where}.enterprise_scene_code: up to 32 letters, digits and underscores")
        self._enterprise_scene = scene_code
        self._clock = clock
        self._nonce = nonce
        self._transport = transport.VendorTransport(name, settings)

    # The face flow pushes its end to a CallbackUrl (idverify.callbacks.server's /alibaba/ route).
    callback_kind: Final = "alibaba"
    _supported = _SUPPORTED

    async def check_name_id(self, claim: Claim) -> Verdict:
        """Id2MetaVerify.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        params = {"ParamType": "normal", "UserName": claim.name, "IdentifyNum": claim.document_number}
        return await self._info("Id2MetaVerify", params, _id2meta)

    async def check_carrier(self, claim: Claim) -> Verdict:
        """Mobile3MetaDetailVerify.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        params = {
            "ParamType": "normal",
            "UserName": claim.name,
            "IdentifyNum": claim.document_number,
            "Mobile": claim.phone,
        }
        return await self._info("Mobile3MetaDetailVerify", params, _carrier)

    async def check_bank_card(self, claim: Claim) -> Verdict:
        """BankMetaVerify with ProductType BANK_CARD_4_META.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        params = {
            "ParamType": "normal",
            "ProductType": "BANK_CARD_4_META",
            "VerifyMode": "VERIFY_BANK_CARD",
            "UserName": claim.name,
            "IdentifyNum": claim.document_number,
            "Mobile": claim.phone,
            "BankCard": claim.bank_card,
        }
        return await self._info("BankMetaVerify", params, _bank)

    async def check_organization(self, claim: OrgClaim) -> Verdict:
        """EntElementVerifyV2 (or EntElementVerify) in the claim's mode.

        The reference (our verification id) is both MerchantBizId and MerchantUserId: the vendor
        learns no account id. UserAuthorization is 1 because no step runs before the identity
        consent is given.

        Raises:
            VendorUnavailable: when no verdict could be had.

        """
        params = {
            "SceneCode": self._enterprise_scene,
            "MerchantBizId": claim.reference,
            "MerchantUserId": claim.reference,
            "UserAuthorization": "1",
            "InfoVerifyType": claim.mode.value,
            "EntName": claim.name,
            "LicenseNo": claim.code,
        }
        if claim.legal_representative_name:
            params["LegalPersonName"] = claim.legal_representative_name
        if claim.legal_representative_document_number:
            params["LegalPersonCertNo"] = claim.legal_representative_document_number
        action = self._enterprise_action

        def interpret(response: httpx.Response) -> Verdict:
            try:
                answer = _json(response)
            except VendorUnavailable:
                transport.fail_on_http_status(response)
                raise
            code = str(answer.get("Code", ""))
            if code != SUCCESS:
                # Its business errors come with HTTP 4xx and a JSON body, like the gateway's.
                return settle(ENT_CODES.get(code) or gateway_outcome(code), code[:64])
            result = answer.get("Result")
            if not isinstance(result, Mapping):
                raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
            return _enterprise(result)

        return await self._transport.exchange(
            action, lambda: self._prepare(action, params, version=ENTERPRISE_API_VERSION), interpret
        )

    async def start_liveness(self, claim: Claim, request: LivenessRequest) -> LivenessSession | Verdict:
        """InitFaceVerify for the claimed identity; OuterOrderNo is our verification id.

        Raises:
            VendorUnavailable: when no answer could be had.
            ConfigError: ``liveness_scene_id`` is not configured.

        """
        if self._scene_id == "0":
            raise ConfigError(f"vendors.{self.name}.liveness_scene_id is needed for face_liveness")
        params = {
            "SceneId": self._scene_id,
            "OuterOrderNo": request.reference,
            "ProductCode": self._product_code,
            "Model": self._model,
            "CertType": "IDENTITY_CARD",
            "CertName": claim.name,
            "CertNo": claim.document_number,
        }
        if request.meta_info:
            params["MetaInfo"] = request.meta_info
        if request.return_url:
            params["ReturnUrl"] = request.return_url
        if request.callback_url:
            # Cloudauth calls it when the user finishes, adding certifyId, passed, subcode and
            # callbackToken to its query; the verdict is then fetched, never read from it.
            params["CallbackUrl"] = request.callback_url
            params["CallbackToken"] = request.callback_token

        def interpret(response: httpx.Response) -> LivenessSession | Verdict:
            result = self._result(response, FACE_CODES)
            if isinstance(result, Verdict):
                return result
            return liveness_session(
                result, id_field="CertifyId", url_field="CertifyUrl", missing="NO_CERTIFY_ID"
            )

        return await self._transport.exchange(
            "InitFaceVerify", lambda: self._prepare("InitFaceVerify", params), interpret
        )

    async def liveness_result(self, token: str, reference: str) -> Verdict:
        """DescribeFaceVerify; PENDING while the user has not finished.

        Raises:
            VendorUnavailable: when no answer could be had.

        """
        del reference  # the CertifyId itself was issued for our OuterOrderNo
        params = {"SceneId": self._scene_id, "CertifyId": token}

        def interpret(response: httpx.Response) -> Verdict:
            result = self._result(response, FACE_CODES)
            if isinstance(result, Verdict):
                return result
            sub_code = str(result.get("SubCode", ""))
            if result.get("Passed") == "T":
                return Verdict(VerdictKind.MATCH, vendor_code=sub_code, billed=True)
            known = FACE_SUBCODES.get(sub_code, Verdict(VerdictKind.MISMATCH, "LIVENESS_FAILED", billed=True))
            return Verdict(known.kind, known.reason, sub_code, known.billed)

        return await self._transport.exchange(
            "DescribeFaceVerify", lambda: self._prepare("DescribeFaceVerify", params), interpret
        )

    async def probe(self) -> ProbeReport:
        """Ask for a face result that never existed: any answer but an auth error proves the keys."""
        params = {"SceneId": self._scene_id, "CertifyId": _PROBE_CERTIFY_ID}

        def interpret(response: httpx.Response) -> ProbeReport:
            code = str(_json(response).get("Code", response.status_code))
            outcome = gateway_outcome(code) if not code.isdigit() else None
            if isinstance(outcome, Unavailable) and outcome.reason in {
                "VENDOR_AUTH_FAILED",
                "VENDOR_ACCOUNT_ERROR",
            }:
                return ProbeReport(
                    ok=False, detail=f"credentials or account refused ({outcome.reason})", vendor_code=code
                )
            if code.isdigit() and code in {"410", "411", "412"}:
                return ProbeReport(
                    ok=False, detail="account refused (VENDOR_ACCOUNT_ERROR)", vendor_code=code
                )
            return ProbeReport(ok=True, detail="authenticated; endpoint reachable", vendor_code=code)

        try:
            return await self._transport.exchange(
                "DescribeFaceVerify", lambda: self._prepare("DescribeFaceVerify", params), interpret
            )
        except VendorUnavailable as exc:
            return ProbeReport(ok=False, detail=exc.reason, vendor_code=exc.vendor_code)

    def dry_run(self) -> str:
        """Sign the probe request without sending it; show what would go out (no secret)."""
        return shown(self._prepare("DescribeFaceVerify", {"SceneId": "0", "CertifyId": _PROBE_CERTIFY_ID}))

    # -- internals ----------------------------------------------------------------------------

    def _prepare(
        self, action: str, params: Mapping[str, str], *, version: str = API_VERSION
    ) -> transport.PreparedRequest:
        body = acs3.form_body(params)
        date = datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "host": self._url.netloc.decode("ascii"),
            "content-type": _FORM,
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": date,
            "x-acs-signature-nonce": self._nonce(),
            "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        }
        signature = acs3.sign(
            access_key_id=self._credentials.key_id,
            access_key_secret=self._credentials.secret,
            headers=headers,
        )
        headers["Authorization"] = signature.authorization
        return transport.PreparedRequest(url=str(self._url.copy_with(path="/")), headers=headers, body=body)

    def _result(
        self, response: httpx.Response, codes: Mapping[str, CodeMeaning]
    ) -> Mapping[str, Any] | Verdict:
        """The ResultObject of a successful call, or the verdict its Code carries.

        Raises:
            RetryableAnswer: on a non-billed transient error.
            VendorUnavailable: on any other error.

        """
        try:
            answer = _json(response)
        except VendorUnavailable:
            transport.fail_on_http_status(response)
            raise
        code = str(answer.get("Code", ""))
        if code == "200":
            result = answer.get("ResultObject")
            if not isinstance(result, Mapping):
                raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
            return result
        outcome = codes.get(code) if code.isdigit() else gateway_outcome(code)
        return settle(outcome or Unavailable("VENDOR_ERROR"), code)

    async def _info(
        self, action: str, params: Mapping[str, str], verdict_of: Callable[[Mapping[str, Any]], Verdict]
    ) -> Verdict:
        def interpret(response: httpx.Response) -> Verdict:
            result = self._result(response, INFO_CODES)
            return result if isinstance(result, Verdict) else verdict_of(result)

        return await self._transport.exchange(action, lambda: self._prepare(action, params), interpret)


def _codes(result: Mapping[str, Any]) -> tuple[str, str, str]:
    biz, sub = str(result.get("BizCode", "")), str(result.get("SubCode", ""))
    return biz, sub, f"{biz}/{sub}" if sub else biz


def _id2meta(result: Mapping[str, Any]) -> Verdict:
    biz, _, code = _codes(result)
    if biz == "1":
        return Verdict(VerdictKind.MATCH, vendor_code=code, billed=True)
    if biz == "2":
        return Verdict(VerdictKind.MISMATCH, "AUTHORITY_MISMATCH", code, billed=True)
    if biz == "3":
        return Verdict(VerdictKind.NO_RECORD, "NO_RECORD", code)
    raise VendorUnavailable("VENDOR_ERROR", code)


def _carrier(result: Mapping[str, Any]) -> Verdict:
    biz, sub, code = _codes(result)
    if biz == "2":
        return Verdict(VerdictKind.MISMATCH, CARRIER_SUBCODES.get(sub, "CARRIER_MISMATCH"), code, billed=True)
    return _id2meta(result)


def _bank(result: Mapping[str, Any]) -> Verdict:
    biz, sub, code = _codes(result)
    if biz == "1":
        return Verdict(VerdictKind.MATCH, vendor_code=code, billed=True)
    if biz in {"2", "3"} and sub in BANK_SUBCODES:
        known = BANK_SUBCODES[sub]
        return Verdict(known.kind, known.reason, code, known.billed)
    if biz == "2":
        return Verdict(VerdictKind.MISMATCH, "BANK_CARD_MISMATCH", code, billed=True)
    if biz == "3":
        return Verdict(VerdictKind.UNSUPPORTED, "VENDOR_UNSUPPORTED", code)
    raise VendorUnavailable("VENDOR_ERROR", code)


def _enterprise(result: Mapping[str, Any]) -> Verdict:
    """The verdict of an enterprise check's Result (codes in alibaba_enterprise_codes).

    Only documented values reach the vendor code, so nothing the vendor echoes is kept.

    Raises:
        VendorUnavailable: an unknown BizCode, or a match with an unknown business status.

    """
    biz = str(result.get("BizCode", ""))
    if biz == "1":
        status = str(result.get("Status", ""))
        if status == OPERATING_STATUS:
            return Verdict(VerdictKind.MATCH, vendor_code=f"1/{status}", billed=True)
        if status in NOT_OPERATING_STATUSES:
            return Verdict(VerdictKind.REJECTED, "ORG_NOT_ACTIVE", f"1/{status}", billed=True)
        raise VendorUnavailable("VENDOR_ERROR", "1/UNKNOWN_STATUS")
    if biz in {"2", "3"}:
        return _enterprise_failure(biz, result)
    raise VendorUnavailable("VENDOR_ERROR", "UNKNOWN_BIZ_CODE")


def _enterprise_failure(biz: str, result: Mapping[str, Any]) -> Verdict:
    """BizCode 2 (which elements disagree) or 3 (what was not found)."""
    if biz == "2":
        detail = {flag.strip() for flag in str(result.get("ReasonDetail") or "").split(",")}
        flags = [flag for flag in ENT_REASON_FLAGS if flag in detail]
        if flags:
            return Verdict(
                VerdictKind.MISMATCH, ENT_REASON_FLAGS[flags[0]], "2/" + ",".join(flags), billed=True
            )
    reason_code = str(result.get("ReasonCode", ""))
    known = ENT_REASON_CODES.get(reason_code)
    # The retired ReasonCode counts only where it agrees with the BizCode.
    expected = VerdictKind.MISMATCH if biz == "2" else VerdictKind.NO_RECORD
    if known is not None and known.kind is expected:
        return Verdict(known.kind, known.reason, f"{biz}/{reason_code}", known.billed)
    if biz == "2":
        return Verdict(VerdictKind.MISMATCH, "ORG_MISMATCH", "2", billed=True)
    return Verdict(VerdictKind.NO_RECORD, "ORG_NOT_FOUND", "3")


def _json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        parsed = json.loads(response.content)
    except ValueError as exc:
        raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE") from exc
    if not isinstance(parsed, Mapping):
        raise VendorUnavailable("VENDOR_ERROR", "MALFORMED_RESPONSE")
    return parsed
