"""A guardian's consent completes a minor's verification.

The guardian is another account, verified and an adult today; the ``guardian`` script checks that
the fields it was judged on did not change, and binds the minor's account in the same step.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from idverify.domain import birth_dates
from idverify.domain import consent as consent_rules
from idverify.domain.errors import FailedPrecondition, InvalidArgument, NotFound, StoreUnavailable
from idverify.domain.normalize import normalize_identifier
from idverify.domain.subjects import AgeBand
from idverify.flows.account_age import AccountAges
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.binding import MOVE_ATTEMPTS, BindingScripts
from idverify.flows.verification.views import VerificationReader, VerificationView, check_verification_id
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys

# What a guardian's qualification is judged on; the consent script checks they did not change.
_GUARDIAN_FIELDS = ("identity", "age_source", "birth_sealed", "age_band")


@dataclass(frozen=True, slots=True)
class GuardianConsent:
    """A GrantConsent for purpose ``guardian``, as received (not yet validated)."""

    tenant: str
    account_id: str
    verification_id: str
    guardian_account_id: str
    text_version: str
    # ``parent`` or ``legal_guardian`` (consent.RELATIONSHIPS); "" when the request named none.
    relationship: str
    info: RequestInfo


@dataclass(frozen=True, slots=True)
class GuardianConsents:
    """Completes minors' verifications with their guardians' consent."""

    deps: FlowDeps
    ages: AccountAges
    reader: VerificationReader
    binding: BindingScripts

    async def grant(self, request: GuardianConsent) -> VerificationView:
        """The consent of a verified person who is an adult today completes a minor's verification.

        Raises:
            InvalidArgument: on malformed ids, or a relationship that is not one of
                ``consent.RELATIONSHIPS``.
            NotFound: when the verification does not exist or belongs to another account.
            FailedPrecondition: when it does not wait for consent, or the guardian does not qualify.
        """
        d, tenant, info = self.deps, request.tenant, request.info
        relationship = request.relationship
        account_id = normalize_identifier(request.account_id, field="account_id")
        guardian_id = normalize_identifier(request.guardian_account_id, field="guardian_account_id")
        verification_id = check_verification_id(request.verification_id)
        if relationship not in consent_rules.RELATIONSHIPS:
            raise InvalidArgument(
                "relationship: parent or legal guardian", reason="RELATIONSHIP_REQUIRED", field="relationship"
            )
        keys = TenantKeys(tenant)
        record = await self.reader.record(tenant, verification_id)
        account_ps = d.keyring.pseudonym(tenant, "account", account_id)
        if not record or not hmac.compare_digest(record.get("acct", ""), account_ps):
            raise NotFound("no such verification for this account", field="verification_id")
        if guardian_id == account_id:
            raise FailedPrecondition(
                "a guardian must be another account",
                reason="GUARDIAN_IS_SUBJECT",
                field="guardian_account_id",
            )
        guardian_ps = d.keyring.pseudonym(tenant, "account", guardian_id)
        for _ in range(MOVE_ATTEMPTS):
            guardian, refusal = await self._guardian_today(tenant, guardian_ps)
            result = await self.binding.run(
                "guardian",
                tenant,
                verification_id,
                record,
                keys_for=lambda r: [
                    keys.verification(verification_id),
                    keys.audit_log(),
                    keys.account(account_ps),
                    keys.identity(r["identity"]),
                    keys.identity_accounts(r["identity"]),
                    keys.account(guardian_ps),
                ],
                args=[
                    d.settings.verification.binding_limit,
                    json.dumps(info.audit_fields()),
                    request.text_version,
                    relationship,
                    json.dumps(guardian),
                    refusal,
                ],
            )
            # The guardian's account changed since we judged it (verified again, key rotation).
            if result[0] != b"CHANGED":
                break
        else:
            raise StoreUnavailable("the guardian's account kept changing; retry", reason="CONTENDED")
        if result[0] == b"GUARDIAN":
            raise FailedPrecondition(
                "the guardian account does not qualify",
                reason=as_text(result[1]),
                field="guardian_account_id",
            )
        if result[0] == b"STATE":
            raise FailedPrecondition(
                "verification is not waiting for guardian consent",
                reason="NOT_AWAITING_GUARDIAN",
                field="verification_id",
            )
        return self.reader.script_view(tenant, verification_id, result)

    async def _guardian_today(self, tenant: str, guardian_ps: str) -> tuple[dict[str, str], str]:
        """The guardian account's age fields as read, and why it may not consent today ('' if it may)."""
        d = self.deps
        async with translate_errors():
            row = await d.redis.hmget(TenantKeys(tenant).account(guardian_ps), list(_GUARDIAN_FIELDS))
        fields = {name: as_text(value) for name, value in zip(_GUARDIAN_FIELDS, row, strict=True) if value}
        if not fields.get("identity"):
            return fields, "GUARDIAN_NOT_VERIFIED"
        age = self.ages.read(tenant, guardian_ps, fields, d.today())
        refusal = birth_dates.guardian_refusal(
            age.birth,
            age.source or birth_dates.AgeSource.NONE,
            legacy_adult=age.band is AgeBand.ADULT,
            policy=d.settings.methods_for(tenant).declared_birth_date,
            today=d.today(),
        )
        return fields, refusal
