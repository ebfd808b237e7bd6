"""A person's copy of their data: ExportAccountData end to end, checked offline two ways.

The bundle's proofs are checked by a verifier written here from RFC 6962 section 2.1 (the
definitions of MTH and PATH, recomputed from the path's end), sharing no code with the
project's, and by ``idverify audit verify-bundle``; any tampering must fail both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from google.protobuf import json_format

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, verification_pb2

from .conftest import Identity, needles_of, person, record_login_ip, rich_error, text_versions, verify

pytestmark = pytest.mark.e2e
ACCOUNT = "export-acct-1"
Bundle = dict[str, object]


@pytest.fixture(scope="module")
def person_exported() -> Identity:
    return person()


@pytest.fixture(scope="module")
def platform(server: ServerProcess) -> Iterator[Client]:
    with server.client("platform") as client:
        yield client


@pytest.fixture(scope="module")
def exported(
    server: ServerProcess, registrar: Client, platform: Client, person_exported: Identity
) -> account_pb2.ExportAccountDataResponse:
    """A verified account with its consents and a login IP label, exported by its platform."""
    verified = verify(server, registrar, person_exported, ACCOUNT)
    assert verified.status == verification_pb2.VERIFICATION_STATUS_VERIFIED, verified
    record_login_ip(platform, ACCOUNT)
    answer: account_pb2.ExportAccountDataResponse = platform.account.ExportAccountData(
        account_pb2.ExportAccountDataRequest(account_id=ACCOUNT)
    )
    return answer


@pytest.fixture(scope="module")
def public_key_file(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with server.client("auditor") as auditor:
        pem = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key
    path = tmp_path_factory.mktemp("key") / "audit-public.pem"
    path.write_text(pem)
    return path


# ---------------------------------------------------------------------------------------------
# An RFC 6962 verifier of the bundle's JSON, from the RFC, on plain json and hashlib.


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc6962_root(leaf: bytes, m: int, n: int, path: list[bytes]) -> bytes | None:
    """The root a PATH(m, D[n]) leads to from leaf m, or None when the path has the wrong shape.

    RFC 6962 2.1.1: for n > 1 and k the largest power of two below n, PATH(m, D[n]) is
    PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]); the
    path of a single leaf is empty. MTH of one entry is SHA-256(0x00 || d), and of D[n] it is
    SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
    """
    if n == 1:
        return _sha256(b"\x00" + leaf) if not path else None
    if not path:
        return None
    k = _largest_power_of_two_below(n)
    *below, last = path
    if m < k:
        left = rfc6962_root(leaf, m, k, below)
        return None if left is None else _sha256(b"\x01" + left + last)
    right = rfc6962_root(leaf, m - k, n - k, below)
    return None if right is None else _sha256(b"\x01" + last + right)


def independently_verified(bundle: Bundle, public_key_pem: bytes) -> bool:
    """Whether the head's Ed25519 signature and every entry's proof check out."""
    head = bundle["head"]
    assert isinstance(head, dict)
    size = int(head.get("treeSize", "0"))
    root = base64.b64decode(head["rootHash"])
    stamp = datetime.fromisoformat(head["timestamp"])
    timestamp_ms = (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    checkpoint = f"{head['origin']}\n{size}\n{base64.b64encode(root).decode()}\n{timestamp_ms}\n".encode()
    key = load_pem_public_key(public_key_pem)
    try:
        key.verify(base64.b64decode(head["signature"]), checkpoint)  # type: ignore[union-attr,call-arg]
    except InvalidSignature:
        return False
    entries = bundle.get("auditEntries", [])
    assert isinstance(entries, list)
    for entry in entries:
        index = int(entry.get("index", "0"))
        leaf = base64.b64decode(entry["leaf"])
        path = [base64.b64decode(value) for value in entry.get("inclusionProof", [])]
        if not 0 <= index < size or rfc6962_root(leaf, index, size, path) != root:
            return False
    return True


def verify_bundle_cli(path: Path, public_key_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "idverify",
            "audit",
            "verify-bundle",
            str(path),
            "--public-key",
            str(public_key_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def as_json(answer: account_pb2.ExportAccountDataResponse) -> Bundle:
    document: Bundle = json.loads(json_format.MessageToJson(answer))
    return document


def _flip_base64(value: str, position: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[position] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _tamper_leaf(bundle: Bundle, which: int) -> None:
    entries = bundle["auditEntries"]
    assert isinstance(entries, list)
    leaf = base64.b64decode(entries[which]["leaf"])
    # A digit of the entry's time: still a well-formed entry, one byte different.
    position = leaf.index(b'"time_ms":') + len(b'"time_ms":') + 3
    digit = b"1" if leaf[position : position + 1] != b"1" else b"2"
    entries[which]["leaf"] = base64.b64encode(leaf[:position] + digit + leaf[position + 1 :]).decode()


def _tamper_proof(bundle: Bundle) -> None:
    entries = bundle["auditEntries"]
    assert isinstance(entries, list)
    entry = next(e for e in entries if e.get("inclusionProof"))
    entry["inclusionProof"][0] = _flip_base64(entry["inclusionProof"][0], 5)


def _tamper_head(bundle: Bundle, field: str) -> None:
    head = bundle["head"]
    assert isinstance(head, dict)
    head[field] = _flip_base64(head[field], 7)


# ---------------------------------------------------------------------------------------------


class TestBundle:
    def test_holds_the_account_its_consents_ip_label_and_erasure_state(
        self, exported: account_pb2.ExportAccountDataResponse
    ) -> None:
        """The view, the consents with their text versions and times, the IP label, the erasure state."""
        account = exported.account
        assert account.account_id == ACCOUNT
        assert account.verified
        assert account.binding_state == account_pb2.BINDING_STATE_BOUND
        assert account.ip_location.country_code == "US"
        assert account.HasField("ip_recorded_at")
        versions = text_versions(("identity", "phone"))
        assert {c.purpose: c.text_version for c in exported.consents} == versions
        assert all(c.granted and c.HasField("granted_at") for c in exported.consents)
        assert exported.erasure_state == account_pb2.ERASURE_STATE_NOT_SCHEDULED
        assert exported.next_start_index == 0

    def test_names_what_is_held_as_keyed_hashes_or_sealed(
        self, exported: account_pb2.ExportAccountDataResponse
    ) -> None:
        """Held values are named with their form and record, never shown."""
        held = {(h.item, h.form, h.record) for h in exported.held_values}
        assert {
            ("account_id", account_pb2.HELD_FORM_KEYED_HASH, "account"),
            ("document_number", account_pb2.HELD_FORM_KEYED_HASH, "account"),
            ("name", account_pb2.HELD_FORM_KEYED_HASH, "account"),
            ("birth_date", account_pb2.HELD_FORM_SEALED, "account"),
            ("document_number", account_pb2.HELD_FORM_SEALED, "identity"),
        } <= held

    def test_lists_every_entry_about_the_account_and_the_export_itself(
        self, exported: account_pb2.ExportAccountDataResponse, server: ServerProcess
    ) -> None:
        """The bundle's entries are exactly the auditor's query for the account, up to the head."""
        with server.client("auditor") as auditor:
            seen = auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(account_id=ACCOUNT))
            expected = [item.leaf for item in seen if item.event.index < exported.head.tree_size]
        assert [entry.leaf for entry in exported.audit_entries] == expected
        types = [json.loads(entry.leaf)["type"] for entry in exported.audit_entries]
        assert {"consent.granted", "account.bound", "login_ip.recorded"} <= set(types)
        last = json.loads(exported.audit_entries[-1].leaf)
        assert last["type"] == "account.exported"
        assert last["principal"].startswith("default/platform/")

    def test_holds_no_personal_data(
        self, exported: account_pb2.ExportAccountDataResponse, person_exported: Identity
    ) -> None:
        """No name, number or phone, in the clear or hashed, in the bundle or its entries."""
        text = json_format.MessageToJson(exported).encode() + b"".join(e.leaf for e in exported.audit_entries)
        assert not [needle for needle in needles_of(person_exported) if needle in text]

    def test_pages_from_a_start_index(
        self, platform: Client, exported: account_pb2.ExportAccountDataResponse
    ) -> None:
        """start_index leaves out the entries before it; the new export is recorded and proven too."""
        from_index = exported.audit_entries[-1].index
        again = platform.account.ExportAccountData(
            account_pb2.ExportAccountDataRequest(account_id=ACCOUNT, start_index=from_index)
        )
        indices = [entry.index for entry in again.audit_entries]
        assert indices[0] == from_index
        assert len(indices) == 2
        assert json.loads(again.audit_entries[-1].leaf)["attributes"]["start_index"] == str(from_index)


class TestOfflineVerification:
    def test_both_verifiers_accept_the_bundle(
        self, exported: account_pb2.ExportAccountDataResponse, public_key_file: Path, tmp_path: Path
    ) -> None:
        """The RFC 6962 verifier here and `idverify audit verify-bundle` both check every proof."""
        assert len(exported.audit_entries) >= 5
        assert independently_verified(as_json(exported), public_key_file.read_bytes())
        path = tmp_path / "bundle.json"
        path.write_text(json_format.MessageToJson(exported))
        result = verify_bundle_cli(path, public_key_file)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK: idverify/default:")

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param(lambda b: _tamper_leaf(b, -1), id="the export's own entry"),
            pytest.param(lambda b: _tamper_leaf(b, 0), id="the first entry"),
            pytest.param(_tamper_proof, id="a proof hash"),
            pytest.param(lambda b: _tamper_head(b, "signature"), id="the head signature"),
            pytest.param(lambda b: _tamper_head(b, "rootHash"), id="the head root"),
        ],
    )
    def test_tampering_fails_both_verifiers(
        self,
        exported: account_pb2.ExportAccountDataResponse,
        public_key_file: Path,
        tmp_path: Path,
        tamper: Callable[[Bundle], None],
    ) -> None:
        """Any changed byte in an entry, a proof or the head is caught by both verifiers."""
        bundle = as_json(exported)
        tamper(bundle)
        assert not independently_verified(bundle, public_key_file.read_bytes())
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(bundle))
        result = verify_bundle_cli(path, public_key_file)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stdout.startswith("FAILED:")


class TestWhoMayExport:
    def test_another_tenants_account_reads_as_an_unknown_one(
        self, server: ServerProcess, exported: object
    ) -> None:
        """No oracle: another tenant's platform gets what an id never used there gets."""
        del exported
        with server.client("platform", tenant="exportother") as other:
            theirs = other.account.ExportAccountData(account_pb2.ExportAccountDataRequest(account_id=ACCOUNT))
            unknown = other.account.ExportAccountData(
                account_pb2.ExportAccountDataRequest(account_id="never-seen-here")
            )
        for answer in (theirs, unknown):
            assert not answer.account.verified
            assert answer.account.binding_state == account_pb2.BINDING_STATE_UNBOUND
            assert not answer.account.HasField("ip_location")
            assert list(answer.consents) == []
            assert list(answer.held_values) == []
            assert answer.erasure_state == account_pb2.ERASURE_STATE_NOT_SCHEDULED
            assert [json.loads(e.leaf)["type"] for e in answer.audit_entries] == ["account.exported"]
            assert answer.head.origin == "idverify/exportother"

    def test_other_roles_are_refused(self, server: ServerProcess) -> None:
        """Registrars and auditors may not export a person's data."""
        for role in ("registrar", "auditor"):
            with server.client(role) as client, pytest.raises(grpc.RpcError) as refused:
                client.account.ExportAccountData(account_pb2.ExportAccountDataRequest(account_id=ACCOUNT))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    def test_a_malformed_account_id_names_the_field(self, platform: Client) -> None:
        with pytest.raises(grpc.RpcError) as refused:
            platform.account.ExportAccountData(account_pb2.ExportAccountDataRequest(account_id=""))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(refused.value)[1] == "account_id"

    def test_a_cancelled_account_shows_its_scheduled_erasure(
        self, server: ServerProcess, registrar: Client, platform: Client
    ) -> None:
        verify(server, registrar, person(), "export-cancelled")
        due = platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="export-cancelled"))
        answer = platform.account.ExportAccountData(
            account_pb2.ExportAccountDataRequest(account_id="export-cancelled")
        )
        assert answer.erasure_state == account_pb2.ERASURE_STATE_SCHEDULED
        assert answer.account.erasure_due_at == due.erasure_due_at
        assert "account.cancelled" in [json.loads(e.leaf)["type"] for e in answer.audit_entries]


