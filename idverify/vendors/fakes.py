# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Local stand-ins for FaceID, Cloudauth and an HTTP gateway, for tests of idverify and its callers.

Each fake is a real HTTP/1.1 server on a loopback port (keep-alive included) that reproduces
its vendor's documented request and response formats, **checks the signature of every request
it receives** (recording whether it held), and answers from a small table of test people. Tests
can script the next answers: a vendor error code, a result code, an HTTP status, a slow answer,
or a connection dropped without an answer::

    with FakeTencent(people=[Person("张三", "11010519491231002X")]) as fake:
        options = fake.vendor_options()          # a [vendors.tencent] table pointing at it
        fake.plan(Slow(2.0), Drop(), ErrorCode("RequestLimitExceeded"))

The Cloudauth fake and the gateway also answer the enterprise registry check from a table of
:class:`Organization` (name, code, legal representative, business status).

Nothing is logged: the identities live in memory for the life of the fake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import urlopen

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from idverify.vendors import acs3, tc3
from idverify.vendors.tencent_encryption import decrypt_fields
from idverify.verifiers.sms_senders import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request

__all__ = [
    "Drop",
    "EntResult",
    "ErrorCode",
    "FakeAlibaba",
    "FakeGateway",
    "FakeTencent",
    "HttpStatus",
    "Organization",
    "Person",
    "ResultCode",
    "Seen",
    "Slow",
]

_SKEW_SECONDS = 300
_GATEWAY_STATUS = {
    "ServiceUnavailable": 503,
    "InternalError": 500,
    "Throttling.User": 400,
    # The enterprise check's own error codes, with the HTTP statuses its reference gives them.
    "MissingParameter": 400,
    "InvalidParameter": 401,
    "Forbidden.AccountAccessDenied": 403,
    "Forbidden.RAMUserAccessDenied": 403,
}
# Cloudauth's Status values and the gateway's business_status words for them.
_BUSINESS_STATUS = {
    "1": "operating",
    "2": "relocated",
    "3": "deregistered",
    "4": "revoked",
    "5": "cancelled",
    "6": "suspended",
    "0": "other",
}
# The business term of the references' example answer.
_OPEN_TIME = "2018-09-25/9999-09-09"


@dataclass(frozen=True)
class Person:
    """A test identity the fake authority knows (the carrier and bank records come with it)."""

    name: str
    id_number: str
    phone: str = ""
    bank_card: str = ""

    def __repr__(self) -> str:
        return "Person(<test identity>)"


@dataclass(frozen=True)
class Organization:
    """A test organization the fake registry knows.

    Attributes:
        name: its registered name.
        code: its unified social credit code.
        legal_representative: the legal representative's name.
        legal_representative_id: their resident ID number.
        status: Cloudauth's business status (``1`` in operation, ``3`` deregistered, ``4``
            revoked ...; any other string to test an undocumented one).
    """

    name: str
    code: str
    legal_representative: str
    legal_representative_id: str = ""
    status: str = "1"

    def __repr__(self) -> str:
        return "Organization(<test organization>)"


@dataclass(frozen=True)
class Slow:
    """Answer normally, after this many seconds."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True)
class HttpStatus:
    """Answer with this HTTP status and body (a proxy's answer, not the vendor's)."""

    status: int
    body: str = ""


@dataclass(frozen=True)
class ErrorCode:
    """Answer with the vendor's error format and this code."""

    code: str


@dataclass(frozen=True)
class ResultCode:
    """Answer the call normally but with this result code (and detail, for carrier checks)."""

    code: str
    detail: str = ""


@dataclass(frozen=True)
class EntResult:
    """Answer an enterprise check with Code Success and exactly this Result object."""

    result: Mapping[str, Any]


Behaviour = Slow | Drop | HttpStatus | ErrorCode | ResultCode | EntResult
# What reaches a fake's answer (the rest is handled before it).
_Scripted = ErrorCode | ResultCode | EntResult | None


