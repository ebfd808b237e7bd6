"""A signup against idverify from plain Python, built from the contract alone.

Needs grpcio, grpcio-tools and protobuf, and nothing of the idverify package: the stubs are
generated from proto/ into a temporary directory at run time.

    IDVERIFY_TOKEN=<registrar token> python signup.py

Environment: IDVERIFY_TARGET (127.0.0.1:50051), IDVERIFY_TOKEN (a registrar's, for the
verification calls), IDVERIFY_PLATFORM_TOKEN (a platform client's, for GetAccount; IDVERIFY_TOKEN
when unset, so one admin token serves both), and the person: IDVERIFY_ACCOUNT_ID, IDVERIFY_NAME,
IDVERIFY_DOCUMENT_NUMBER, IDVERIFY_PHONE. The SMS code is read from standard input (the development
server's console sender logs it). On a refusal it prints the status, the reason code from
google.rpc.ErrorInfo, the field from google.rpc.BadRequest and the delay from google.rpc.RetryInfo,
and exits with 1.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(os.environ.get("IDVERIFY_PROTO_DIR", Path(__file__).resolve().parents[2] / "proto"))
TARGET = os.environ.get("IDVERIFY_TARGET", "127.0.0.1:50051")
TOKEN = os.environ.get("IDVERIFY_TOKEN", "")
# Account reads are the platform role's; an admin token may serve as both.
PLATFORM_TOKEN = os.environ.get("IDVERIFY_PLATFORM_TOKEN", TOKEN)

# The consent texts this application shows; each consent names the version of its text.
CONSENT_TEXTS = {
    "identity": "We verify your name and ID number to comply with real-name registration rules.",
    "phone": "We send a one-time code to your phone number to confirm it is yours.",
}


def text_version(text: str) -> str:
    """What a consent's text version is: sha256: and the hex digest of the text shown."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def generate_stubs(out: Path) -> None:
    """Python messages and stubs of the contract and of google.rpc, into ``out``."""
    well_known = Path(protoc.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_DIR)) for p in sorted(PROTO_DIR.rglob("*.proto"))]
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main([*args, *files]) != 0:
        sys.exit(f"protoc could not compile {PROTO_DIR}")
    # Regular packages, so that these modules, first on the path, are the ones imported even
    # where the idverify server package is installed too.
    for package in ("idverify", "idverify/v1"):
        (out / package / "__init__.py").touch()


class Stubs:
    """The generated modules this example uses."""

    def __init__(self, out: Path) -> None:
        generate_stubs(out)
        sys.path.insert(0, str(out))
        load = importlib.import_module
        self.common: ModuleType = load("idverify.v1.common_pb2")
        self.verification: ModuleType = load("idverify.v1.verification_pb2")
        self.verification_grpc: ModuleType = load("idverify.v1.verification_pb2_grpc")
        self.account: ModuleType = load("idverify.v1.account_pb2")
        self.account_grpc: ModuleType = load("idverify.v1.account_pb2_grpc")
        self.status: ModuleType = load("google.rpc.status_pb2")
        self.details: ModuleType = load("google.rpc.error_details_pb2")


def describe_error(stubs: Stubs, error: grpc.RpcError) -> str:
    """The status, reason, field and retry delay of a refused call."""
    parts = [f"status={error.code().name}"]
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw:
        status = stubs.status.Status.FromString(raw)
        for any_detail in status.details:
            info, bad, retry = (
                stubs.details.ErrorInfo(),
                stubs.details.BadRequest(),
                stubs.details.RetryInfo(),
            )
            if any_detail.Unpack(info):
                parts += [f"reason={info.reason}", f"domain={info.domain}"]
            elif any_detail.Unpack(bad):
                parts += [f"field={violation.field}" for violation in bad.field_violations]
            elif any_detail.Unpack(retry):
                parts.append(f"retry_after={retry.retry_delay.ToTimedelta().total_seconds()}s")
    parts.append(f"message={error.details()!r}")
    return " ".join(parts)


def signup(stubs: Stubs, channel: grpc.Channel) -> int:
    """ListMethods, StartVerification, SubmitChallenge, GetVerification, GetAccount."""
    v, common = stubs.verification, stubs.common
    verification = stubs.verification_grpc.VerificationServiceStub(channel)
    accounts = stubs.account_grpc.AccountServiceStub(channel)
    call: dict[str, Any] = {"metadata": (("authorization", f"Bearer {TOKEN}"),), "timeout": 15}
    account_id = os.environ.get("IDVERIFY_ACCOUNT_ID", f"py-{uuid.uuid4()}")

    methods = verification.ListMethods(v.ListMethodsRequest(subject_kind=common.SUBJECT_KIND_PERSON), **call)
    print("methods:", ", ".join(m.id + (" (biometric)" if m.biometric else "") for m in methods.methods))

    subject = common.Subject(
        kind=common.SUBJECT_KIND_PERSON,
        name=os.environ.get("IDVERIFY_NAME", "张三"),
        document_type=common.DOCUMENT_TYPE_CN_RIC,
        document_number=os.environ.get("IDVERIFY_DOCUMENT_NUMBER", "11010519491231002X"),
        phone_number=os.environ.get("IDVERIFY_PHONE", "13800000000"),
    )
    started = verification.StartVerification(
        v.StartVerificationRequest(
            request_id=str(uuid.uuid4()),
            account_id=account_id,
            method_id="sms",
            subject=subject,
            consents=list(CONSENT_TEXTS),
            consent_text_versions={p: text_version(text) for p, text in CONSENT_TEXTS.items()},
            client_ip="203.0.113.9",
        ),
        **call,
    ).verification
    status_name = v.VerificationStatus.Name
    print(f"verification {started.verification_id} {status_name(started.status)} to {started.masked_phone}")
    if started.status != v.VERIFICATION_STATUS_CHALLENGE_SENT:
        print(f"reason_code={started.reason_code}")
        return 1

    print("code: ", end="", flush=True)
    code = sys.stdin.readline().strip()
    submitted = verification.SubmitChallenge(
        v.SubmitChallengeRequest(verification_id=started.verification_id, code=code), **call
    ).verification
    print(f"submitted: {status_name(submitted.status)} reason_code={submitted.reason_code or '-'}")

    fetched = verification.GetVerification(
        v.GetVerificationRequest(verification_id=started.verification_id), **call
    ).verification
    print(f"verification: {status_name(fetched.status)} method={fetched.method_id}")

    platform = {**call, "metadata": (("authorization", f"Bearer {PLATFORM_TOKEN}"),)}
    account = accounts.GetAccount(stubs.account.GetAccountRequest(account_id=account_id), **platform).account
    print(
        f"account {account.account_id}: verified={account.verified}"
        f" binding={stubs.account.BindingState.Name(account.binding_state)}"
        f" assurance={common.AssuranceLevel.Name(account.assurance)}"
        f" age_band={stubs.account.AgeBand.Name(account.age_band)}"
    )
    return 0 if fetched.status == v.VERIFICATION_STATUS_VERIFIED else 1


def main() -> int:
    """Runs the signup; a refused call prints its reason and exits with 1."""
    with tempfile.TemporaryDirectory() as out:
        stubs = Stubs(Path(out))
        with grpc.insecure_channel(TARGET) as channel:
            try:
                return signup(stubs, channel)
            except grpc.RpcError as error:
                print(f"refused: {describe_error(stubs, error)}")
                return 1


if __name__ == "__main__":
    sys.exit(main())
