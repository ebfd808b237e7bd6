"""A start's steps and commit, once its admission reserved the request id.

The steps run first and decide the mode (``bind``, ``challenge``, ``rejected``, or ``guardian``
for a minor); the identity is looked up (one argon2id) and the ``start`` script stores the
verification and, where the mode says so, binds the account, all in one step. Whatever this
service holds about the document (another name, its limit reached) is judged only then, after
the caller proved possession: the first reply is the same for every document (no identity
oracle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from idverify.domain import birth_dates
from idverify.domain.age import age_band, is_under_14
from idverify.domain.errors import StoreUnavailable
from idverify.domain.methods import establishes_claim, fallback_methods
from idverify.domain.subjects import Subject, SubjectKind
from idverify.events.accounts import event_account_fields
from idverify.flows.account_age import AccountAges
from idverify.flows.consent import ConsentFlow
from idverify.flows.context import FlowDeps
from idverify.flows.display_names import organization_name_hashes
from idverify.flows.identity_lookup import ResolvedIdentity
from idverify.flows.verification.challenge_memo import ChallengeMemo
from idverify.flows.verification.identities import Identities
from idverify.flows.verification.plan import StartPlan
from idverify.flows.verification.port import NewVerification, VerificationStore, WriteOutcome, Written
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.flows.verification.steps import IdentityRead, StepRunner, StepsRun
from idverify.flows.verification.views import VerificationReader, VerificationView, count_start
from idverify.privacy.keyring import DEPLOYMENT_LABEL
from idverify.privacy.masking import mask_phone
from idverify.privacy.sealing import associated_data, sealed_to_text
from idverify.verifiers.base import StepContext


@dataclass(frozen=True, slots=True)
class StartCommit:
    """Runs a reserved start's steps, looks its identity up, and stores it in one step."""

    deps: FlowDeps
    store: VerificationStore
    consent: ConsentFlow
    lookup: Identities
    ages: AccountAges
    steps: StepRunner
    reader: VerificationReader
    # Where the code challenges this worker starts are remembered for their answers.
    memo: ChallengeMemo | None = None

    async def run(self, plan: StartPlan) -> VerificationView:
        """Runs the method's steps for a start its admission reserved, and commits the verification.

        Raises:
            RateLimited: a code send over its limit.
            StoreUnavailable: Redis is down, the caller released the request, or the identity
                kept moving.
        """
        d = self.deps
        tenant = plan.tenant
        forward_ms = self.lookup.forward_ms(d.settings.verification.session_ttl_seconds)
        # The identity's record is read with the code send's counts where they are one round
        # trip (StepRunner's code-send guard), else on its own after the steps; the hash comes
        # first either way.
        probe = self.lookup.probe(tenant, await self.lookup.indexes(tenant, plan.document))
        account_ps = d.keyring.pseudonym(tenant, "account", plan.account_id)
        run = StepsRun(self._stored_record(plan, account_ps), [], [], IdentityRead(probe))
        mode = await self.steps.run(plan, _step_context(plan), run)
        found = await self._identity_found(plan, run.identity, forward_ms)
        run.record = _pointed_at(run.record, found)
        mode = self._judge_age(plan, account_ps, run, mode)
        record = replace(run.record, steps=tuple(run.steps))
        written = await self._store(plan, account_ps, record, mode, (found, forward_ms))
        if written.outcome is WriteOutcome.RELEASED:
            # Only after this attempt gave up (its release): nobody waits for this answer.
            raise StoreUnavailable("the request was released by its caller; retry")
        if written.outcome is WriteOutcome.EXISTS:
            return await self.reader.get(tenant, written.detail, plan.info)
        view = self.reader.written_view(tenant, plan.verification_id, written, count=False)
        if self.memo is not None and written.record is not None:
            self.memo.remember(tenant, plan.verification_id, written.record)
        if view.status == "VERIFIED":
            await self.consent.keep(tenant, account_ps)
        count_start(plan.method.id, view)
        return view

    def _stored_record(self, plan: StartPlan, account_ps: str) -> VerificationRecord:
        """The verification's record as the start stores it: pseudonyms, sealed values, no personal data."""
        d = self.deps
        tenant, verification_id, account_id = plan.tenant, plan.verification_id, plan.account_id
        method, document, name, phone = plan.method, plan.document, plan.name, plan.phone
        establishes = establishes_claim(method, d.settings.methods_for(tenant))
        return VerificationRecord(
            method=method.id,
            assurance=method.assurance,
            kind=document.subject_kind,
            acct=account_ps,
            acct_audit=d.keyring.pseudonym(tenant, "audit", account_id),
            event_account=event_account_fields(d.keyring, d.sealer, tenant, account_id)["event_account"],
            acct_sealed=sealed_to_text(
                d.sealer.seal(
                    account_id.encode(), associated=associated_data(tenant, "account-id", verification_id)
                )
            ),
            name_tag=plan.name_tag,
            establishes=establishes,
            org_names=organization_name_hashes(d.keyring, tenant, name)
            if establishes and document.subject_kind is SubjectKind.ORGANIZATION
            else "",
            purposes=tuple(sorted(plan.purposes)),
            masked_phone=mask_phone(phone) if phone else "",
            otp_ps=d.keyring.pseudonym(tenant, "otp-failures", f"{account_id}|{phone}") if phone else "",
            phone_ps_sealed=sealed_to_text(
                d.sealer.seal(
                    d.keyring.pseudonym(DEPLOYMENT_LABEL, "phone", phone).encode(),
                    associated=associated_data(tenant, "phone-pseudonym", verification_id),
                )
            )
            if phone
            else "",
            fallbacks=tuple(
                fallback_methods(
                    d.settings.methods_for(tenant), method, document.subject_kind, d.biometric_steps
                )
            ),
        )

    async def _identity_found(
        self, plan: StartPlan, identity: IdentityRead, forward_ms: int
    ) -> ResolvedIdentity:
        """The identity from the read made with the code send, else looked up now."""
        if identity.bindings is not None:
            found = self.lookup.settle(plan.tenant, identity.probe, plan.name, identity.bindings)
            if found is not None:
                return found
        return await self.lookup.resolve(
            plan.tenant,
            plan.document,
            plan.name,
            forward_ms=forward_ms,
            indexes=identity.probe.indexes,
        )

    def _judge_age(self, plan: StartPlan, account_ps: str, run: StepsRun, mode: str) -> str:
        """Records the birth date chosen from the document, authorities and declaration; the mode.

        Sources that disagree reject the verification; a minor's waits for a guardian's consent.
        """
        record = run.record
        minor = False
        try:
            birth, source = birth_dates.choose(
                document=plan.document.birth_date, authorities=run.authority, declared=plan.declared
            )
        except birth_dates.BirthDateMismatch:
            birth, source = None, birth_dates.AgeSource.NONE
            if mode != "rejected":
                mode = "rejected"
                record = replace(record, status=Status.REJECTED, reason="BIRTH_DATE_MISMATCH", next_step="")
        else:
            minor = is_under_14(birth, plan.today)
        record = replace(
            record,
            age_band=age_band(birth, plan.today),
            minor=minor,
            age_source=source,
            birth_sealed=self.ages.seal(plan.tenant, account_ps, birth) if birth else "",
        )
        if mode == "bind" and minor:
            mode = "guardian"
            record = replace(
                record,
                status=Status.NEEDS_GUARDIAN_CONSENT,
                reason="GUARDIAN_CONSENT_REQUIRED",
                next_step="guardian_consent",
            )
        run.record = record
        return mode

    async def _store(
        self,
        plan: StartPlan,
        account_ps: str,
        record: VerificationRecord,
        mode: str,
        identity: tuple[ResolvedIdentity, int],
    ) -> Written:
        """Stores the verification, looking the identity up again whenever key rotation moved it.

        ``identity`` is the one found and the lookup's forward window. The writes to a stored
        verification are pointed differently (BindingPoints): they re-read a record, while this
        one is not stored yet and has the document to look up with.
        """
        settings = self.deps.settings.verification
        found, forward_ms = identity

        async def look_again(moved: bool) -> VerificationRecord:
            nonlocal found, record
            if moved:
                found = await self.lookup.resolve(
                    plan.tenant, plan.document, plan.name, forward_ms=forward_ms, indexes=found.indexes
                )
                record = _pointed_at(record, found)
            return record

        return await self.store.commit(
            NewVerification(
                tenant=plan.tenant,
                request_pseudonym=plan.request.pseudonym,
                verification_id=plan.verification_id,
                account_pseudonym=account_ps,
                record=record,
                ttl_ms=settings.session_ttl_seconds * 1000,
                binding_limit=settings.binding_limit,
                request_json=json.dumps(plan.info.audit_fields()),
                mode=mode,
            ),
            look_again,
        )


def _pointed_at(record: VerificationRecord, found: ResolvedIdentity) -> VerificationRecord:
    """The record pointed at the identity found, with its name binding and pepper."""
    return replace(
        record, identity=found.ref, name_binding=found.binding, name_binding_seen=found.seen, pepper=found.phc
    )


def _step_context(plan: StartPlan) -> StepContext:
    """What the steps see: the subject as validated, and the vendor-run challenge's return."""
    document, extras = plan.document, plan.extras
    rep = extras.organization.legal_representative_document
    subject = Subject(
        document.subject_kind,
        plan.name,
        document.document_type,
        document.number,
        plan.phone,
        bank_card_number=extras.bank_card,
        legal_representative_name=extras.organization.legal_representative_name,
        legal_representative_document_type=rep.document_type if rep else None,
        legal_representative_document_number=rep.number if rep else "",
        registered_address=extras.organization.registered_address,
        # The document step validates the number again, and a passport needs its country.
        issuing_country=document.issuing_country,
    )
    return StepContext(
        plan.tenant,
        plan.verification_id,
        subject,
        document,
        plan.today,
        return_url=extras.return_url,
        meta_info=extras.meta_info,
    )
