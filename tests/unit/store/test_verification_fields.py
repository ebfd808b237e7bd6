"""A verification's record and the hash its scripts keep: the start's fields come out as they went in.

The hashes below are in the order the flow built its start's fields before the record had a
type: what the ``start`` script receives must not change, in its fields nor their order.
"""

from __future__ import annotations

import json

from idverify.flows.verification.record import Status, StepOutcome, VerificationRecord
from idverify.store.verification_fields import fields_of, record_of
from idverify.verifiers.base import Outcome

_START = {
    "status": "PENDING",
    "reason": "",
    "next_step": "",
    "method": "face",
    "assurance": "substantial",
    "kind": "person",
    "acct": "acct-ps",
    "acct_audit": "audit-ps",
    "event_account": "w1:event",
    "acct_sealed": "w1:00ff",
    "name_tag": "tag",
    "establishes": "1",
    "org_names": "",
    "purposes": "biometric,identity",
    "masked_phone": "138****0000",
    "otp_ps": "otp-ps",
    "phone_ps_sealed": "w1:0a0b",
    "attempts_left": "0",
    "fallbacks": '["sms", "bank_card"]',
}
_FOUND = {
    "identity": "w1:ref",
    "name_binding": "w1:binding",
    "name_binding_seen": "",
    "pepper": "phc",
    "age_band": "adult",
    "minor": "0",
    "age_source": "document",
    "birth_sealed": "w1:birth",
}


def test_a_vendor_run_challenge_is_stored_as_it_was_built() -> None:
    challenge = {
        "step_verifier": "face_liveness",
        "digest": "",
        "salt": "",
        "challenge_sealed": "w1:c0ffee",
        "challenge_ttl_ms": "600000",
        "max_attempts": "1",
    }
    steps = [{"verifier": "face_liveness", "outcome": "challenge", "reason": "", "vendor_code": "0"}]
    fields = {
        **_START,
        "status": "CHALLENGE_SENT",
        "next_step": "vendor_challenge",
        "attempts_left": "1",
        **challenge,
        **_FOUND,
        "steps": json.dumps(steps),
    }
    record = record_of(fields)
    assert (record.status, record.challenge_ttl_ms) == (Status.CHALLENGE_SENT, 600_000)
    assert record.establishes
    assert record.purposes == ("biometric", "identity")
    assert record.fallbacks == ("sms", "bank_card")
    assert record.steps == (StepOutcome("face_liveness", Outcome.CHALLENGE, "", "0"),)
    assert list(fields_of(record).items()) == list(fields.items())


def test_a_code_sent_before_its_step_failed_keeps_the_attempts_it_had() -> None:
    steps = [{"verifier": "sms_otp", "outcome": "unavailable", "reason": "VENDOR_UNAVAILABLE"}]
    fields = {
        **_START,
        "status": "REJECTED",
        "reason": "VENDOR_UNAVAILABLE",
        "purposes": "",
        "fallbacks": "[]",
        "attempts_left_now": "4",
        **_FOUND,
        "steps": json.dumps(steps),
    }
    record = record_of(fields)
    assert (record.attempts_left_now, record.purposes, record.step_verifier) == (4, (), "")
    assert list(fields_of(record).items()) == list(fields.items())


def test_what_the_scripts_add_is_read_and_never_written_by_a_start() -> None:
    stored = {**_START, **_FOUND, "steps": "[]", "id": "v1", "created_ms": "1700000000000"}
    stored |= {"expires_ms": "1700000600000", "challenge_expires_ms": "1700000300000"}
    record = record_of(stored)
    assert (record.id, record.created_ms, record.expires_ms) == ("v1", 1_700_000_000_000, 1_700_000_600_000)
    assert record.challenge_expires_ms == 1_700_000_300_000
    assert not {"id", "created_ms", "expires_ms", "challenge_expires_ms"} & set(fields_of(record))
    assert record_of({}) == VerificationRecord()
