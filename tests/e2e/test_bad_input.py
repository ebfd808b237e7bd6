"""Bad input gets a precise status naming the field, and never changes what is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis

from idverify.client import Client
from idverify.domain.consent import text_version_of
from idverify.store.keys import GlobalKeys
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, common_pb2, consent_pb2, verification_pb2

from .conftest import embedded_redis, person, rich_error, text_versions, verify

pytestmark = pytest.mark.e2e
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def valid_request(**changes: Any) -> verification_pb2.StartVerificationRequest:
    identity = person()
    request = verification_pb2.StartVerificationRequest(
        request_id="req-bad",
        account_id="acct-bad",
        method_id="sms",
        subject=identity.subject(),
        consents=["identity", "phone"],
        client_ip="198.51.100.7",
    )
    subject_changes = changes.pop("subject", {})
    for name, value in subject_changes.items():
        setattr(request.subject, name, value)
    for name, value in changes.items():
        field = getattr(request, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        elif isinstance(value, dict):
            field.update(value)
        else:
            setattr(request, name, value)
    if "consent_text_versions" not in changes:
        request.consent_text_versions.update(text_versions(request.consents))
    return request


def snapshot(store: redis.Redis) -> dict[bytes, object]:
    """Every key with its value, to show that a refused call changed nothing."""
    state: dict[bytes, object] = {}
    for key in store.scan_iter(count=1000):
        if b":audit:tree" in key:
            continue  # the Merkle tree is derived from the log, folded in by a background task
        if key.startswith(GlobalKeys.keyring_instance("").encode()):
            continue  # each worker reports its keyring when it gets to it, whatever the calls
        kind = store.type(key)
        if kind == b"hash":
            state[key] = store.hgetall(key)
        elif kind == b"string":
            state[key] = store.get(key)
        elif kind == b"set":
            state[key] = store.smembers(key)
        elif kind == b"list":
            state[key] = store.lrange(key, 0, -1)
        elif kind == b"zset":
            state[key] = store.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            # The outbox, and a bucket's staged audit entries ({t:T:B}): a refused call stages none.
            state[key] = store.xrange(key)
    return state


@pytest.fixture(scope="module")
def seeded(server: ServerProcess, registrar: Client) -> redis.Redis:
    """Some stored state (a verified account) to prove bad calls do not touch it."""
    verify(server, registrar, person(), "acct-seed")
    return embedded_redis(server)


START_CASES: list[tuple[str, dict[str, Any], grpc.StatusCode, str, str]] = [
    ("empty request id", {"request_id": ""}, INVALID, "request_id", "EMPTY"),
    ("request id too long", {"request_id": "r" * 300}, INVALID, "request_id", "TOO_LONG"),
    ("control character in account id", {"account_id": "acct\x00x"}, INVALID, "account_id", ""),
    ("unknown method", {"method_id": "telepathy"}, INVALID, "method_id", "UNKNOWN_METHOD"),
    ("empty name", {"subject": {"name": ""}}, INVALID, "subject.name", ""),
    ("huge name", {"subject": {"name": "名" * 5000}}, INVALID, "subject.name", "TOO_LONG"),
    ("control character in name", {"subject": {"name": "张\u0007三"}}, INVALID, "subject.name", ""),
    ("no document type", {"subject": {"document_type": 0}}, INVALID, "subject.document_type", "EMPTY"),
    (
        "unknown document type",
        {"subject": {"document_type": 77}},
        INVALID,
        "subject.document_type",
        "UNKNOWN_ENUM",
    ),
    ("unknown subject kind", {"subject": {"kind": 9}}, INVALID, "subject.kind", "UNKNOWN_ENUM"),
    (
        "bad checksum",
        {"subject": {"document_number": "11010519900307123X"}},
        INVALID,
        "subject.document_number",
        "CHECKSUM_MISMATCH",
    ),
    (
        "impossible birth date",
        {"subject": {"document_number": "110105199002301232"}},
        INVALID,
        "subject.document_number",
        "",
    ),
    (
        "letters in RIC",
        {"subject": {"document_number": "ABCDEFGHIJKLMNOPQR"}},
        INVALID,
        "subject.document_number",
        "",
    ),
    ("empty document number", {"subject": {"document_number": ""}}, INVALID, "subject.document_number", ""),
    ("bad phone", {"subject": {"phone_number": "12345"}}, INVALID, "subject.phone_number", ""),
    (
        "declared date not a date",
        {"subject": {"birth_date": "1990-02-30"}},
        INVALID,
        "subject.birth_date",
        "BAD_BIRTH_DATE",
    ),
    (
        "declared date in the future",
        {"subject": {"birth_date": "2999-01-01"}},
        INVALID,
        "subject.birth_date",
        "BIRTH_DATE_IN_FUTURE",
    ),
    (
        "declared date not the document's",
        {"subject": {"birth_date": "1970-01-01"}},
        INVALID,
        "subject.birth_date",
        "BIRTH_DATE_MISMATCH",
    ),
    (
        "organization code for a person",
        {
            "subject": {
                "document_type": common_pb2.DOCUMENT_TYPE_CN_USCC,
                "document_number": "91110000600037341L",
            }
        },
        INVALID,
        "subject.document_type",
        "KIND_MISMATCH",
    ),
    (
        "unknown consent purpose",
        {"consents": ["identity", "phone", "everything"]},
        INVALID,
        "consents[2]",
        "UNKNOWN_PURPOSE",
    ),
    (
        "bundled consent",
        {"consents": ["identity,financial", "phone"]},
        INVALID,
        "consents[0]",
        "BUNDLED_CONSENT",
    ),
    (
        "consent without its text version",
        {"consent_text_versions": text_versions(["identity"])},
        INVALID,
        "consent_text_versions[phone]",
        "TEXT_VERSION_REQUIRED",
    ),
    (
        "consent text version not a digest",
        {"consent_text_versions": {**text_versions(["identity"]), "phone": "v2"}},
        INVALID,
        "consent_text_versions[phone]",
        "BAD_TEXT_VERSION",
    ),
    (
        "missing phone consent",
        {"consents": ["identity"]},
        grpc.StatusCode.FAILED_PRECONDITION,
        "consents",
        "CONSENT_REQUIRED",
    ),
    ("bad client ip", {"client_ip": "300.1.1.1"}, INVALID, "client_ip", "BAD_IP"),
]


class TestStartVerification:
    @pytest.mark.parametrize(
        ("case", "changes", "code", "field", "reason"), START_CASES, ids=[c[0] for c in START_CASES]
    )
    def test_refused_with_field_and_reason(
        self,
        registrar: Client,
        seeded: redis.Redis,
        case: str,
        changes: dict[str, Any],
        code: grpc.StatusCode,
        field: str,
        reason: str,
    ) -> None:
        """Each malformed field gets its status, names the field, and stores nothing."""
        del case
        before = snapshot(seeded)
        with pytest.raises(grpc.RpcError) as refused:
            registrar.verification.StartVerification(valid_request(**changes))
        assert refused.value.code() is code
        got_reason, got_field = rich_error(refused.value)
        assert got_field == field
        if reason:
            assert got_reason == reason
        assert snapshot(seeded) == before


def _calls(client: Client) -> list[tuple[str, Callable[[], object], grpc.StatusCode, str]]:
    unknown = "0" * 32
    return [
        (
            "submit: malformed id",
            lambda: client.verification.SubmitChallenge(
                verification_pb2.SubmitChallengeRequest(verification_id="../etc", code="123456")
            ),
            INVALID,
            "verification_id",
        ),
        (
            "submit: unknown id",
            lambda: client.verification.SubmitChallenge(
                verification_pb2.SubmitChallengeRequest(verification_id=unknown, code="123456")
            ),
            grpc.StatusCode.NOT_FOUND,
            "verification_id",
        ),
        (
            "submit: letters as code",
            lambda: client.verification.SubmitChallenge(
                verification_pb2.SubmitChallengeRequest(verification_id=unknown, code="abc")
            ),
            INVALID,
            "code",
        ),
        (
            "submit: empty code",
            lambda: client.verification.SubmitChallenge(
                verification_pb2.SubmitChallengeRequest(verification_id=unknown, code="")
            ),
            INVALID,
            "code",
        ),
        (
            "get: unknown id",
            lambda: client.verification.GetVerification(
                verification_pb2.GetVerificationRequest(verification_id=unknown)
            ),
            grpc.StatusCode.NOT_FOUND,
            "verification_id",
        ),
        (
            "get: empty id",
            lambda: client.verification.GetVerification(verification_pb2.GetVerificationRequest()),
            INVALID,
            "verification_id",
        ),
        (
            "check: empty account",
            lambda: client.verification.CheckIdentity(
                verification_pb2.CheckIdentityRequest(subject=person().subject())
            ),
            INVALID,
            "account_id",
        ),
        (
            "check: bad number",
            lambda: client.verification.CheckIdentity(
                verification_pb2.CheckIdentityRequest(
                    account_id="a", subject=person().subject(document_number="1")
                )
            ),
            INVALID,
            "subject.document_number",
        ),
        (
            "consent: bundled purposes",
            lambda: client.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="a", purpose="identity,phone", text_version=text_version_of("v1")
                )
            ),
            INVALID,
            "purpose",
        ),
        (
            "consent: no text version",
            lambda: client.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(account_id="a", purpose="financial")
            ),
            INVALID,
            "text_version",
        ),
        (
            "consent: unknown verification",
            lambda: client.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="a",
                    purpose="guardian",
                    text_version=text_version_of("v1"),
                    verification_id=unknown,
                    guardian_account_id="b",
                    relationship=consent_pb2.GUARDIAN_RELATIONSHIP_PARENT,
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            "verification_id",
        ),
        (
            "consent: a guardian who states no relationship",
            lambda: client.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="a",
                    purpose="guardian",
                    text_version=text_version_of("v1"),
                    verification_id=unknown,
                    guardian_account_id="b",
                )
            ),
            INVALID,
            "relationship",
        ),
    ]


class TestOtherCalls:
    def test_each_bad_call_is_refused_precisely(self, registrar: Client, seeded: redis.Redis) -> None:
        """Malformed or unknown ids get INVALID_ARGUMENT or NOT_FOUND naming the field."""
        before = snapshot(seeded)
        for case, call, code, field in _calls(registrar):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert (case, refused.value.code(), rich_error(refused.value)[1]) == (case, code, field)
        assert snapshot(seeded) == before

    def test_batch_of_ip_locations_is_bounded(self, server: ServerProcess) -> None:
        """More than 1,000 accounts in one GetIpLocations call is refused."""
        with server.client("platform") as platform, pytest.raises(grpc.RpcError) as refused:
            platform.account.GetIpLocations(
                account_pb2.GetIpLocationsRequest(account_ids=[f"a{i}" for i in range(1001)])
            )
        assert refused.value.code() is INVALID
        assert rich_error(refused.value) == ("TOO_MANY", "account_ids")

    def test_a_bad_entry_in_a_batch_is_named_by_its_index(self, server: ServerProcess) -> None:
        """A caller sending a thousand ids learns which one is bad: its index as sent.

        The duplicates before it count, so the index is the caller's, not the deduplicated one's.
        """
        ids = ["a1", "a2", "a1", "138 0013 8000", "a5"]
        with server.client("platform") as platform, pytest.raises(grpc.RpcError) as refused:
            platform.account.GetIpLocations(account_pb2.GetIpLocationsRequest(account_ids=ids))
        assert refused.value.code() is INVALID
        assert rich_error(refused.value) == ("BAD_CHARACTERS", "account_ids[3]")
        # The index names the entry; the value (an id that may be a phone) is not echoed back.
        trailers = b"".join(v for _, v in refused.value.trailing_metadata() if isinstance(v, bytes))
        assert b"0013" not in trailers
        assert "0013" not in refused.value.details()
        with server.client("platform") as platform, pytest.raises(grpc.RpcError) as refused:
            platform.account.GetIpLocations(account_pb2.GetIpLocationsRequest(account_ids=["a1", ""]))
        assert rich_error(refused.value) == ("EMPTY", "account_ids[1]")

    @pytest.mark.parametrize(
        ("filters", "field"),
        [
            ({"event_types": ["verification.started", "\x00"]}, "event_types[1]"),
            ({"outcomes": ["x" * 1000]}, "outcomes[0]"),
            ({"method_id": "\x00"}, "method_id"),
        ],
    )
    def test_a_bad_audit_filter_value_is_named_by_its_index(
        self, server: ServerProcess, filters: dict[str, Any], field: str
    ) -> None:
        """QueryEvents names the list entry at fault; a single value keeps its plain field."""
        with server.client("auditor") as auditor, pytest.raises(grpc.RpcError) as refused:
            list(auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(**filters)))
        assert refused.value.code() is INVALID
        assert rich_error(refused.value) == ("BAD_FILTER", field)

    def test_oversized_messages_are_refused(self, registrar: Client) -> None:
        """A message over the 1 MiB limit is refused before any work."""
        with pytest.raises(grpc.RpcError) as refused:
            registrar.verification.StartVerification(valid_request(request_id="x" * (2 << 20)))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


class TestWireLevel:
    @pytest.mark.parametrize("payload", [b"\x0a\x02\xff\xfe", b"\x0a\xff", b"\xff\xff\xff", b"\x12\x05ab"])
    def test_malformed_protobuf_and_bad_utf8_are_invalid_argument(
        self, server: ServerProcess, payload: bytes
    ) -> None:
        """Bytes that do not parse (bad wire format, invalid UTF-8) get INVALID_ARGUMENT, not UNKNOWN."""
        with grpc.insecure_channel(server.target) as channel:
            call = channel.unary_unary(
                "/idverify.v1.VerificationService/StartVerification",
                request_serializer=lambda data: data,
                response_deserializer=lambda data: data,
            )
            with pytest.raises(grpc.RpcError) as refused:
                call(payload, metadata=(("authorization", f"Bearer {server.token('registrar')}"),), timeout=5)
        assert refused.value.code() is INVALID
        assert rich_error(refused.value) == ("MALFORMED", "request")
