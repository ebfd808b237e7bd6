"""A start's verifier steps, run in the method's order before anything is stored.

A step that sends a code is counted first (per account and phone, phone, principal, tenant), and
the code goes out only once every count said yes. A vendor-run challenge keeps its page and token
sealed in the record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

from idverify.domain.methods import fallback_methods
from idverify.flows.context import FlowDeps
from idverify.flows.identity_lookup import IdentityProbe
from idverify.flows.verification.plan import StartPlan
from idverify.flows.verification.port import CodeSend, SendVerdict, VerificationStore
from idverify.flows.verification.record import Status, StepOutcome, VerificationRecord
from idverify.observability import telemetry
from idverify.privacy.keyring import DEPLOYMENT_LABEL
from idverify.privacy.sealing import associated_data, sealed_to_text
from idverify.verifiers.base import (
    Challenge,
    Outcome,
    StepContext,
    StepResult,
    Verifier,
)

# The verification's reason when a code may not be sent.
_SEND_REFUSALS = {SendVerdict.OTP_LOCKED: "OTP_LOCKED", SendVerdict.PHONE_LOCKED: "PHONE_LOCKED"}


@dataclass(slots=True)
class IdentityRead:
    """A start's identity lookup: where the record may be, and its keys' bindings once read."""

    probe: IdentityProbe
    bindings: list[bytes | None] | None = None


@dataclass(slots=True)
class StepsRun:
    """What a start's steps leave behind for its commit.

    The record, each step's outcome, the birth dates authorities returned, and the identity's
    record when it was read with a code send.
    """

    record: VerificationRecord
    steps: list[StepOutcome]
    authority: list[date]
    identity: IdentityRead


class StepRunner:
    """Runs a start's verifier steps into its record."""

    def __init__(self, deps: FlowDeps, store: VerificationStore) -> None:
        self._d = deps
        self._store = store

    async def run(self, plan: StartPlan, context: StepContext, run: StepsRun) -> str:
        """Runs the method's steps: ``bind``, ``challenge`` or ``rejected``.

        Each step's outcome lands in ``run.steps``, a birth date an authority returned in
        ``run.authority``; ``run.identity``'s record is read with a code send's counts, when one
        is made.
        """
        d = self._d
        tenant, method, steps = plan.tenant, plan.method, run.steps
        for step_name in method.steps:
            verifier = d.verifiers[step_name]
            if step_name in d.challenge_verifiers and context.subject.phone_number:
                run.record = await self._guard_code_send(plan, run.record, identity=run.identity)
                if run.record.status is Status.REJECTED:
                    steps.append(StepOutcome(step_name, Outcome.FAIL, run.record.reason))
                    return "rejected"
            with telemetry.span(f"verifier.{step_name}", verifier=step_name) as current:
                result: StepResult = await verifier.check(context)
                current.set_attributes(
                    telemetry.safe_attributes(
                        {
                            "idverify.outcome": result.outcome.value,
                            "idverify.reason": result.reason,
                            "idverify.vendor_code": result.vendor_code,
                        }
                    )
                )
            steps.append(StepOutcome(step_name, result.outcome, result.reason, result.vendor_code))
            if result.outcome is Outcome.PASS and result.birth_date is not None:
                run.authority.append(result.birth_date)
            if result.outcome in {Outcome.PASS, Outcome.NOT_APPLICABLE}:
                continue
            if result.outcome is Outcome.UNAVAILABLE:
                # Methods needing the same vendor would fail the same way: offer only the others.
                fallbacks = fallback_methods(
                    d.settings.methods_for(tenant),
                    method,
                    context.subject.kind,
                    d.biometric_steps,
                    unavailable_steps=_same_provider(d.verifiers, step_name),
                )
                run.record = replace(run.record, fallbacks=tuple(fallbacks))
            if (
                result.outcome is Outcome.CHALLENGE
                and result.challenge is not None
                and step_name in d.judged_verifiers
            ):
                run.record = self._with_vendor_challenge(
                    tenant, context.verification_id, step_name, result.challenge, run.record
                )
                return "challenge"
            if result.outcome is Outcome.CHALLENGE and result.challenge is not None:
                challenge, record = result.challenge, run.record
                run.record = replace(
                    record,
                    status=Status.CHALLENGE_SENT,
                    next_step="submit_challenge",
                    step_verifier=step_name,
                    digest=challenge.expected_digest.hex(),
                    salt=challenge.salt.hex(),
                    challenge_ttl_ms=challenge.ttl_seconds * 1000,
                    max_attempts=challenge.max_attempts,
                    masked_phone=challenge.masked_destination or record.masked_phone,
                    attempts_left=challenge.max_attempts
                    if record.attempts_left_now is None
                    else record.attempts_left_now,
                    attempts_left_now=None,
                )
                return "challenge"
            run.record = replace(run.record, status=Status.REJECTED, reason=result.reason or "STEP_FAILED")
            return "rejected"
        run.record = replace(run.record, status=Status.PENDING)
        return "bind"

    def _with_vendor_challenge(
        self,
        tenant: str,
        verification_id: str,
        step_name: str,
        challenge: Challenge,
        record: VerificationRecord,
    ) -> VerificationRecord:
        """Keeps a vendor-run challenge's page and token, sealed: they are handles on the vendor's record."""
        sealed = self._d.sealer.seal(
            json.dumps({"url": challenge.url, "token": challenge.token}).encode(),
            associated=associated_data(tenant, "vendor-challenge", verification_id),
        )
        return replace(
            record,
            status=Status.CHALLENGE_SENT,
            next_step="vendor_challenge",
            step_verifier=step_name,
            digest="",
            salt="",
            challenge_sealed=sealed_to_text(sealed),
            challenge_ttl_ms=challenge.ttl_seconds * 1000,
            max_attempts=challenge.max_attempts,
            attempts_left=challenge.max_attempts,
            attempts_left_now=None,
        )

    async def _guard_code_send(
        self, plan: StartPlan, record: VerificationRecord, *, identity: IdentityRead | None
    ) -> VerificationRecord:
        """Counts the code about to be sent; a locked account+phone or phone gets none.

        Counting comes first and the code is sent only after every count said yes: a count that
        fails raises, and nothing is sent. Where the store can, the same step reads ``identity``'s
        record first (whatever the counts say). The record answered is rejected, or holds the
        attempts the code will have.
        """
        d = self._d
        tenant, phone, info = plan.tenant, plan.phone, plan.info
        max_attempts = int(d.settings.verifiers.get("sms_otp", {}).get("max_attempts", 5))
        counted = await self._store.count_send(
            CodeSend(
                tenant=tenant,
                account_phone=record.otp_ps,
                tenant_phone=d.keyring.pseudonym(tenant, "rl-phone", phone),
                phone=d.keyring.pseudonym(DEPLOYMENT_LABEL, "phone", phone),
                principal=info.principal,
                max_attempts=max_attempts,
                request=info.audit_fields(),
                identity_keys=identity.probe.keys
                if identity is not None and identity.bindings is None
                else None,
                account_pseudonym=record.acct,
            )
        )
        if identity is not None and counted.bindings is not None:
            identity.bindings = counted.bindings
        if counted.verdict is not SendVerdict.OK:
            return replace(record, status=Status.REJECTED, reason=_SEND_REFUSALS[counted.verdict])
        return replace(record, attempts_left_now=max_attempts - counted.failures)


def _same_provider(verifiers: Mapping[str, Verifier], step_name: str) -> frozenset[str]:
    """The step and every configured step that depends on the same outside provider."""
    provider = getattr(verifiers[step_name], "provider", "")
    if not isinstance(provider, str) or not provider:
        return frozenset({step_name})
    return frozenset(
        name for name, verifier in verifiers.items() if getattr(verifier, "provider", "") == provider
    ) | {step_name}