@dataclass
class Seen:
    """One request the fake received.

    Attributes:
        action: the vendor action (or gateway check).
        signature_ok: whether its signature verified.
        fields: the request's parameters, decrypted where they were encrypted.
        encrypted: the names of fields that arrived encrypted.
    """

    action: str
    signature_ok: bool
    fields: dict[str, Any] = field(default_factory=dict)
    encrypted: list[str] = field(default_factory=list)


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: _FakeBase

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up on a slow answer is expected; no traceback on stderr."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the vendors offer it
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.fake.serve(self.path, headers, body)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silence: request lines are not for test logs."""


class _FakeBase:
    """The server loop, the script of behaviours and the record of requests."""

    default_key_id: ClassVar[str] = "AKIDfakefakefakefakefake"

    def __init__(
        self,
        *,
        people: Iterable[Person] = (),
        key_id: str = "",
        secret: str = "",
        organizations: Iterable[Organization] = (),
    ) -> None:
        self.key_id = key_id or self.default_key_id
        self.secret = secret or "fake-secret-" + uuid.uuid4().hex
        self.people = {person.id_number: person for person in people}
        self.organizations = {organization.code: organization for organization in organizations}
        self.requests: list[Seen] = []
        self._plan: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.now = time.time

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("the fake is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def plan(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these behaviours, one each, then normally again."""
        with self._lock:
            self._plan.extend(behaviours)

    @property
    def all_signatures_ok(self) -> bool:
        """Whether every request received so far carried a valid signature."""
        return all(seen.signature_ok for seen in self.requests)

    def actions(self) -> list[str]:
        """The actions received, in order."""
        return [seen.action for seen in self.requests]

    # -- serving --------------------------------------------------------------------------------

    def serve(self, path: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        """Answer one request, following the plan first; None drops the connection."""
        with self._lock:
            behaviour = self._plan.popleft() if self._plan else None
        if isinstance(behaviour, Drop):
            self._record_only(path, headers, body)
            return None
        if isinstance(behaviour, HttpStatus):
            self._record_only(path, headers, body)
            return _Reply(behaviour.status, behaviour.body.encode())
        if isinstance(behaviour, Slow):
            time.sleep(behaviour.seconds)
            behaviour = None
        return self.answer(path, headers, body, behaviour)

    def _record_only(self, path: str, headers: Mapping[str, str], body: bytes) -> None:
        self.answer(path, headers, body, ErrorCode("recorded-only"))

    def answer(self, path: str, headers: Mapping[str, str], body: bytes, behaviour: _Scripted) -> _Reply:
        """The vendor's answer (subclasses)."""
        raise NotImplementedError


class FakeTencent(_FakeBase):
    """FaceID 2018-03-01 on loopback: TC3-checked JSON calls, Result and Error formats.

    Args:
        people: the identities the fake authority, carriers and banks know.
        private_key: the RSA key whose public half idverify encrypts fields under (optional).

    """

    def __init__(self, *, people: Iterable[Person] = (), private_key: RSAPrivateKey | None = None) -> None:
        super().__init__(people=people)
        self.private_key = private_key
        self.flows: dict[str, dict[str, Any]] = {}

    def vendor_options(self, **extra: Any) -> dict[str, Any]:
        """A ``[vendors.<name>]`` table for this fake (secrets passed as files by the caller)."""
        return {"kind": "tencent", "endpoint": self.url, "liveness_rule_id": "1", **extra}

    def complete_liveness(self, token: str, *, passed: bool, live: bool = True) -> None:
        """Finish a DetectAuth flow as the user would on the vendor's page."""
        with self._lock:
            self.flows[token]["state"] = "passed" if passed else ("face" if live else "live")

    def answer(self, path: str, headers: Mapping[str, str], body: bytes, behaviour: _Scripted) -> _Reply:
        """Check the TC3 signature, then answer the action."""
        action = headers.get("x-tc-action", "")
        ok = path == "/" and self._signature_ok(headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        seen = Seen(action, ok)
        with self._lock:
            self.requests.append(seen)
        if not ok:
            return self._error("AuthFailure.SignatureFailure")
        try:
            payload, seen.encrypted = self._decrypt(payload)
        except ValueError:
            return self._error("FailedOperation.DecryptSystemError")
        seen.fields = payload
        if isinstance(behaviour, ErrorCode) or headers.get("x-tc-version") != "2018-03-01":
            return self._error(
                behaviour.code if isinstance(behaviour, ErrorCode) else "InvalidParameterValue"
            )
        handler = {
            "IdCardVerification": self._id_card,
            "PhoneVerification": self._phone,
            "BankCard4EVerification": self._bank_card,
            "DetectAuth": self._detect_auth,
            "GetDetectInfoEnhanced": self._detect_info,
        }.get(action)
        if handler is None:
            return self._error("InvalidAction")
        response = handler(payload, behaviour)
        if "Error" in response:
            return self._error(str(response["Error"]))
        return self._ok(response)

    def _signature_ok(self, headers: Mapping[str, str], body: bytes) -> bool:
        parsed = tc3.parse_authorization(headers.get("authorization", ""))
        timestamp = headers.get("x-tc-timestamp", "")
        if parsed is None or parsed.secret_id != self.key_id or not timestamp.isdigit():
            return False
        if abs(int(timestamp) - self.now()) > _SKEW_SECONDS or not {"content-type", "host"} <= set(
            parsed.signed_headers
        ):
            return False
        service = parsed.scope.split("/")[1]
        signed = {name: headers.get(name, "") for name in parsed.signed_headers}
        expected = tc3.sign(
            secret_id=self.key_id,
            secret_key=self.secret,
            service=service,
            timestamp=int(timestamp),
            headers=signed,
            payload=body,
        )
        return parsed.scope == tc3.credential_scope(int(timestamp), service) and hmac.compare_digest(
            expected.signature, parsed.signature
        )

    def _decrypt(self, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        envelope = payload.get("Encryption")
        if envelope is None and "CiphertextBlob" in payload:
            envelope = {
                key: payload[key] for key in ("EncryptList", "CiphertextBlob", "Iv") if key in payload
            }
        if envelope is None:
            return payload, []
        if self.private_key is None:
            raise ValueError("no private key")
        names = list(envelope.get("EncryptList", []))
        return decrypt_fields(self.private_key, payload, envelope), names

    def _result(self, behaviour: _Scripted, code: str, detail: str = "") -> dict[str, Any]:
        if isinstance(behaviour, ResultCode):
            code, detail = behaviour.code, behaviour.detail
        out: dict[str, Any] = {"Result": code, "Description": "fake"}
        if detail:
            out["ResultDetail"] = detail
        return out

    def _id_card(self, payload: Mapping[str, Any], behaviour: _Scripted) -> dict[str, Any]:
        person = self.people.get(str(payload.get("IdCard", "")))
        code = "-5" if person is None else ("0" if person.name == payload.get("Name") else "-1")
        return self._result(behaviour, code)

    def _phone(self, payload: Mapping[str, Any], behaviour: _Scripted) -> dict[str, Any]:
        person = self.people.get(str(payload.get("IdCard", "")))
        holder = next((p for p in self.people.values() if p.phone == payload.get("Phone")), None)
        if person is None and holder is None:
            return self._result(behaviour, "-9")
        name_ok = holder is not None and holder.name == payload.get("Name")
        id_ok = holder is not None and holder.id_number == payload.get("IdCard")
        if name_ok and id_ok:
            return self._result(behaviour, "0", "")
        detail = "PhoneNameIdCardMismatch"
        if name_ok:
            detail = "PhoneIdCardMismatch"
        elif id_ok:
            detail = "PhoneNameMismatch"
        return self._result(behaviour, "-4", detail if payload.get("VerifyMode") == "1" else "")

    def _bank_card(self, payload: Mapping[str, Any], behaviour: _Scripted) -> dict[str, Any]:
        holder = next((p for p in self.people.values() if p.bank_card == payload.get("BankCard")), None)
        match = holder is not None and (holder.name, holder.id_number, holder.phone) == (
            payload.get("Name"),
            payload.get("IdCard"),
            payload.get("Phone"),
        )
        return self._result(behaviour, "0" if match else "-1")

    def _detect_auth(self, payload: Mapping[str, Any], behaviour: _Scripted) -> dict[str, Any]:
        del behaviour
        person = self.people.get(str(payload.get("IdCard", "")))
        if person is None or person.name != payload.get("Name"):
            return {"Error": "FailedOperation.IdNameMisMatch"}
        token = str(uuid.uuid4()).upper()
        with self._lock:
            self.flows[token] = {"state": "pending", "extra": payload.get("Extra", "")}
        return {"Url": f"https://faceid.example/h5?token={token}", "BizToken": token}

    def _detect_info(self, payload: Mapping[str, Any], behaviour: _Scripted) -> dict[str, Any]:
        del behaviour
        flow = self.flows.get(str(payload.get("BizToken", "")))
        if flow is None:
            return {"Error": "InvalidParameterValue.BizTokenIllegal"}
        text: dict[str, Any] = {"ErrCode": None, "ErrMsg": None, "Extra": flow["extra"]}
        state = flow["state"]
        if state != "pending":
            text["ErrCode"] = 0 if state == "passed" else 1001
            text["LiveStatus"] = 0 if state in {"passed", "face"} else 1001
            text["Comparestatus"] = 0 if state == "passed" else 1001
        return {"Text": text, "IdCardData": None, "BestFrame": None}

    def _ok(self, response: Mapping[str, Any]) -> _Reply:
        body = {"Response": {**response, "RequestId": str(uuid.uuid4())}}
        return _Reply(200, json.dumps(body, ensure_ascii=False).encode())

    def _error(self, code: str) -> _Reply:
        body = {"Response": {"Error": {"Code": code, "Message": "fake"}, "RequestId": str(uuid.uuid4())}}
        return _Reply(200, json.dumps(body).encode())


class FakeAlibaba(_FakeBase):
    """Cloudauth 2019-03-07 on loopback: ACS3-checked form calls, Code/ResultObject formats."""

    default_key_id: ClassVar[str] = "LTAIfakefakefakefake"

    def __init__(self, *, people: Iterable[Person] = (), organizations: Iterable[Organization] = ()) -> None:
        super().__init__(people=people, organizations=organizations)
        self.flows: dict[str, str] = {}
        # CertifyId -> (CallbackUrl, CallbackToken) of the flows started with a callback.
        self.callbacks: dict[str, tuple[str, str]] = {}
        self._nonces: set[str] = set()

    def vendor_options(self, **extra: Any) -> dict[str, Any]:
        """A ``[vendors.<name>]`` table for this fake (secrets passed as files by the caller)."""
        return {"kind": "alibaba", "endpoint": self.url, "liveness_scene_id": 1000000006, **extra}

    def complete_liveness(
        self, token: str, *, passed: bool, sub_code: str = "204", call_back: bool = False
    ) -> int | None:
        """Finish an InitFaceVerify flow as the user would.

        With ``call_back``, then call the flow's CallbackUrl as Cloudauth does, and return the
        HTTP status it answered (None: no callback URL was given, or it could not be reached).
        """
        with self._lock:
            self.flows[token] = "200" if passed else sub_code
        return self.call_back(token) if call_back else None

    def call_back(self, token: str, **overrides: str) -> int | None:
        """GET the flow's CallbackUrl with certifyId, passed, subcode and callbackToken added.

        ``overrides`` replace or add query parameters (a forged token, another certifyId ...).
        """
        with self._lock:
            target = self.callbacks.get(token)
            state = self.flows.get(token, "pending")
        if target is None:
            return None
        url, callback_token = target
        query = {
            "certifyId": token,
            "passed": "T" if state == "200" else "F",
            "subcode": state,
            "callbackToken": callback_token,
            **overrides,
        }
        try:
            with urlopen(f"{url}?{urlencode(query)}", timeout=10) as answer:  # noqa: S310 - a test URL
                return int(answer.status)
        except HTTPError as refused:
            return refused.code
        except URLError:
            return None

    def answer(self, path: str, headers: Mapping[str, str], body: bytes, behaviour: _Scripted) -> _Reply:
        """Check the ACS3 signature, then answer the action."""
        action = headers.get("x-acs-action", "")
        ok = self._signature_ok(path, headers, body)
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        seen = Seen(action, ok, params)
        with self._lock:
            self.requests.append(seen)
        if not ok:
            return self._reply(400, {"Code": "SignatureDoesNotMatch", "Message": "fake"})
        if isinstance(behaviour, ErrorCode):
            # Business codes come with HTTP 200; the OpenAPI gateway's own errors with 4xx/5xx.
            status = 200 if behaviour.code.isdigit() else _GATEWAY_STATUS.get(behaviour.code, 400)
            return self._reply(status, {"Code": behaviour.code, "Message": "fake"})
        if action in {"EntElementVerify", "EntElementVerifyV2"}:
            return self._enterprise(action, headers, params, behaviour)
        handler = {
            "Id2MetaVerify": self._id2meta,
            "Mobile3MetaDetailVerify": self._mobile3,
            "BankMetaVerify": self._bank,
            "InitFaceVerify": self._init_face,
            "DescribeFaceVerify": self._describe_face,
        }.get(action)
        if handler is None:
            return self._reply(404, {"Code": "InvalidAction.NotFound", "Message": "fake"})
        code, result = handler(params, behaviour)
        answer: dict[str, Any] = {"Code": code, "Message": "success" if code == "200" else "fake"}
        if result is not None:
            answer["ResultObject"] = result
        return self._reply(200, answer)

    def _signature_ok(self, path: str, headers: Mapping[str, str], body: bytes) -> bool:
        parsed = acs3.parse_authorization(headers.get("authorization", ""))
        if parsed is None or parsed.access_key_id != self.key_id:
            return False
        if headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return False
        nonce = headers.get("x-acs-signature-nonce", "")
        try:
            sent = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return False
        with self._lock:
            if not nonce or nonce in self._nonces or abs(sent.timestamp() - self.now()) > _SKEW_SECONDS:
                return False
            self._nonces.add(nonce)
        required = {
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        }
        if not required <= set(parsed.signed_headers):
            return False
        split = urlsplit(path)
        signed = {name: headers.get(name, "") for name in parsed.signed_headers}
        expected = acs3.sign(
            access_key_id=self.key_id,
            access_key_secret=self.secret,
            headers=signed,
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
        )
        return hmac.compare_digest(expected.signature, parsed.signature)

    def _id2meta(self, params: Mapping[str, str], behaviour: _Scripted) -> tuple[str, Any]:
        person = self.people.get(params.get("IdentifyNum", ""))
        biz = "3" if person is None else ("1" if person.name == params.get("UserName") else "2")
        if isinstance(behaviour, ResultCode):
            biz = behaviour.code
        return "200", {"BizCode": biz}

    def _mobile3(self, params: Mapping[str, str], behaviour: _Scripted) -> tuple[str, Any]:
        holder = next((p for p in self.people.values() if p.phone == params.get("Mobile")), None)
        if holder is None:
            biz, sub = "3", "301"
        else:
            name_ok = holder.name == params.get("UserName")
            id_ok = holder.id_number == params.get("IdentifyNum")
            biz = "1" if name_ok and id_ok else "2"
            sub = {(True, True): "101", (True, False): "202", (False, True): "203"}.get(
                (name_ok, id_ok), "201"
            )
        if isinstance(behaviour, ResultCode):
            biz, sub = behaviour.code, behaviour.detail or sub
        return "200", {"BizCode": biz, "SubCode": sub, "IspName": "CMCC"}

    def _bank(self, params: Mapping[str, str], behaviour: _Scripted) -> tuple[str, Any]:
        holder = next((p for p in self.people.values() if p.bank_card == params.get("BankCard")), None)
        match = holder is not None and (holder.name, holder.id_number, holder.phone) == (
            params.get("UserName"),
            params.get("IdentifyNum"),
            params.get("Mobile"),
        )
        biz, sub = ("1", "101") if match else ("2", "201")
        if isinstance(behaviour, ResultCode):
            biz, sub = behaviour.code, behaviour.detail or sub
        return "200", {"BizCode": biz, "SubCode": sub}

    def _init_face(self, params: Mapping[str, str], behaviour: _Scripted) -> tuple[str, Any]:
        del behaviour
        if not params.get("MetaInfo"):
            return "401", None
        certify_id = uuid.uuid4().hex
        with self._lock:
            self.flows[certify_id] = "pending"
            if params.get("CallbackUrl"):
                self.callbacks[certify_id] = (params["CallbackUrl"], params.get("CallbackToken", ""))
        return "200", {"CertifyId": certify_id, "CertifyUrl": f"https://cloudauth.example/{certify_id}"}

    def _describe_face(self, params: Mapping[str, str], behaviour: _Scripted) -> tuple[str, Any]:
        del behaviour
        state = self.flows.get(params.get("CertifyId", ""))
        if state is None:
            return "406", None
        if state == "pending":
            return "424", None
        return "200", {"Passed": "T" if state == "200" else "F", "SubCode": state, "MaterialInfo": None}

    def _enterprise(
        self, action: str, headers: Mapping[str, str], params: Mapping[str, str], behaviour: _Scripted
    ) -> _Reply:
        """EntElementVerify(V2), Cloudauth 2022-11-25: Code Success and a Result, as documented."""
        if headers.get("x-acs-version") != "2022-11-25":
            return self._reply(400, {"Code": "InvalidVersion", "Message": "fake"})
        mode = params.get("InfoVerifyType", "")
        rep_name, rep_id = mode in {"ENT_3META", "ENT_4META"}, mode == "ENT_4META"
        required = ["SceneCode", "MerchantBizId", "MerchantUserId", "EntName", "LicenseNo"]
        required += ["LegalPersonName"] if rep_name else []
        required += ["LegalPersonCertNo"] if rep_id else []
        valid = mode in {"ENT_2META", "ENT_3META", "ENT_4META"} and params.get("UserAuthorization") == "1"
        if not valid or not all(params.get(name) for name in required):
            return self._reply(400, {"Code": "MissingParameter", "Message": "fake"})
        if isinstance(behaviour, EntResult):
            result: dict[str, Any] = dict(behaviour.result)
        else:
            result = self._registry_result(params, rep_name=rep_name, rep_id=rep_id)
            if isinstance(behaviour, ResultCode):
                result.update(BizCode=behaviour.code, ReasonDetail=behaviour.detail)
            if action == "EntElementVerifyV2":
                result.pop("ReasonCode", None)  # V2 answers without the retired field
        return self._reply(200, {"Code": "Success", "Message": "success", "Result": result})

    def _registry_result(self, params: Mapping[str, str], *, rep_name: bool, rep_id: bool) -> dict[str, Any]:
        organization = self.organizations.get(params.get("LicenseNo", ""))
        if organization is None:
            # Looked up by name as well: a name on record under another code is a code mismatch.
            named = next((o for o in self.organizations.values() if o.name == params.get("EntName")), None)
            if named is None:
                return {"BizCode": "3", "ReasonCode": "301", "ReasonDetail": ""}
            return {
                "BizCode": "2",
                "ReasonCode": "202",
                "ReasonDetail": "LicenseNoFlag",
                "Status": named.status,
            }
        flags = []
        if organization.name != params.get("EntName"):
            flags.append("EntNameFlag")
        if rep_name and organization.legal_representative != params.get("LegalPersonName"):
            flags.append("LegalPersonNameFlag")
        if rep_id and organization.legal_representative_id != params.get("LegalPersonCertNo"):
            flags.append("LegalPersonCertNoFlag")
        reason_code = "100" if not flags else ("202" if "EntNameFlag" in flags else "201")
        return {
            "BizCode": "2" if flags else "1",
            "ReasonCode": reason_code,
            "ReasonDetail": ",".join(flags),
            "Status": organization.status,
            "OpenTime": _OPEN_TIME,
        }

    def _reply(self, status: int, body: Mapping[str, Any]) -> _Reply:
        return _Reply(status, json.dumps({"RequestId": str(uuid.uuid4()), **body}).encode())


class FakeGateway(_FakeBase):
    """An operator's identity gateway speaking :mod:`idverify.vendors.gateway`'s protocol."""

    def __init__(
        self, *, people: Iterable[Person] = (), secret: str = "", organizations: Iterable[Organization] = ()
    ) -> None:
        super().__init__(
            people=people, secret=secret or "gateway-secret-" + uuid.uuid4().hex, organizations=organizations
        )
        self.sign_responses = True

    def answer(self, path: str, headers: Mapping[str, str], body: bytes, behaviour: _Scripted) -> _Reply:
        """Check the request's signature, then answer with a signed body."""
        del path
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        expected = sign_request(self.secret.encode(), timestamp, body)
        ok = (
            timestamp.isdigit()
            and abs(int(timestamp) - self.now()) <= _SKEW_SECONDS
            and hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER.lower(), ""))
        )
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        seen = Seen(str(request.get("check", "")), ok, dict(request.get("claim", {})))
        with self._lock:
            self.requests.append(seen)
        if not ok:
            return _Reply(401, b'{"error":"bad signature"}')
        scripted = _scripted_gateway_answer(behaviour)
        if scripted is not None:
            return self._signed(scripted)
        if seen.action == "ping":
            return self._signed({"result": "pong"})
        if seen.action == "org_elements":
            return self._signed(self._org_elements(seen.fields))
        claim = seen.fields
        person = self.people.get(str(claim.get("document_number", "")))
        if person is None:
            return self._signed({"result": "no_record", "code": "404", "billed": False})
        match = person.name == claim.get("name") and all(
            claim.get(key, value) == value
            for key, value in (("phone", person.phone), ("bank_card", person.bank_card))
        )
        return self._signed(
            {"result": "match" if match else "mismatch", "code": "0" if match else "1", "billed": True}
        )

    def _org_elements(self, claim: Mapping[str, Any]) -> dict[str, Any]:
        organization = self.organizations.get(str(claim.get("code", "")))
        if organization is None:
            if any(o.name == claim.get("name") for o in self.organizations.values()):
                return {"result": "mismatch", "reason": "ORG_CODE_MISMATCH", "code": "2", "billed": True}
            return {"result": "no_record", "reason": "ORG_NOT_FOUND", "code": "3", "billed": False}
        mode = claim.get("mode")
        checks = [("ORG_NAME_MISMATCH", organization.name == claim.get("name"))]
        if mode in {"ENT_3META", "ENT_4META"}:
            checks.append(
                (
                    "LEGAL_REP_NAME_MISMATCH",
                    organization.legal_representative == claim.get("legal_representative_name"),
                )
            )
        if mode == "ENT_4META":
            checks.append(
                (
                    "LEGAL_REP_ID_MISMATCH",
                    organization.legal_representative_id == claim.get("legal_representative_document_number"),
                )
            )
        failed = [reason for reason, ok in checks if not ok]
        if failed:
            return {"result": "mismatch", "reason": failed[0], "code": "2", "billed": True}
        status = _BUSINESS_STATUS.get(organization.status, organization.status)
        return {"result": "match", "business_status": status, "code": "1", "billed": True}

    def _signed(self, answer: Mapping[str, Any]) -> _Reply:
        body = json.dumps(answer).encode()
        timestamp = str(int(self.now()))
        headers = {TIMESTAMP_HEADER: timestamp}
        if self.sign_responses:
            headers[SIGNATURE_HEADER] = sign_request(self.secret.encode(), timestamp, body)
        return _Reply(200, body, headers)


def _scripted_gateway_answer(behaviour: _Scripted) -> Mapping[str, Any] | None:
    """The gateway answer a test scripted, if it did."""
    if isinstance(behaviour, ErrorCode):
        return {"result": behaviour.code, "billed": False}
    if isinstance(behaviour, ResultCode):
        return {"result": behaviour.code, "code": behaviour.detail, "billed": True}
    if isinstance(behaviour, EntResult):
        return behaviour.result
    return None
