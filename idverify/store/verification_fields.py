"""A verification's record as the hash of text fields its scripts read and write (``{t}:vf:<id>``).

:func:`fields_of` is what a start hands the ``start`` script; :func:`record_of` reads a hash
back, whoever wrote its fields. The in-memory store keeps the same hashes through them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from idverify.domain.birth_dates import AgeSource
from idverify.domain.subjects import AgeBand, AssuranceLevel, SubjectKind
from idverify.flows.verification.record import Status, StepOutcome, VerificationRecord
from idverify.verifiers.base import Outcome

__all__ = ["fields_of", "fields_read", "record_of"]

# The fields fields_of leaves out of a record that has none.
_SOMETIMES = ("attempts_left_now", "step_verifier", "digest", "salt", "challenge_sealed")


def fields_of(record: VerificationRecord) -> dict[str, str]:
    """The fields a start stores, in the order it always built them.

    What the scripts add (``id``, ``created_ms``, ``expires_ms``, ``challenge_expires_ms``) is
    not among them; a challenge's fields are only when the steps sent one.
    """
    fields = {
        "status": record.status.value,
        "reason": record.reason,
        "next_step": record.next_step,
        "method": record.method,
        "assurance": record.assurance.value,
        "kind": record.kind.value,
        "acct": record.acct,
        "acct_audit": record.acct_audit,
        "event_account": record.event_account,
        "acct_sealed": record.acct_sealed,
        "name_tag": record.name_tag,
        "establishes": _flag(record.establishes),
        "org_names": record.org_names,
        "purposes": ",".join(record.purposes),
        "masked_phone": record.masked_phone,
        "otp_ps": record.otp_ps,
        "phone_ps_sealed": record.phone_ps_sealed,
        "attempts_left": str(record.attempts_left),
        "fallbacks": json.dumps(list(record.fallbacks)),
    }
    if record.attempts_left_now is not None:
        fields["attempts_left_now"] = str(record.attempts_left_now)
    if record.step_verifier:
        fields.update(step_verifier=record.step_verifier, digest=record.digest, salt=record.salt)
        if record.challenge_sealed:
            fields["challenge_sealed"] = record.challenge_sealed
        fields.update(challenge_ttl_ms=str(record.challenge_ttl_ms), max_attempts=str(record.max_attempts))
    fields.update(
        identity=record.identity,
        name_binding=record.name_binding,
        name_binding_seen=record.name_binding_seen,
        pepper=record.pepper,
        age_band=record.age_band.value,
        minor=_flag(record.minor),
        age_source=record.age_source.value,
        birth_sealed=record.birth_sealed,
        steps=json.dumps([_step_fields(step) for step in record.steps]),
    )
    return fields


def fields_read(record: VerificationRecord) -> dict[str, str]:
    """Every field :func:`record_of` reads, as a hash read back into ``record`` holds it.

    A field the hash would lack is ``""`` (``fields_unchanged.lua`` reads a missing field so):
    a hash that holds these values reads back into ``record`` exactly.
    """
    fields = dict.fromkeys(_SOMETIMES, "") | fields_of(record)
    # And those only the scripts write.
    fields.update(
        id=record.id,
        created_ms=str(record.created_ms),
        expires_ms=str(record.expires_ms),
        challenge_expires_ms=str(record.challenge_expires_ms),
    )
    if not record.step_verifier:
        # A record without a challenge keeps no challenge's lengths either.
        fields.update(challenge_ttl_ms="", max_attempts="")
    return fields


def record_of(fields: Mapping[str, str]) -> VerificationRecord:
    """A stored hash read back (a field it lacks takes the record's default)."""
    get = fields.get
    left_now = get("attempts_left_now")
    return VerificationRecord(
        status=Status(get("status", Status.PENDING.value)),
        reason=get("reason", ""),
        next_step=get("next_step", ""),
        method=get("method", ""),
        assurance=AssuranceLevel(get("assurance") or AssuranceLevel.LOW.value),
        kind=SubjectKind(get("kind") or SubjectKind.PERSON.value),
        acct=get("acct", ""),
        acct_audit=get("acct_audit", ""),
        event_account=get("event_account", ""),
        acct_sealed=get("acct_sealed", ""),
        name_tag=get("name_tag", ""),
        establishes=get("establishes") == "1",
        org_names=get("org_names", ""),
        purposes=tuple(purposes.split(",")) if (purposes := get("purposes")) else (),
        masked_phone=get("masked_phone", ""),
        otp_ps=get("otp_ps", ""),
        phone_ps_sealed=get("phone_ps_sealed", ""),
        attempts_left=_number(get("attempts_left")),
        fallbacks=tuple(json.loads(get("fallbacks") or "[]")),
        attempts_left_now=_number(left_now) if left_now is not None else None,
        step_verifier=get("step_verifier", ""),
        digest=get("digest", ""),
        salt=get("salt", ""),
        challenge_sealed=get("challenge_sealed", ""),
        challenge_ttl_ms=_number(get("challenge_ttl_ms")),
        max_attempts=_number(get("max_attempts")),
        identity=get("identity", ""),
        name_binding=get("name_binding", ""),
        name_binding_seen=get("name_binding_seen", ""),
        pepper=get("pepper", ""),
        age_band=AgeBand(get("age_band") or AgeBand.UNKNOWN.value),
        minor=get("minor") == "1",
        age_source=AgeSource(get("age_source") or AgeSource.NONE.value),
        birth_sealed=get("birth_sealed", ""),
        steps=tuple(_step_of(step) for step in json.loads(get("steps") or "[]")),
        id=get("id", ""),
        created_ms=_number(get("created_ms")),
        expires_ms=_number(get("expires_ms")),
        challenge_expires_ms=_number(get("challenge_expires_ms")),
    )


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _number(text: str | None) -> int:
    """A count or time the flow or a script wrote (``tostring`` of a Lua number: no fraction)."""
    return int(text or 0)


def _step_fields(step: StepOutcome) -> dict[str, str]:
    fields = {"verifier": step.verifier, "outcome": step.outcome.value, "reason": step.reason}
    if step.vendor_code:
        fields["vendor_code"] = step.vendor_code
    return fields


def _step_of(fields: Mapping[str, str]) -> StepOutcome:
    return StepOutcome(
        fields["verifier"],
        Outcome(fields["outcome"]),
        fields.get("reason", ""),
        fields.get("vendor_code", ""),
    )
