"""The audit log end to end: signups, then an auditor's queries, proofs, export and offline verify."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idverify.audit import merkle
from idverify.audit.checkpoint import SignedHead, TreeHead, load_public_key, verify_signed_head
from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import admin_pb2, audit_pb2, verification_pb2

from .conftest import IDENTITIES, person, rich_error, start, submit, verify, wrong_code

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
SIGNUP_EVENTS = [
    ("verification.started", "started"),
    ("verification.step", "pass"),
    ("verification.step", "challenge"),
    ("challenge.sent", "sent"),
    ("challenge.passed", "pass"),
    ("account.bound", "bound"),
    ("verification.verified", "verified"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a few signups already done (one of them with a wrong code first)."""
    with ServerProcess(tmp_path_factory.mktemp("audit")) as running:
        with running.client("registrar") as registrar:
            for n in range(3):
                verify(running, registrar, person(), f"audit-acct-{n}")
            started = start(registrar, person(), "audit-wrong")
            code = running.sms_code(started.verification_id)
            submit(registrar, started.verification_id, wrong_code(code))
            submit(registrar, started.verification_id, code)
        yield running


@pytest.fixture(scope="module")
def auditor(server: ServerProcess) -> Iterator[Client]:
    with server.client("auditor") as client:
        yield client


def signed_head(message: audit_pb2.SignedTreeHead) -> SignedHead:
    stamp = message.timestamp
    head = TreeHead(
        message.origin, message.tree_size, message.root_hash, stamp.seconds * 1000 + stamp.nanos // 10**6
    )
    return SignedHead(head, message.key_id, message.signature)


def events(client: Client, **fields: object) -> list[audit_pb2.QueryEventsResponse]:
    return list(client.audit.QueryEvents(audit_pb2.QueryEventsRequest(**fields)))  # type: ignore[arg-type]