ERASE_AT_ONCE = "[erasure]\nworking_days = 0\npoll_seconds = 0.2\n"


def test_an_erased_account_shows_it_was_erased_and_keeps_its_proven_entries(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """After the erasure only audit entries remain: the bundle says erased and proves them."""
    with (
        ServerProcess(tmp_path_factory.mktemp("export-erased"), config=ERASE_AT_ONCE) as eraser,
        eraser.client() as registrar,
        eraser.client("platform") as platform,
    ):
        verify(eraser, registrar, person(), "export-erased")
        platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="export-erased"))
        with eraser.client("auditor") as auditor:
            pem = auditor.audit.GetTreeHead(audit_pb2.GetTreeHeadRequest()).public_key.encode()
            erased = audit_pb2.QueryEventsRequest(account_id="export-erased", event_types=["account.erased"])
            deadline = time.monotonic() + 60
            while not list(auditor.audit.QueryEvents(erased)):
                assert time.monotonic() < deadline, "the account was not erased within a minute"
                time.sleep(0.2)
        answer = platform.account.ExportAccountData(
            account_pb2.ExportAccountDataRequest(account_id="export-erased")
        )
    assert answer.erasure_state == account_pb2.ERASURE_STATE_ERASED
    assert not answer.account.verified
    assert list(answer.consents) == []
    assert list(answer.held_values) == []
    types = [json.loads(entry.leaf)["type"] for entry in answer.audit_entries]
    assert {"account.bound", "account.cancelled", "account.erased", "account.exported"} <= set(types)
    assert independently_verified(as_json(answer), pem)
