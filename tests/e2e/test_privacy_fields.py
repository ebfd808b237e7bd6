"""A hostile caller writes a person's identity into every free field: none of it is kept in the clear.

A registrar, platform or auditor chooses request ids, account ids, consent text versions, return
URLs and filters. Each string field of each request of those services (recursively: subjects,
maps, repeated fields) is filled with a test person's name, ID number and phone, valid calls and
refused ones alike, with the request id header and a malformed ``traceparent`` too; a signup that
succeeds uses the ID number as its request id and the phone as its account id. Then Redis (every
key and value), the AOF, the server's log with its spans (console exporter) and the audit log
as an auditor reads it are searched for each value, in the clear and as SHA-256 / MD5 hex.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, consent_pb2, verification_pb2

from .conftest import Identity, embedded_redis, everything_stored, needles_of, person

pytestmark = pytest.mark.e2e

# Spans are printed into the captured log, so the scan of the log covers them too; JSON log lines
# carry every field a log record has (request and trace ids included).
CONFIG = """
log_format = "json"

[telemetry]
traces = "console"
sample_ratio = 1.0
"""
IDENTITY_TEXT = text_version_of("我们收集您的姓名和身份证号码仅用于实名认证。")
PHONE_TEXT = text_version_of("我们收集您的手机号码仅用于发送验证码。")
SERVICES: list[tuple[ServiceDescriptor, str, str]] = [
    (verification_pb2.DESCRIPTOR.services_by_name["VerificationService"], "verification", "registrar"),
    (consent_pb2.DESCRIPTOR.services_by_name["ConsentService"], "consent", "registrar"),
    (account_pb2.DESCRIPTOR.services_by_name["AccountService"], "account", "platform"),
    (audit_pb2.DESCRIPTOR.services_by_name["AuditService"], "audit", "auditor"),
]


def filled(descriptor: Descriptor, value: str) -> Message:
    """A request of ``descriptor`` with every string field set to ``value`` and every enum set."""
    request = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(request, field.name)[value] = value
        elif field.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                getattr(request, field.name).extend([value, value])
            else:
                setattr(request, field.name, value)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            number = field.enum_type.values[min(1, len(field.enum_type.values) - 1)].number
            if repeated:
                getattr(request, field.name).append(number)
            else:
                setattr(request, field.name, number)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name.startswith(
            "idverify"
        ):
            if repeated:
                getattr(request, field.name).append(filled(field.message_type, value))
            else:
                getattr(request, field.name).CopyFrom(filled(field.message_type, value))
    return request


def call_everything(clients: dict[str, Client], value: str) -> list[str]:
    """Calls every method of every service with ``value`` in every string field; the methods called."""
    # A header carries ASCII only (gRPC refuses anything else before sending).
    metadata = (
        (("x-request-id", value), ("traceparent", f"00-{value}-00f067aa0ba902b7-01"))
        if value.isascii()
        else ()
    )
    called, broken = [], []
    for service, stub_name, role in SERVICES:
        stub = getattr(clients[role], stub_name)
        for method in service.methods:
            request = filled(method.input_type, value)
            try:
                answer = getattr(stub, method.name)(request, metadata=metadata, timeout=10)
                if method.server_streaming:
                    list(answer)
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.INTERNAL:  # refusals are expected, breakage is not
                    broken.append(method.full_name)
            called.append(method.full_name)
    assert broken == []
    return called


def signup_with_identity_in_free_fields(server: ServerProcess, registrar: Client, victim: Identity) -> None:
    """A signup that succeeds with the ID number as request id and the phone as account id."""
    metadata = (("x-request-id", victim.number),)
    started = registrar.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=victim.number,
            account_id=victim.phone,
            method_id="sms",
            subject=victim.subject(),
            consents=["identity", "phone"],
            consent_text_versions={"identity": IDENTITY_TEXT, "phone": PHONE_TEXT},
            client_ip="203.0.113.9",
        ),
        metadata=metadata,
    ).verification
    assert started.status == verification_pb2.VERIFICATION_STATUS_CHALLENGE_SENT, started
    done = registrar.verification.SubmitChallenge(
        verification_pb2.SubmitChallengeRequest(
            verification_id=started.verification_id, code=server.sms_code(started.verification_id)
        ),
        metadata=metadata,
    ).verification
    assert done.status == verification_pb2.VERIFICATION_STATUS_VERIFIED, done
    registrar.consent.GrantConsent(
        consent_pb2.GrantConsentRequest(account_id=victim.phone, purpose="phone", text_version=PHONE_TEXT),
        metadata=metadata,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("privacy"), config=CONFIG) as running:
        yield running


class TestEveryFreeField:
    def test_no_caller_supplied_field_keeps_the_identity_in_the_clear(self, server: ServerProcess) -> None:
        victim = person()
        roles = ("registrar", "platform", "auditor")
        clients = {role: server.client(role) for role in roles}
        try:
            signup_with_identity_in_free_fields(server, clients["registrar"], victim)
            for value in (victim.name, victim.number, victim.phone):
                assert len(call_everything(clients, value)) >= 16
            audit = [
                str(answer).encode()
                for answer in clients["auditor"].audit.QueryEvents(audit_pb2.QueryEventsRequest(limit=1000))
            ]
            assert len(audit) > 5
        finally:
            for client in clients.values():
                client.close()
        haystack = [*audit, *everything_stored(embedded_redis(server))]
        server.stop()  # flushes the spans still batched into the log
        haystack.append(server.log_text().encode())
        assert b'"trace_id"' in haystack[-1] or b"trace_id" in haystack[-1]  # the spans were printed
        haystack.extend(
            path.read_bytes() for path in (server.data_dir / "redis").glob("*.aof*") if path.is_file()
        )
        blob = b"\n".join(haystack)
        leaks = sorted(needle.decode() for needle in needles_of(victim) if needle in blob)
        assert leaks == []