def call(client: Client, rpc: str, request: object) -> object:
    """Calls an audit RPC, draining it when it streams."""
    answer = getattr(client.audit, rpc)(request)
    return list(answer) if rpc == "QueryEvents" else answer


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idverify", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestQueries:
    def test_a_signup_is_recorded_step_by_step_for_its_account(self, auditor: Client) -> None:
        """Querying by account id returns the signup's events in order, with outcomes and no personal data."""
        found = events(auditor, account_id="audit-acct-1")
        consents = [e.event for e in found if e.event.type == "consent.granted"]
        assert {c.attributes["purpose"] for c in consents} <= {"identity", "phone"}
        found = [e for e in found if e.event.type != "consent.granted"]
        assert [(e.event.type, e.event.outcome) for e in found] == SIGNUP_EVENTS
        first = found[0].event
        assert first.method_id == "sms"
        assert first.principal.startswith("default/registrar/")
        assert len(first.account_pseudonym) == 32
        assert "audit-acct-1" not in str(found)
        assert [s.verifier for s in found[1].event.steps] == ["document"]
        assert [e.event.index for e in found] == sorted(e.event.index for e in found)

    def test_a_wrong_code_is_recorded_with_its_reason(self, auditor: Client) -> None:
        """A failed challenge appears as challenge.failed with OTP_MISMATCH."""
        found = events(auditor, account_id="audit-wrong", event_types=["challenge.failed"])
        assert [(e.event.outcome, e.event.reason_code) for e in found] == [("mismatch", "OTP_MISMATCH")]

    def test_filters_by_type_outcome_method_and_time(self, auditor: Client) -> None:
        """Type, outcome, method and time filters each narrow the stream as asked."""
        verified = events(auditor, event_types=["verification.verified"])
        assert len(verified) == 4
        assert all(e.event.outcome == "verified" for e in verified)
        assert len(events(auditor, outcomes=["bound"])) == 4
        assert events(auditor, method_id="org_document") == []
        everything = events(auditor)
        middle = everything[len(everything) // 2].event.time
        later = events(auditor, start_time=middle)
        earlier = events(auditor, end_time=middle)
        assert len(later) + len(earlier) == len(everything)
        assert all(e.event.time.ToMilliseconds() >= middle.ToMilliseconds() for e in later)

    def test_paging_resumes_where_it_left_off(self, auditor: Client) -> None:
        """start_index and limit page through the log without gaps or repeats."""
        everything = [e.event.index for e in events(auditor)]
        paged: list[int] = []
        while len(paged) < len(everything):
            page = events(auditor, start_index=paged[-1] + 1 if paged else 0, limit=4)
            assert 0 < len(page) <= 4
            paged += [e.event.index for e in page]
        assert paged == everything

    def test_client_changes_are_audited(self, server: ServerProcess, auditor: Client) -> None:
        """Creating and revoking a client append entries naming the admin who did it."""
        with server.client("admin") as admin:
            created = admin.admin.CreateClient(
                admin_pb2.CreateClientRequest(tenant="default", role="platform")
            )
            admin.admin.RevokeClient(admin_pb2.RevokeClientRequest(client_id=created.client.client_id))
        found = [
            e.event
            for e in events(auditor, event_types=["client.created", "client.revoked"])
            if e.event.attributes["client_id"] == created.client.client_id
        ]
        assert [e.type for e in found] == ["client.created", "client.revoked"]
        assert all(e.principal.startswith("default/admin/") for e in found)
        assert found[0].attributes["role"] == "platform"


class TestProofs:
    def test_the_head_verifies_and_every_entry_is_provably_in_it(self, auditor: Client) -> None:
        """The signed head verifies under the key it names; each entry's inclusion proof reaches its root."""
        answer = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest())
        key = load_public_key(answer.public_key.encode())
        head = signed_head(answer.head)
        verify_signed_head(head, key)
        assert head.head.origin == "idverify/default"
        for index in range(head.head.size):
            event = auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=index))
            assert json.loads(event.leaf)["seq"] == index == event.event.index
            proof = auditor.audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, tree_size=head.head.size)
            )
            assert proof.leaf_hash == merkle.leaf_hash(event.leaf)
            merkle.verify_inclusion(
                proof.leaf_hash, index, head.head.size, list(proof.hashes), head.head.root_hash
            )

    def test_a_later_head_is_consistent_with_an_earlier_one(
        self, server: ServerProcess, auditor: Client
    ) -> None:
        """After more signups, the consistency proof links the trusted old head to the new one."""
        old = signed_head(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        with server.client("registrar") as registrar:
            verify(server, registrar, person(), "audit-later")
        new = signed_head(auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head)
        assert new.head.size > old.head.size
        proof = auditor.audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first=old.head.size, second=new.head.size)
        )
        merkle.verify_consistency(
            old.head.size, new.head.size, list(proof.hashes), old.head.root_hash, new.head.root_hash
        )


NOT_YET = 10**9  # a position this log will not reach during the tests
REFUSALS = {
    "index past the tree size": (
        "GetInclusionProof",
        {"index": 5, "tree_size": 3},
        "INVALID_ARGUMENT",
        "INDEX_NOT_IN_TREE",
    ),
    "empty tree": (
        "GetInclusionProof",
        {"index": 0, "tree_size": 0},
        "INVALID_ARGUMENT",
        "INDEX_NOT_IN_TREE",
    ),
    "size not reached": (
        "GetInclusionProof",
        {"index": 0, "tree_size": NOT_YET},
        "OUT_OF_RANGE",
        "TREE_SIZE_NOT_REACHED",
    ),
    "huge size": (
        "GetInclusionProof",
        {"index": 2**64 - 2, "tree_size": 2**64 - 1},
        "OUT_OF_RANGE",
        "TREE_SIZE_NOT_REACHED",
    ),
    "first after second": (
        "GetConsistencyProof",
        {"first": 5, "second": 3},
        "INVALID_ARGUMENT",
        "FIRST_AFTER_SECOND",
    ),
    "from the empty tree": (
        "GetConsistencyProof",
        {"first": 0, "second": 3},
        "INVALID_ARGUMENT",
        "EMPTY_TREE",
    ),
    "second not reached": (
        "GetConsistencyProof",
        {"first": 1, "second": NOT_YET},
        "OUT_OF_RANGE",
        "TREE_SIZE_NOT_REACHED",
    ),
    "event past the end": ("GetEvent", {"index": NOT_YET}, "OUT_OF_RANGE", "INDEX_NOT_REACHED"),
    "reversed times": (
        "QueryEvents",
        {"start_time": Timestamp(seconds=20), "end_time": Timestamp(seconds=10)},
        "INVALID_ARGUMENT",
        "REVERSED_RANGE",
    ),
    "negative time": (
        "QueryEvents",
        {"start_time": Timestamp(seconds=-5)},
        "INVALID_ARGUMENT",
        "NEGATIVE_TIME",
    ),
}


