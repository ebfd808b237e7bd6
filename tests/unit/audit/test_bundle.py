"""The offline check of a person's data export: every way a bundle can be wrong is named."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from idverify.audit.bundle import BundleFormatError, BundleReport, verify_bundle
from idverify.audit.checkpoint import TreeHead, TreeHeadSigner
from idverify.audit.merkle import inclusion_proof, leaf_hash, root
from idverify.v1 import account_pb2, audit_pb2

MINE, THEIRS = "a" * 32, "b" * 32
ORIGIN = "idverify/default"


def entry(index: int, account: str) -> bytes:
    return (
        f'{{"v":1,"seq":{index},"time_ms":{1_700_000_000_000 + index},"type":"login_ip.recorded",'
        f'"verification_id":"","account":"{account}","method":"","outcome":"recorded","reason":"",'
        '"steps":[],"principal":"default/platform/c1","request_id":"","trace_id":"","attributes":{}}'
    ).encode()


def bundle(
    key: Ed25519PrivateKey, accounts: list[str], mine: list[int]
) -> account_pb2.ExportAccountDataResponse:
    """A log of ``accounts`` (one entry each) and a bundle of the entries at ``mine``."""
    leaves = [entry(index, account) for index, account in enumerate(accounts)]
    hashes = [leaf_hash(leaf) for leaf in leaves]
    signed = TreeHeadSigner(key).sign(TreeHead(ORIGIN, len(leaves), root(hashes), 1_700_000_001_000))
    head = audit_pb2.SignedTreeHead(
        tree_size=signed.head.size,
        root_hash=signed.head.root_hash,
        key_id=signed.key_id,
        signature=signed.signature,
        origin=ORIGIN,
    )
    head.timestamp.FromMilliseconds(signed.head.timestamp_ms)
    return account_pb2.ExportAccountDataResponse(
        audit_pseudonyms=[MINE],
        head=head,
        audit_entries=[
            account_pb2.ProvenAuditEntry(
                index=i, leaf=leaves[i], inclusion_proof=inclusion_proof(i, len(leaves), hashes)
            )
            for i in mine
        ],
    )


def check(
    answer: account_pb2.ExportAccountDataResponse, key: Ed25519PrivateKey, origin: str | None = None
) -> BundleReport:
    return verify_bundle(json_format.MessageToJson(answer).encode(), key.public_key(), expected_origin=origin)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_a_true_bundle_verifies(key: Ed25519PrivateKey) -> None:
    report = check(bundle(key, [MINE, THEIRS, MINE, THEIRS, MINE], [0, 2, 4]), key, ORIGIN)
    assert (report.ok, report.entries, report.tree_size, report.origin) == (True, 3, 5, ORIGIN)


def test_an_entry_about_someone_else_is_named(key: Ed25519PrivateKey) -> None:
    """A proven entry of another account is not part of this person's data."""
    report = check(bundle(key, [MINE, THEIRS, MINE], [0, 1]), key)
    assert (report.ok, report.first_bad) == (False, 1)
    assert "not about this account" in report.problem


def test_an_entry_moved_to_another_index_is_named(key: Ed25519PrivateKey) -> None:
    answer = bundle(key, [MINE, MINE, MINE], [1])
    answer.audit_entries[0].index = 2
    report = check(answer, key)
    assert (report.ok, report.first_bad) == (False, 2)
    assert "says it is entry 1" in report.problem


def test_a_proof_of_another_tree_size_fails(key: Ed25519PrivateKey) -> None:
    answer = bundle(key, [MINE, MINE, MINE, MINE, MINE], [3])
    del answer.audit_entries[0].inclusion_proof[-1]
    report = check(answer, key)
    assert (report.ok, report.first_bad) == (False, 3)


def test_another_key_or_another_log_fails_at_the_head(key: Ed25519PrivateKey) -> None:
    answer = bundle(key, [MINE], [0])
    other = check(answer, Ed25519PrivateKey.generate())
    assert (other.ok, other.first_bad) == (False, None)
    assert "signed head does not verify" in other.problem
    elsewhere = check(answer, key, "idverify/acme")
    assert not elsewhere.ok
    assert "idverify/acme" in elsewhere.problem


def test_what_is_no_bundle_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleFormatError):
        verify_bundle(b"not json", key.public_key())
    with pytest.raises(BundleFormatError, match="no signed tree head"):
        verify_bundle(b"{}", key.public_key())
