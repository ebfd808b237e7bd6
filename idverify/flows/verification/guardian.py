"""A guardian's consent completes a minor's verification.

The guardian is another account, verified and an adult today, judged on its account as read; the
store's ``guardian`` step goes on only while that account still holds what was judged (on one
node in the step itself, step by step on the store's read just before it), and binds the minor's
account.
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
from idverify.flows.consent import ConsentFlow
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.binding import BindingPoints
from idverify.flows.verification.port import GUARDIAN_FIELDS, GuardianGrant, VerificationStore, WriteOutcome
from idverify.flows.verification.record import Status
from idverify.flows.verification.views import VerificationReader, VerificationView, check_verification_id

# A guardian's account that keeps changing while it is judged gives up after this many.
_GUARDIAN_ATTEMPTS = 3


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
    store: VerificationStore
    consent: ConsentFlow
    ages: AccountAges
    reader: VerificationReader
    binding: BindingPoints

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
        record = await self.reader.record(tenant, verification_id)
        account_ps = d.keyring.pseudonym(tenant, "account", account_id)
        if record is None or not hmac.compare_digest(record.acct, account_ps):
            raise NotFound("no such verification for this account", field="verification_id")
        if guardian_id == account_id:
            raise FailedPrecondition(
                "a guardian must be another account",
                reason="GUARDIAN_IS_SUBJECT",
                field="guardian_account_id",
            )
        guardian_ps = d.keyring.pseudonym(tenant, "account", guardian_id)
        point = self.binding.point(tenant, verification_id, record)
        for _ in range(_GUARDIAN_ATTEMPTS):
            guardian, refusal = await self._guardian_today(tenant, guardian_ps)
            written = await self.store.grant_guardian(
                GuardianGrant(
                    tenant=tenant,
                    verification_id=verification_id,
                    account_pseudonym=account_ps,
                    guardian_pseudonym=guardian_ps,
                    binding_limit=d.settings.verification.binding_limit,
                    request_json=json.dumps(info.audit_fields()),
                    text_version=request.text_version,
                    relationship=relationship,
                    guardian_fields=guardian,
                    refusal=refusal,
                ),
                point,
            )
            # The guardian's account changed since we judged it (verified again, key rotation).
            if written.outcome is not WriteOutcome.GUARDIAN_CHANGED:
                break
        else:
            raise StoreUnavailable("the guardian's account kept changing; retry", reason="CONTENDED")
        if written.outcome is WriteOutcome.GUARDIAN_REFUSED:
            raise FailedPrecondition(
                "the guardian account does not qualify",
                reason=written.detail,
                field="guardian_account_id",
            )
        if written.outcome is WriteOutcome.STATE:
            raise FailedPrecondition(
                "verification is not waiting for guardian consent",
                reason="NOT_AWAITING_GUARDIAN",
                field="verification_id",
            )
        if written.record is not None and written.record.status is Status.VERIFIED:
            # The consents given with the start last once it bound the account.
            await self.consent.keep(tenant, record.acct)
        return self.reader.written_view(tenant, verification_id, written)

    async def _guardian_today(self, tenant: str, guardian_ps: str) -> tuple[dict[str, str], str]:
        """The guardian account's age fields as read, and why it may not consent today ('' if it may)."""
        d = self.deps
        fields = await self.store.account_fields(tenant, guardian_ps, GUARDIAN_FIELDS)
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