class TestRefusals:
    @pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
    def test_bad_positions_and_ranges_get_precise_codes(
        self, auditor: Client, case: tuple[str, dict[str, object], str, str]
    ) -> None:
        """Self-contradicting requests are INVALID_ARGUMENT; positions not reached yet are OUT_OF_RANGE."""
        rpc, fields, code, reason = case
        request = getattr(audit_pb2, f"{rpc}Request")(**fields)
        with pytest.raises(grpc.RpcError) as refused:
            call(auditor, rpc, request)
        assert refused.value.code().name == code
        assert rich_error(refused.value)[0] == reason

    def test_an_auditor_sees_only_its_own_tenant(self, server: ServerProcess) -> None:
        """An auditor of tenant B naming the default tenant gets PERMISSION_DENIED, and sees only B."""
        with server.client("auditor", tenant="tenant-b") as other:
            with pytest.raises(grpc.RpcError) as refused:
                other.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant="default"))
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as refused_stream:
                events(other, tenant="default")
            assert refused_stream.value.code() is grpc.StatusCode.PERMISSION_DENIED
            own = events(other)
            assert {e.event.type for e in own} == {"client.created"}
            assert other.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).head.origin == "idverify/tenant-b"

    def test_an_admin_reads_its_own_tenants_log_only(self, server: ServerProcess) -> None:
        """An admin names its own tenant or none; any other name is PERMISSION_DENIED.

        Known, unknown or malformed: the answer tells nothing about which tenants exist.
        """
        server.token("auditor", tenant="tenant-c")
        with server.client("admin") as admin:
            head = admin.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant="default")).head
            assert head.origin == "idverify/default"
            for other in ("tenant-c", "no-such-tenant", "Bad Name"):
                with pytest.raises(grpc.RpcError) as refused:
                    admin.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(tenant=other))
                assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED, other
                assert rich_error(refused.value)[0] == "OTHER_TENANT"


@pytest.fixture(scope="module")
def exported(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An export of the default tenant's log and the public key, both through the CLI."""
    directory = tmp_path_factory.mktemp("export")
    token = server.token("auditor")
    out = directory / "audit.jsonl"
    done = cli("--server", server.target, "--token", token, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    key = cli("--server", server.target, "--token", token, "public-key")
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    (directory / "log.pub").write_text(key.stdout)
    return out, directory / "log.pub"


class TestExport:
    def test_an_export_verifies_offline(self, exported: tuple[Path, Path]) -> None:
        """`idverify audit verify` accepts an untouched export with the log's public key."""
        out, key = exported
        done = cli("verify", str(out), "--public-key", str(key))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK:")

    def test_the_public_key_matches_the_servers_key_file(
        self, server: ServerProcess, exported: tuple[Path, Path]
    ) -> None:
        """public-key from the server and from the operator's key file are the same PEM."""
        local = cli("public-key", "--signing-key-file", str(server.data_dir / "audit-signing-key.pem"))
        assert local.stdout == exported[1].read_text()

    @pytest.mark.parametrize("tamper", ["alter", "remove", "reorder", "append"])
    def test_tampering_is_found_at_the_first_bad_entry(
        self, exported: tuple[Path, Path], tmp_path: Path, tamper: str
    ) -> None:
        """Altering, removing, reordering or appending an entry fails, naming its index."""
        out, key = exported
        lines = out.read_bytes().splitlines(keepends=True)
        target = 5
        position = 1 + target
        if tamper == "alter":
            lines[position] = lines[position].replace(b'"outcome":"', b'"outcome":"x', 1)
            expected = target
        elif tamper == "remove":
            del lines[position]
            expected = target
        elif tamper == "reorder":
            lines[position], lines[position + 1] = lines[position + 1], lines[position]
            expected = target
        else:
            lines.append(lines[-1])
            expected = len(lines) - 2
        forged = tmp_path / "forged.jsonl"
        forged.write_bytes(b"".join(lines))
        done = cli("verify", str(forged), "--public-key", str(key))
        assert done.returncode == 1
        assert f"first bad entry: {expected}:" in done.stdout

    def test_the_origin_is_printed_and_checked(self, exported: tuple[Path, Path]) -> None:
        """`audit verify` prints whose log it is; --origin naming another log fails, its own passes."""
        out, key = exported
        done = cli("verify", str(out), "--public-key", str(key), "--origin", "idverify/default")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK: idverify/default:")
        other = cli("verify", str(out), "--public-key", str(key), "--origin", "idverify/tenant-b")
        assert other.returncode == 1
        assert "'idverify/default', not 'idverify/tenant-b'" in other.stdout

    def test_a_changed_leaf_hash_is_found_at_its_entry(
        self, exported: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """One hex digit of one entry's leaf_hash changed, the entry untouched: fails naming that entry."""
        out, key = exported
        lines = out.read_bytes().splitlines(keepends=True)
        start = lines[4].index(b'"leaf_hash":"') + len(b'"leaf_hash":"')
        digit = b"1" if lines[4][start : start + 1] == b"0" else b"0"
        lines[4] = lines[4][:start] + digit + lines[4][start + 1 :]
        forged = tmp_path / "forged.jsonl"
        forged.write_bytes(b"".join(lines))
        done = cli("verify", str(forged), "--public-key", str(key))
        assert done.returncode == 1
        assert "first bad entry: 3:" in done.stdout

    def test_a_wrong_key_fails(self, exported: tuple[Path, Path], tmp_path: Path) -> None:
        """Verifying with another log's key fails."""
        other = tmp_path / "other-signing.pem"
        from idverify.audit.checkpoint import generate_signing_key_file, public_key_pem  # noqa: PLC0415

        (tmp_path / "other.pub").write_bytes(public_key_pem(generate_signing_key_file(other).public_key()))
        done = cli("verify", str(exported[0]), "--public-key", str(tmp_path / "other.pub"))
        assert done.returncode == 1
        assert "FAILED" in done.stdout

    def test_the_export_holds_no_personal_data(
        self, exported: tuple[Path, Path], server: ServerProcess
    ) -> None:
        """No test identity's name, number or phone, nor any account id, appears in the export."""
        text = exported[0].read_bytes()
        assert len(IDENTITIES) >= 5
        for identity in IDENTITIES:
            for value in (identity.name, identity.number, identity.phone, f"+86{identity.phone}"):
                raw = value.encode()
                for needle in (
                    raw,
                    hashlib.sha256(raw).hexdigest().encode(),
                    hashlib.md5(raw).hexdigest().encode(),  # noqa: S324 - finding MD5 forms is the point
                ):
                    assert needle not in text
        assert b"audit-acct-" not in text
        assert b"audit-wrong" not in text
        assert server.bootstrap_token().encode() not in text
