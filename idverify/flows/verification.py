"""The signup flow: start a verification, answer its challenge, read it.

This is where the parts meet for one request: domain validation, the verifier steps, the
privacy primitives (one argon2id per verification, sealing, keyed pseudonyms) and the atomic
store scripts. Personal data lives only in the local variables of these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from idverify.domain import birth_dates
from idverify.domain import consent as consent_rules
from idverify.domain.age import age_band, is_under_14
from idverify.domain.documents import Document, validate_document
from idverify.domain.errors import (
    ConsentRequired,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StoreUnavailable,
)
from idverify.domain.methods import (
    MethodSpec,
    establishes_claim,
    fallback_methods,
    is_biometric,
    required_fields,
    steps_reading,
)
from idverify.domain.normalize import normalize_identifier, normalize_name, normalize_phone
from idverify.domain.organizations import OrganizationParticulars, organization_particulars
from idverify.domain.phone_destinations import check_phone_destination
from idverify.domain.subjects import AgeBand, DocumentType, Subject, SubjectKind
from idverify.events.accounts import event_account_fields
from idverify.flows.account_age import AccountAges
from idverify.flows.consent import ConsentFlow, consent_read
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.display_names import organization_name_hashes
from idverify.flows.keys import IdentityLookup, IdentityMover, IdentityProbe, ResolvedIdentity
from idverify.flows.read_accounting import Category, Reader, read_spec
from idverify.observability import telemetry
from idverify.privacy.keyring import DEPLOYMENT_LABEL
from idverify.privacy.masking import mask_phone
from idverify.privacy.name_binding import claim_tag
from idverify.privacy.sealing import (
    SealError,
    associated_data,
    sealed_from_text,
    sealed_to_text,
    sealed_version,
)
from idverify.security.code_sends import CodeSendCounter, SendLimits, SendPseudonyms, counted_or_unavailable
from idverify.security.rate_limits import counted_step, judge_counted
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, decode_flat
from idverify.verifiers.base import (
    Challenge,
    ChallengeVerifier,
    JudgedChallengeVerifier,
    Outcome,
    StepContext,
    StepResult,
    Verifier,
)

CONSENT_PURPOSES = consent_rules.PURPOSES
# A reservation holds a request id while its first attempt runs (argon2 + SMS send); a crashed
# attempt frees it after this long.
RESERVATION_MS = 30_000
_VERIFICATION_ID_HEX = 32
# A verification whose identity keeps moving (key rotation racing it) gives up after this many.
_MOVE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A StartVerification call, as received (not yet validated)."""

    request_id: str
    account_id: str
    method_id: str
    subject: Subject
    consents: Sequence[str]
    client_ip: str = ""
    # For a vendor-run challenge (face liveness): where the vendor's page returns the user, and
    # the vendor client SDK's environment string. Passed to the step, never stored.
    return_url: str = ""
    meta_info: str = ""
    # The version (hash) of the consent text shown, per purpose in ``consents``.
    consent_text_versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerificationView:
    """What a caller may see of a verification: no personal data beyond the masked phone."""

    verification_id: str
    status: str
    reason_code: str
    next_step: str
    masked_phone: str
    attempts_left: int
    account_id: str
    method_id: str
    created_ms: int
    expires_ms: int
    fallback_method_ids: list[str] = field(default_factory=list)
    # A vendor-run challenge's page and session token, while it waits to be completed.
    challenge_url: str = ""
    challenge_token: str = ""


class VerificationFlow:
    """Runs verifications for every tenant."""

    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps
        self._consent = ConsentFlow(
            deps, lifetime_ms=RESERVATION_MS + deps.settings.verification.session_ttl_seconds * 1000
        )
        self._mover = IdentityMover(deps.redis, deps.scripts, deps.sealer)
        self._lookup = IdentityLookup(deps.keyring, deps.sealer, deps.indexer, self._mover)
        self._ages = AccountAges(deps.sealer)
        limits, verification = deps.settings.rate_limits, deps.settings.verification
        self._sends = CodeSendCounter(
            deps.scripts,
            SendLimits(
                per_phone_per_hour=limits.code_sends_per_phone_per_hour,
                per_phone_all_tenants_per_hour=limits.code_sends_per_phone_all_tenants_per_hour,
                per_phone_all_tenants_per_day=limits.code_sends_per_phone_all_tenants_per_day,
                per_principal_per_minute=limits.code_sends_per_principal_per_minute,
                per_principal_per_day=limits.code_sends_per_principal_per_day,
                per_tenant_per_minute=limits.code_sends_per_tenant_per_minute,
                per_tenant_per_day=limits.code_sends_per_tenant_per_day,
                phone_failure_limit=verification.otp_failures_per_phone,
                failure_window_ms=verification.otp_failure_window_seconds * 1000,
            ),
        )

    @property
    def consent(self) -> ConsentFlow:
        """The consent records this flow admits verifications under."""
        return self._consent

    # -- methods ---------------------------------------------------------------------------

    def list_methods(self, tenant: str, kind: SubjectKind) -> list[tuple[MethodSpec, bool, list[str]]]:
        """The tenant's methods for a subject kind, with biometric flag and required fields."""
        table = self._d.settings.methods_for(tenant)
        return [
            (m, is_biometric(m, self._d.biometric_steps), required_fields(m, self._d.fields_of_step))
            for m in table.for_kind(kind)
        ]

    async def methods_for_account(
        self, tenant: str, kind: SubjectKind, account_id: str
    ) -> list[tuple[MethodSpec, bool, list[str]]]:
        """As :meth:`list_methods`, without biometric methods while the account's cool-down runs.

        Raises:
            InvalidArgument: on a malformed account id.
        """
        methods = self.list_methods(tenant, kind)
        if not await self._consent.biometric_cooldown_until(tenant, account_id):
            return methods
        return [item for item in methods if not item[1]]

    # -- start -----------------------------------------------------------------------------

    async def start(self, tenant: str, request: StartRequest, info: RequestInfo) -> VerificationView:
        """Starts a verification, or returns the one a repeated request id already started.

        Raises:
            InvalidArgument: on any malformed field (named in the error).
            ConsentRequired: when a purpose the method needs was not consented to.
            RateLimited: when the identity or phone is over its limit.
            StoreUnavailable: when Redis is down.
        """
        d = self._d
        request_id = normalize_identifier(request.request_id, field="request_id")
        account_id = normalize_identifier(request.account_id, field="account_id")
        method_id = normalize_identifier(request.method_id, field="method_id", max_length=40)
        subject = request.subject
        method = d.settings.methods_for(tenant).get(method_id)
        if subject.kind not in method.subject_kinds:
            raise InvalidArgument(
                "method does not serve this subject kind", reason="KIND_MISMATCH", field="subject.kind"
            )
        needed = set(required_fields(method, d.fields_of_step))
        name = normalize_name(subject.name)
        if subject.document_type is None:
            raise InvalidArgument("document type is required", reason="EMPTY", field="subject.document_type")
        today = d.today()
        document = validate_document(
            subject.document_type, subject.document_number, subject.issuing_country, today=today
        )
        _check_kind(subject, document)
        declared = birth_dates.parse_declared(
            subject.birth_date, today=today, document_birth=document.birth_date
        )
        particulars = organization_particulars(subject, needed, today=today)
        phone = normalize_phone(subject.phone_number) if "phone_number" in needed else ""
        if phone:
            check_phone_destination(phone, d.settings.sms_destinations.get(tenant, ()))
        _check_client_ip(request.client_ip)
        given = consent_rules.check_request_consents(request.consents, request.consent_text_versions)
        purposes = consent_rules.needed_purposes(needed, biometric=is_biometric(method, d.biometric_steps))
        keys = TenantKeys(tenant)
        verification_id = secrets.token_hex(16)
        request_key = keys.request(d.keyring.pseudonym(tenant, "request", request_id))
        plan = StartPlan(
            tenant=tenant,
            keys=keys,
            request_id=request_id,
            request_key=request_key,
            verification_id=verification_id,
            account_id=account_id,
            method=method,
            document=document,
            name=name,
            phone=phone,
            today=today,
            declared=declared,
            purposes=purposes,
            given=given,
            # Every counter that refuses a start counts per (document, name) pair, so that a
            # squatter's failures under a false name never refuse the owner who presents the true one.
            name_tag=claim_tag(d.keyring, tenant, document.document_type.value, document.number, name),
            info=info,
            extras=_StepExtras(
                bank_card=subject.bank_card_number.strip() if "bank_card_number" in needed else "",
                organization=particulars,
                return_url=request.return_url,
                meta_info=request.meta_info,
            ),
        )
        admission = await self._admission(plan)
        if isinstance(admission, bytes):
            # A repeated request id: the verification it started, or wait for the attempt running.
            existing = await self._verification_for_request(tenant, admission, request_key)
            return existing or await self._wait_for_request(tenant, keys, request_id)
        try:
            held = await self._admit(admission)
            if held is None:
                return await self._start_reserved(plan)
        except BaseException:
            # Release the request id so that the caller's retry can run, unless the start
            # committed although its caller was told otherwise (a lost reply: the retry must find
            # that verification). The release also turns away this attempt's own steps still on
            # their way (release_request.lua). One lost as well leaves the id to the reservation's TTL.
            if admission.may_hold:
                release = [
                    request_key,
                    keys.verification(verification_id),
                    keys.request_released(verification_id),
                ]
                with contextlib.suppress(StoreUnavailable):
                    await d.scripts.run("release_request", release, [verification_id, RESERVATION_MS])
            raise
        # A repeated request id: the verification it started, or wait for the attempt running.
        existing = await self._verification_for_request(tenant, held, request_key)
        return existing or await self._wait_for_request(tenant, keys, request_id)

    async def _identity_found(
        self, tenant: str, document: Document, name: str, identity: _IdentityRead, forward_ms: int
    ) -> ResolvedIdentity:
        """The identity from the read made with the code send, else looked up now."""
        if identity.bindings is not None:
            found = self._lookup.settle(tenant, identity.probe, name, identity.bindings)
            if found is not None:
                return found
        return await self._lookup.resolve(
            self._d.redis, tenant, document, name, forward_ms=forward_ms, indexes=identity.probe.indexes
        )

    async def _admission(self, plan: StartPlan) -> _Admission | bytes:
        """The step that reserves a start's request id and admits it: one chain, one round trip.

        The request id and the account's consent record are read first (one round trip): the
        verification id a repeated request id holds is then the answer; otherwise the consents
        are judged on the record, and the step checks that it did not change since (its
        revision; a changed record is answered and judged again, :meth:`_admit`).

        Raises:
            ConsentRequired, FailedPrecondition: the consents refuse it (naming other methods).
        """
        d = self._d
        tenant, keys = plan.tenant, plan.keys
        limits = d.settings.rate_limits
        request = plan.info.audit_fields()
        admission = _Admission(
            plan=plan,
            identity_ps=d.keyring.pseudonym(tenant, "rl-identity", plan.name_tag),
            reserve=ChainStep(
                "reserve_request",
                [plan.request_key, keys.request_released(plan.verification_id)],
                [plan.verification_id, RESERVATION_MS],
                proceed_on=("OK",),
            ),
            # Every counter that refuses a start counts per (document, name) pair, so that a
            # squatter's failures under a false name never refuse the owner who presents the true one.
            claims=counted_step(
                keys,
                "claim_refusals",
                plan.name_tag,
                limit=limits.claim_refusals_per_day,
                request={**request, "account": d.keyring.pseudonym(tenant, "audit", plan.account_id)},
            ),
        )
        # What the start reads before its admission, all in the tenant's slot: one round trip.
        # The admission (its first write) is sent only once these answered, so a Redis that
        # stalls on them never runs a reservation for a caller who gave up.
        async with translate_errors(), d.redis.pipeline(transaction=False) as pipe:
            pipe.get(plan.request_key)
            self._consent.queue_read(pipe, tenant, d.keyring.pseudonym(tenant, "account", plan.account_id))
            holder, consent_raw, cancelled = await pipe.execute()
        if _holder(holder) is not None:
            return bytes(holder)
        with self._offering_fallbacks(plan):
            admission.consent = await self._consent.start_step(plan, consent_read(consent_raw, cancelled))
        admission.window = d.window_limiter.step(
            keys,
            "identity",
            admission.identity_ps,
            limit=limits.per_identity_per_hour,
            window_seconds=3600,
            request=request,
        )
        return admission

    async def _admit(self, admission: _Admission) -> bytes | None:
        """Runs the admission; None when it reserved and admitted, else the request id's holder.

        Raises:
            ConsentRequired, FailedPrecondition, RateLimited, StoreUnavailable: refused, or not
                run; a reservation it answered stays to be released by the caller (``may_hold``).
        """
        assert admission.consent is not None  # noqa: S101 - _admission judged them
        window = [admission.window] if admission.window else []
        # A chain that failed unanswered is not released, as a reservation never was: the call
        # fails at once (a stalled chain that runs later holds the id for its 30 s).
        replies = await self._d.scripts.run_chain(
            [admission.reserve, admission.claims, admission.consent, *window]
        )
        if replies[0][0] == b"HELD":
            return bytes(replies[0][1])
        if replies[0][0] != b"OK":
            raise StoreUnavailable("the request was released by its caller; retry")
        admission.may_hold = True
        judge_counted(replies[1], purpose="claim_refusals")
        with self._offering_fallbacks(admission.plan):
            if not self._consent.admitted(replies[2]):
                replies = await self._admit_on_record(admission, replies[2], window)
        if admission.window is None:
            return None
        d = self._d
        limit = d.settings.rate_limits.per_identity_per_hour
        if len(replies) > 3:  # noqa: PLR2004 - reservation, claims, consents, window
            d.window_limiter.refuse_over_limit(replies[3], purpose="identity", limit=limit)
        else:
            await d.window_limiter.hit(
                admission.plan.keys,
                "identity",
                admission.identity_ps,
                limit=limit,
                window_seconds=3600,
                request=admission.plan.info.audit_fields(),
            )
        return None

    async def _admit_on_record(
        self, admission: _Admission, changed: Any, window: list[ChainStep]
    ) -> list[Any]:
        """Judges the consents on the record their step answered; the replies as the chain's would be.

        Empty when the record kept changing: then judged and admitted alone, and the window
        counted after.
        """
        read = consent_read(decode_flat(changed[1]), cancelled=False)
        again = await self._consent.start_step(admission.plan, read)
        replies = await self._d.scripts.run_chain([again, *window])
        if self._consent.admitted(replies[0]):
            return [None, None, *replies]
        await self._consent.admit_start(admission.plan)
        return []

    async def _start_reserved(self, plan: StartPlan) -> VerificationView:
        """Runs the method's steps for a start its admission reserved, and commits the verification."""
        d = self._d
        tenant, keys, verification_id = plan.tenant, plan.keys, plan.verification_id
        account_id, method, document, name, phone = (
            plan.account_id,
            plan.method,
            plan.document,
            plan.name,
            plan.phone,
        )
        forward_ms = self._lookup.forward_ms(d.settings.verification.session_ttl_seconds)
        # The identity's record is read with the code send's counts where they are one round
        # trip (_guard_code_send), else on its own after the steps; the hash comes first either way.
        identity = _IdentityRead(self._lookup.probe(tenant, await self._lookup.indexes(tenant, document)))
        account_ps = d.keyring.pseudonym(tenant, "account", account_id)
        establishes = establishes_claim(method, d.settings.methods_for(tenant))
        record: dict[str, str] = {
            "status": "PENDING",
            "reason": "",
            "next_step": "",
            "method": method.id,
            "assurance": method.assurance.value,
            "kind": document.subject_kind.value,
            "acct": account_ps,
            "acct_audit": d.keyring.pseudonym(tenant, "audit", account_id),
            # The account id its events name (idverify/events/accounts.py), for as long as it lives.
            "event_account": event_account_fields(d.keyring, d.sealer, tenant, account_id)["event_account"],
            "acct_sealed": sealed_to_text(
                d.sealer.seal(
                    account_id.encode(), associated=associated_data(tenant, "account-id", verification_id)
                )
            ),
            "name_tag": plan.name_tag,
            "establishes": "1" if establishes else "0",
            # The keyed hashes of the organization's name forms: the index of verified names
            # takes them in the step that establishes its claim (store/lua/_prelude.lua bind()).
            "org_names": organization_name_hashes(d.keyring, tenant, name)
            if establishes and document.subject_kind is SubjectKind.ORGANIZATION
            else "",
            "purposes": ",".join(sorted(plan.purposes)),
            "masked_phone": mask_phone(phone) if phone else "",
            "otp_ps": d.keyring.pseudonym(tenant, "otp-failures", f"{account_id}|{phone}") if phone else "",
            # The phone's deployment-wide pseudonym, sealed to this verification: it counts wrong
            # codes across tenants, and in the clear it would join tenants' records.
            "phone_ps_sealed": sealed_to_text(
                d.sealer.seal(
                    d.keyring.pseudonym(DEPLOYMENT_LABEL, "phone", phone).encode(),
                    associated=associated_data(tenant, "phone-pseudonym", verification_id),
                )
            )
            if phone
            else "",
            "attempts_left": "0",
            "fallbacks": json.dumps(
                fallback_methods(
                    d.settings.methods_for(tenant), method, document.subject_kind, d.biometric_steps
                )
            ),
        }
        steps: list[dict[str, str]] = []
        authority: list[date] = []
        # Whatever this service holds about the document (another name, its limit reached) is
        # judged only when the binding commits, after the caller proved possession: the first
        # reply is the same for every document (no identity oracle).
        extras = plan.extras
        rep = extras.organization.legal_representative_document
        subject = Subject(
            document.subject_kind,
            name,
            document.document_type,
            document.number,
            phone,
            bank_card_number=extras.bank_card,
            legal_representative_name=extras.organization.legal_representative_name,
            legal_representative_document_type=rep.document_type if rep else None,
            legal_representative_document_number=rep.number if rep else "",
            registered_address=extras.organization.registered_address,
            # The document step validates the number again, and a passport needs its country.
            issuing_country=document.issuing_country,
        )
        context = StepContext(
            tenant,
            verification_id,
            subject,
            document,
            plan.today,
            return_url=extras.return_url,
            meta_info=extras.meta_info,
        )
        mode = await self._run_steps(plan, context, _StepsRun(record, steps, authority, identity))
        found = await self._identity_found(tenant, document, name, identity, forward_ms)
        record.update(
            identity=found.ref, name_binding=found.binding, name_binding_seen=found.seen, pepper=found.phc
        )
        minor = False
        try:
            birth, source = birth_dates.choose(
                document=document.birth_date, authorities=authority, declared=plan.declared
            )
        except birth_dates.BirthDateMismatch:
            birth, source = None, birth_dates.AgeSource.NONE
            if mode != "rejected":
                mode = "rejected"
                record.update(status="REJECTED", reason="BIRTH_DATE_MISMATCH", next_step="")
        else:
            minor = is_under_14(birth, plan.today)
        record.update(
            # The band of the start day serves only servers of an older version: one finishing
            # this verification, and 0.1.0 reading the account it is copied to (bind() in
            # _prelude.lua). This release computes the band from the sealed date when read.
            age_band=age_band(birth, plan.today).value,
            minor="1" if minor else "0",
            age_source=source.value,
            birth_sealed=self._ages.seal(tenant, account_ps, birth) if birth else "",
        )
        if mode == "bind" and minor:
            mode = "guardian"
            record.update(
                status="NEEDS_GUARDIAN_CONSENT",
                reason="GUARDIAN_CONSENT_REQUIRED",
                next_step="guardian_consent",
            )
        record["steps"] = json.dumps(steps)
        for _ in range(_MOVE_ATTEMPTS):
            result = await d.scripts.run(
                "start",
                [
                    plan.request_key,
                    keys.verification(verification_id),
                    keys.audit_log(),
                    keys.account(account_ps),
                    keys.identity(record["identity"]),
                    keys.identity_accounts(record["identity"]),
                    keys.request_released(verification_id),
                ],
                [
                    verification_id,
                    d.settings.verification.session_ttl_seconds * 1000,
                    json.dumps(record),
                    d.settings.verification.binding_limit,
                    json.dumps(plan.info.audit_fields()),
                    mode,
                ],
            )
            if result[0] != b"MOVED":
                break
            # Key rotation moved the identity between our lookup and the commit: look again.
            found = await self._lookup.resolve(
                d.redis, tenant, document, name, forward_ms=forward_ms, indexes=found.indexes
            )
            record.update(
                identity=found.ref, name_binding=found.binding, name_binding_seen=found.seen, pepper=found.phc
            )
        else:
            raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")
        if result[0] == b"RELEASED":
            # Only after this attempt gave up (release_request.lua): nobody waits for this answer.
            raise StoreUnavailable("the request was released by its caller; retry")
        if result[0] == b"EXISTS":
            return await self.get(tenant, as_text(result[1]), plan.info)
        view = self._view(tenant, verification_id, decode_flat(result[1]))
        if view.status == "VERIFIED":
            await self._consent.keep(tenant, account_ps)
        _count_start(method.id, view)
        return view

    @contextlib.contextmanager
    def _offering_fallbacks(self, plan: StartPlan) -> Iterator[None]:
        """A consent refusal inside names the other methods to offer.

        Those need neither biometrics nor, when this method reads a card, a card of their own.
        """
        try:
            yield
        except (ConsentRequired, FailedPrecondition) as refused:
            purposes = plan.purposes
            financial = consent_rules.FINANCIAL in purposes
            if financial or consent_rules.BIOMETRIC in purposes or refused.reason == "BIOMETRIC_COOLDOWN":
                card_steps = steps_reading(consent_rules.CARD_FIELDS, self._d.fields_of_step)
                fallbacks = fallback_methods(
                    self._d.settings.methods_for(plan.tenant),
                    plan.method,
                    plan.document.subject_kind,
                    self._d.biometric_steps,
                    card_steps if financial else frozenset(),
                )
                refused.metadata["fallback_method_ids"] = ",".join(fallbacks)
            raise

    async def _run_binding_script(
        self,
        name: str,
        tenant: str,
        verification_id: str,
        record: dict[str, str],
        *,
        keys_for: Callable[[Mapping[str, str]], list[str]],
        args: Sequence[str | int | bytes],
        first: Callable[[list[str], Sequence[str | int | bytes]], Awaitable[Any]] | None = None,
    ) -> Any:
        """Runs a script that may bind the verification's identity, pointed at where it lives now.

        Identities move when keys rotate or a new pepper is adopted. A reference under an older
        wrapping key is moved on before the script runs; a move that races the script makes it
        answer MOVED instead of binding a stale reference, and the verification is pointed anew.

        ``first`` runs the first attempt in place of the script alone, given its keys and
        arguments (the answer's count joins it, :meth:`submit`); it may refuse.
        """
        for _ in range(_MOVE_ATTEMPTS):
            identity = record.get("identity", "")
            if identity and _version_of(identity) != self._d.sealer.current_version:
                await self._refresh(tenant, verification_id, record)
            if first is not None:
                result = await first(keys_for(record), args)
                first = None
            else:
                result = await self._d.scripts.run(name, keys_for(record), args)
            # The submit script makes the consents lasting itself, in the same step.
            if name != "submit" and result[0] == b"OK" and decode_flat(result[1]).get("status") == "VERIFIED":
                await self._consent.keep(tenant, record["acct"])
            if result[0] != b"MOVED":
                return result
            await self._refresh(tenant, verification_id, record)
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")

    async def _refresh(self, tenant: str, verification_id: str, record: dict[str, str]) -> None:
        if await self._mover.refresh_verification(tenant, verification_id, record):
            async with translate_errors():
                raw = await self._d.redis.hgetall(TenantKeys(tenant).verification(verification_id))
            record.clear()
            record.update({as_text(k): as_text(v) for k, v in raw.items()})

    async def _run_steps(self, plan: StartPlan, context: StepContext, run: _StepsRun) -> str:
        """Runs the method's steps: ``bind``, ``challenge`` or ``rejected``.

        Each step's outcome lands in ``run.steps``, a birth date an authority returned in
        ``run.authority``; ``run.identity``'s record is read with a code send's counts, when one
        is made.
        """
        d = self._d
        tenant, method = plan.tenant, plan.method
        record, steps = run.record, run.steps
        for step_name in method.steps:
            verifier = d.verifiers[step_name]
            if isinstance(verifier, ChallengeVerifier) and context.subject.phone_number:
                await self._guard_code_send(plan, record, identity=run.identity)
                if record["status"] == "REJECTED":
                    steps.append(
                        {"verifier": step_name, "outcome": Outcome.FAIL.value, "reason": record["reason"]}
                    )
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
            step = {"verifier": step_name, "outcome": result.outcome.value, "reason": result.reason}
            if result.vendor_code:
                step["vendor_code"] = result.vendor_code
            steps.append(step)
            if result.outcome is Outcome.PASS and result.birth_date is not None:
                run.authority.append(result.birth_date)
            if result.outcome in {Outcome.PASS, Outcome.NOT_APPLICABLE}:
                continue
            if result.outcome is Outcome.UNAVAILABLE:
                # Methods needing the same vendor would fail the same way: offer only the others.
                record["fallbacks"] = json.dumps(
                    fallback_methods(
                        d.settings.methods_for(tenant),
                        method,
                        context.subject.kind,
                        d.biometric_steps,
                        unavailable_steps=_same_provider(d.verifiers, step_name),
                    )
                )
            if (
                result.outcome is Outcome.CHALLENGE
                and result.challenge is not None
                and isinstance(verifier, JudgedChallengeVerifier)
            ):
                self._record_vendor_challenge(
                    tenant, context.verification_id, step_name, result.challenge, record
                )
                return "challenge"
            if result.outcome is Outcome.CHALLENGE and result.challenge is not None:
                challenge = result.challenge
                record.update(
                    status="CHALLENGE_SENT",
                    next_step="submit_challenge",
                    step_verifier=step_name,
                    digest=challenge.expected_digest.hex(),
                    salt=challenge.salt.hex(),
                    challenge_ttl_ms=str(challenge.ttl_seconds * 1000),
                    max_attempts=str(challenge.max_attempts),
                    masked_phone=challenge.masked_destination or record["masked_phone"],
                    attempts_left=record.get("attempts_left_now", str(challenge.max_attempts)),
                )
                record.pop("attempts_left_now", None)
                return "challenge"
            record.update(status="REJECTED", reason=result.reason or "STEP_FAILED")
            return "rejected"
        record.update(status="PENDING")
        return "bind"

    def _record_vendor_challenge(
        self, tenant: str, verification_id: str, step_name: str, challenge: Challenge, record: dict[str, str]
    ) -> None:
        """Keeps a vendor-run challenge's page and token, sealed: they are handles on the vendor's record."""
        sealed = self._d.sealer.seal(
            json.dumps({"url": challenge.url, "token": challenge.token}).encode(),
            associated=associated_data(tenant, "vendor-challenge", verification_id),
        )
        record.update(
            status="CHALLENGE_SENT",
            next_step="vendor_challenge",
            step_verifier=step_name,
            digest="",
            salt="",
            challenge_sealed=sealed_to_text(sealed),
            challenge_ttl_ms=str(challenge.ttl_seconds * 1000),
            max_attempts=str(challenge.max_attempts),
            attempts_left=str(challenge.max_attempts),
        )
        record.pop("attempts_left_now", None)

    def _vendor_challenge(
        self, tenant: str, verification_id: str, record: Mapping[str, str]
    ) -> tuple[str, str]:
        """The (url, token) of a pending vendor-run challenge, or empty strings."""
        sealed = record.get("challenge_sealed", "")
        if not sealed:
            return "", ""
        try:
            opened = json.loads(
                self._d.sealer.unseal(
                    sealed_from_text(sealed),
                    associated=associated_data(tenant, "vendor-challenge", verification_id),
                )
            )
        except (SealError, ValueError):
            return "", ""
        return str(opened.get("url", "")), str(opened.get("token", ""))

    async def _guard_code_send(
        self, plan: StartPlan, record: dict[str, str], *, identity: _IdentityRead | None
    ) -> None:
        """Counts the code about to be sent; a locked account+phone or phone gets none.

        Counting comes first and the code is sent only after every count said yes: a count that
        fails raises, and nothing is sent. On one server the same script reads ``identity``'s
        record first (whatever the counts say).
        """
        d = self._d
        tenant, phone, info = plan.tenant, plan.phone, plan.info
        max_attempts = int(d.settings.verifiers.get("sms_otp", {}).get("max_attempts", 5))
        read = None
        if identity is not None and identity.bindings is None and d.scripts.one_node:
            read = ChainStep("hget_each", identity.probe.keys, ["name_binding"], proceed_on=("OK",))
        verdict, failures, read_reply = await self._sends.count_send(
            plan.keys,
            SendPseudonyms(
                account_phone=record["otp_ps"],
                tenant_phone=d.keyring.pseudonym(tenant, "rl-phone", phone),
                phone=d.keyring.pseudonym(DEPLOYMENT_LABEL, "phone", phone),
            ),
            principal=info.principal,
            max_attempts=max_attempts,
            request=info.audit_fields(),
            before=read,
        )
        if identity is not None and read_reply is not None:
            identity.bindings = list(read_reply[1:])
        if verdict != "OK":
            record.update(status="REJECTED", reason=verdict)
            return
        record["attempts_left_now"] = str(max_attempts - failures)

    def _phone_pseudonym(self, tenant: str, verification_id: str, record: Mapping[str, str]) -> str:
        """The phone's deployment-wide pseudonym a verification holds sealed ("" if none)."""
        sealed = record.get("phone_ps_sealed", "")
        if not sealed:
            return ""
        try:
            return self._d.sealer.unseal(
                sealed_from_text(sealed),
                associated=associated_data(tenant, "phone-pseudonym", verification_id),
            ).decode()
        except SealError:
            # Uncounted wrong codes would slip past the phone's limit: judge nothing instead.
            raise StoreUnavailable(
                "the verification's phone counter cannot be opened", reason="NOT_COUNTED"
            ) from None

    async def _existing_for_request(
        self, tenant: str, keys: TenantKeys, request_id: str
    ) -> VerificationView | None:
        d = self._d
        request_key = keys.request(d.keyring.pseudonym(tenant, "request", request_id))
        async with translate_errors():
            current = _holder(await d.redis.get(request_key))
        if current is None:
            return None
        return await self._verification_for_request(tenant, current, request_key)

    async def _verification_for_request(
        self, tenant: str, holder: bytes | str, request_key: str
    ) -> VerificationView | None:
        """The verification whose id holds a request id, if it was started yet.

        Where steps wait for replicas, the answer waits too: the attempt that wrote it may have
        been refused for want of replicas, and a failover would take back what it wrote.

        Raises:
            StoreUnavailable: the verification has not reached enough replicas in time.
        """
        try:
            existing = await self.get(tenant, as_text(holder), RequestInfo.internal())
        except NotFound:
            return None  # reserved by an attempt still running (or crashed: the TTL frees it)
        if self._d.scripts.acknowledges:
            await self._d.scripts.run("confirm_request", [request_key], [])
        return existing

    async def _wait_for_request(self, tenant: str, keys: TenantKeys, request_id: str) -> VerificationView:
        """A concurrent call holds the request id: wait briefly for its verification."""
        for _ in range(60):
            existing = await self._existing_for_request(tenant, keys, request_id)
            if existing is not None:
                return existing
            await asyncio.sleep(0.05)
        raise StoreUnavailable("the same request is still in progress; retry", reason="REQUEST_IN_PROGRESS")

    # -- submit / get ----------------------------------------------------------------------

    async def submit(
        self, tenant: str, verification_id: str, code: str, info: RequestInfo
    ) -> VerificationView:
        """Judges one answer to the verification's challenge.

        A vendor-run challenge (face liveness) takes no code: an empty one asks the vendor for
        its verdict, which the store then records like an answer.

        Raises:
            InvalidArgument: on a malformed id or code.
            NotFound: when the verification does not exist (or has expired away).
            FailedPrecondition: when the verification is not waiting for a code.
            StoreUnavailable: when Redis, or the vendor judging the challenge, is unreachable.
        """
        d = self._d
        verification_id = _check_verification_id(verification_id)
        bad_code = InvalidArgument("code: 1-16 digits", reason="BAD_CODE", field="code")
        if code and (len(code) > 16 or not code.strip().isdigit()):  # noqa: PLR2004
            raise bad_code
        keys = TenantKeys(tenant)
        async with translate_errors():
            raw = await d.redis.hgetall(keys.verification(verification_id))
        record = {as_text(k): as_text(v) for k, v in raw.items()}
        judged = d.verifiers.get(record.get("step_verifier", ""))
        if isinstance(judged, JudgedChallengeVerifier):
            return await self._submit_judged(
                tenant=tenant,
                keys=keys,
                verification_id=verification_id,
                record=record,
                verifier=judged,
                info=info,
            )
        if not code:
            raise bad_code
        if not raw:
            raise NotFound("no such verification", field="verification_id")
        if record.get("status") != "CHALLENGE_SENT":
            raise FailedPrecondition(
                f"verification is {record.get('status', 'unknown')}, not awaiting a code",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        verifier = d.verifiers[record["step_verifier"]]
        assert isinstance(verifier, ChallengeVerifier)  # noqa: S101 - recorded only for challenge steps
        digest = verifier.digest_answer(tenant, verification_id, bytes.fromhex(record["salt"]), code.strip())
        # Counted for its phone across tenants before the tenant's step judges it; the same
        # digest decides there, so a code is wrong here exactly when it is wrong there.
        phone_ps = self._phone_pseudonym(tenant, verification_id, record)
        wrong = not hmac.compare_digest(record.get("digest", ""), digest.hex())
        count_request = {
            **info.audit_fields(),
            "verification_id": verification_id,
            "account": record.get("acct_audit", ""),
        }
        lock_ps = record.get("otp_ps", "")
        count = self._sends.answer_step(phone_ps, wrong=wrong)
        if count is not None and not d.scripts.one_node:
            # On Cluster the phone's slot is another server's: its count is a step of its own.
            await self._sends.count_answer(
                phone_ps, wrong=wrong, keys=keys, lock_pseudonym=lock_ps, request=count_request
            )
            count = None

        async def counted_and_judged(submit_keys: list[str], args: Sequence[str | int | bytes]) -> Any:
            """The answer's count in the phone's slot and its judgement, one chain on one server."""
            assert count is not None  # noqa: S101 - only passed with a count to make
            # A count Redis refused is a count not made: nothing is judged (fail closed).
            async with counted_or_unavailable():
                replies = await d.scripts.run_chain([count, ChainStep("submit", submit_keys, args)])
            await self._sends.judge_answer_count(
                replies[0], keys=keys, lock_pseudonym=lock_ps, request=count_request
            )
            return replies[1]

        result = await self._run_binding_script(
            "submit",
            tenant,
            verification_id,
            record,
            keys_for=lambda r: _submit_keys(keys, verification_id, r),
            args=[
                digest.hex(),
                d.settings.verification.binding_limit,
                d.settings.verification.otp_failure_window_seconds * 1000,
                json.dumps(info.audit_fields()),
            ],
            first=counted_and_judged if count is not None else None,
        )
        if result[0] == b"STATE":
            # Another answer changed the state between our read and the script: same answer as above.
            raise FailedPrecondition(
                "verification is no longer awaiting a code",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        return self._script_view(tenant, verification_id, result)

    async def finish_by_callback(
        self, tenant: str, verification_id: str, vendor_token: str, info: RequestInfo
    ) -> str:
        """Finishes a vendor-run challenge the vendor says is done, as an empty SubmitChallenge does.

        The vendor's callback only says when to look: the verdict is fetched from the vendor by
        the token recorded at the start, and only when the callback names that same token.

        Returns:
            ``finished`` (the verdict is recorded), ``pending`` (the vendor says the user is not
            done), ``final`` (nothing waits for a verdict: already finished, a replay),
            ``unknown`` (no such verification) or ``mismatch`` (another flow's token, or a
            verification without a vendor-run challenge).

        Raises:
            InvalidArgument: on a malformed verification id.
            StoreUnavailable: when Redis, or the vendor asked for the verdict, is unreachable;
                the verification stays as it was and SubmitChallenge still finishes it.
        """
        verification_id = _check_verification_id(verification_id)
        keys = TenantKeys(tenant)
        async with translate_errors():
            raw = await self._d.redis.hgetall(keys.verification(verification_id))
        if not raw:
            return "unknown"
        record = {as_text(k): as_text(v) for k, v in raw.items()}
        judged = self._d.verifiers.get(record.get("step_verifier", ""))
        if record.get("status") != "CHALLENGE_SENT":
            return "final"
        if not isinstance(judged, JudgedChallengeVerifier):
            return "mismatch"
        _, token = self._vendor_challenge(tenant, verification_id, record)
        if not token or not hmac.compare_digest(token.encode(), vendor_token.encode("utf-8", "replace")):
            return "mismatch"
        try:
            view = await self._submit_judged(
                tenant=tenant,
                keys=keys,
                verification_id=verification_id,
                record=record,
                verifier=judged,
                info=info,
            )
        except FailedPrecondition:
            # Another callback or SubmitChallenge recorded the verdict in between: once is enough.
            return "final"
        return "pending" if view.status == "CHALLENGE_SENT" else "finished"

    async def _submit_judged(
        self,
        *,
        tenant: str,
        keys: TenantKeys,
        verification_id: str,
        record: Mapping[str, str],
        verifier: JudgedChallengeVerifier,
        info: RequestInfo,
    ) -> VerificationView:
        """Asks the vendor for the verdict of its challenge and records it like an answer."""
        d = self._d
        if record.get("status") != "CHALLENGE_SENT":
            raise FailedPrecondition(
                f"verification is {record.get('status', 'unknown')}, not awaiting a challenge",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        _, token = self._vendor_challenge(tenant, verification_id, record)
        step_name = record["step_verifier"]
        with telemetry.span(f"verifier.{step_name}.judge", verifier=step_name) as current:
            result = await verifier.judge(tenant, verification_id, token)
            current.set_attributes(
                telemetry.safe_attributes(
                    {"idverify.outcome": result.outcome.value, "idverify.vendor_code": result.vendor_code}
                )
            )
        if result.outcome is Outcome.CHALLENGE:
            # The user has not finished at the vendor yet: nothing changes.
            return await self.get(tenant, verification_id, info)
        if result.outcome is Outcome.UNAVAILABLE:
            raise StoreUnavailable(
                "the vendor judging the challenge is unavailable; retry", reason=result.reason
            )
        verdict = "pass" if result.outcome is Outcome.PASS else "fail"
        outcome = await self._run_binding_script(
            "submit",
            tenant,
            verification_id,
            dict(record),
            keys_for=lambda r: _submit_keys(keys, verification_id, r),
            args=[
                "",
                d.settings.verification.binding_limit,
                d.settings.verification.otp_failure_window_seconds * 1000,
                json.dumps(info.audit_fields()),
                verdict,
                result.reason or ("" if verdict == "pass" else "STEP_FAILED"),
                result.vendor_code,
            ],
        )
        if outcome[0] == b"STATE":
            raise FailedPrecondition(
                "verification is no longer awaiting a challenge",
                reason="NOT_AWAITING_CHALLENGE",
                field="verification_id",
            )
        return self._script_view(tenant, verification_id, outcome)

    async def get(
        self, tenant: str, verification_id: str, info: RequestInfo, reader: Reader | None = None
    ) -> VerificationView:
        """The current state of a verification; the same step records ``reader``'s read of its account.

        Raises:
            InvalidArgument: on a malformed id.
            NotFound: when the verification does not exist (or has expired away).
        """
        verification_id = _check_verification_id(verification_id)
        keys = TenantKeys(tenant)
        spec = read_spec(reader, (Category.VERIFICATION,), self._d.settings.reads.retention_days)
        result = await self._d.scripts.run(
            "get",
            [keys.verification(verification_id), keys.audit_log()],
            [json.dumps(info.audit_fields()), *(spec if reader is not None else ())],
        )
        return self._script_view(tenant, verification_id, result, count=False)

    async def grant_guardian_consent(
        self,
        *,
        tenant: str,
        account_id: str,
        verification_id: str,
        guardian_account_id: str,
        text_version: str,
        relationship: str,
        info: RequestInfo,
    ) -> VerificationView:
        """The consent of a verified person who is an adult today completes a minor's verification.

        Raises:
            InvalidArgument: on malformed ids, or a relationship that is not one of
                ``consent.RELATIONSHIPS``.
            NotFound: when the verification does not exist or belongs to another account.
            FailedPrecondition: when it does not wait for consent, or the guardian does not qualify.
        """
        d = self._d
        account_id = normalize_identifier(account_id, field="account_id")
        guardian_id = normalize_identifier(guardian_account_id, field="guardian_account_id")
        verification_id = _check_verification_id(verification_id)
        if relationship not in consent_rules.RELATIONSHIPS:
            raise InvalidArgument(
                "relationship: parent or legal guardian", reason="RELATIONSHIP_REQUIRED", field="relationship"
            )
        keys = TenantKeys(tenant)
        async with translate_errors():
            raw = await d.redis.hgetall(keys.verification(verification_id))
        record = {as_text(k): as_text(v) for k, v in raw.items()}
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
        for _ in range(_MOVE_ATTEMPTS):
            guardian, refusal = await self._guardian_today(tenant, guardian_ps)
            result = await self._run_binding_script(
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
                    text_version,
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
        return self._script_view(tenant, verification_id, result)

    async def _guardian_today(self, tenant: str, guardian_ps: str) -> tuple[dict[str, str], str]:
        """The guardian account's age fields as read, and why it may not consent today ('' if it may)."""
        d = self._d
        async with translate_errors():
            row = await d.redis.hmget(TenantKeys(tenant).account(guardian_ps), list(_GUARDIAN_FIELDS))
        fields = {name: as_text(value) for name, value in zip(_GUARDIAN_FIELDS, row, strict=True) if value}
        if not fields.get("identity"):
            return fields, "GUARDIAN_NOT_VERIFIED"
        age = self._ages.read(tenant, guardian_ps, fields, d.today())
        refusal = birth_dates.guardian_refusal(
            age.birth,
            age.source or birth_dates.AgeSource.NONE,
            legacy_adult=age.band is AgeBand.ADULT,
            policy=d.settings.methods_for(tenant).declared_birth_date,
            today=d.today(),
        )
        return fields, refusal

    # -- views -----------------------------------------------------------------------------

    def _script_view(
        self, tenant: str, verification_id: str, result: Sequence[object], *, count: bool = True
    ) -> VerificationView:
        if result[0] == b"NOT_FOUND":
            raise NotFound("no such verification", field="verification_id")
        view = self._view(tenant, verification_id, decode_flat(result[1]))  # type: ignore[arg-type]
        if count:
            _count_finish(view)
        return view

    def _view(self, tenant: str, verification_id: str, record: Mapping[str, str]) -> VerificationView:
        try:
            account_id = self._d.sealer.unseal(
                sealed_from_text(record["acct_sealed"]),
                associated=associated_data(tenant, "account-id", verification_id),
            ).decode()
        except (SealError, KeyError):
            account_id = ""
        status = record.get("status", "PENDING")
        challenge_url, challenge_token = (
            self._vendor_challenge(tenant, verification_id, record)
            if status == "CHALLENGE_SENT"
            else ("", "")
        )
        return VerificationView(
            verification_id=verification_id,
            status=status,
            reason_code=record.get("reason", ""),
            next_step=record.get("next_step", ""),
            masked_phone=record.get("masked_phone", ""),
            attempts_left=int(record.get("attempts_left", "0") or 0),
            account_id=account_id,
            method_id=record.get("method", ""),
            created_ms=int(record.get("created_ms", "0")),
            expires_ms=int(record.get("expires_ms", "0")),
            fallback_method_ids=json.loads(record.get("fallbacks", "[]")) if status == "REJECTED" else [],
            challenge_url=challenge_url,
            challenge_token=challenge_token,
        )


# What a guardian's qualification is judged on; the consent script checks they did not change.
_GUARDIAN_FIELDS = ("identity", "age_source", "birth_sealed", "age_band")
_FINAL = frozenset({"VERIFIED", "REJECTED", "EXPIRED", "NEEDS_GUARDIAN_CONSENT"})


def _check_kind(subject: Subject, document: Document) -> None:
    """Refuses a document of the other kind of subject, and a birth date for an organization.

    Raises:
        InvalidArgument: ``KIND_MISMATCH`` naming the field at fault.
    """
    if document.subject_kind is not subject.kind:
        raise InvalidArgument(
            "document type does not fit the subject kind",
            reason="KIND_MISMATCH",
            field="subject.document_type",
        )
    if subject.birth_date.strip() and document.subject_kind is not SubjectKind.PERSON:
        raise InvalidArgument(
            "only a person has a birth date", reason="KIND_MISMATCH", field=birth_dates.FIELD
        )


@dataclass(slots=True)
class _IdentityRead:
    """A start's identity lookup: where the record may be, and its keys' bindings once read."""

    probe: IdentityProbe
    bindings: list[bytes | None] | None = None


@dataclass(slots=True)
class _StepsRun:
    """What a start's steps leave behind for its commit.

    The record, each step's outcome, the birth dates authorities returned, and the identity's
    record when it was read with a code send.
    """

    record: dict[str, str]
    steps: list[dict[str, str]]
    authority: list[date]
    identity: _IdentityRead


@dataclass(slots=True)
class _Admission:
    """A start's reservation, claim refusals, consents and identity window: one chain of scripts.

    Sent once the start's reads answered. The consents' step checks that the record did not
    change since it was read (its revision) and otherwise answers the record, which is judged
    again (ConsentRequired, FailedPrecondition) and admitted in one more step with the window.
    A caller who gives up after it answered releases the request id (release_request.lua), and
    its own steps arriving later find it released and take nothing.
    """

    plan: StartPlan
    identity_ps: str
    reserve: ChainStep
    claims: ChainStep
    consent: ChainStep | None = None
    window: ChainStep | None = None
    # Whether the request id is ours to release (the chain answered that it reserved it).
    may_hold: bool = False


@dataclass(frozen=True, slots=True)
class _StepExtras:
    """Request fields only some steps read: kept in memory for the steps, never stored."""

    bank_card: str = ""
    return_url: str = ""
    meta_info: str = ""
    organization: OrganizationParticulars = field(default_factory=OrganizationParticulars)

    def __repr__(self) -> str:
        return "_StepExtras(<hidden>)"


@dataclass(frozen=True, slots=True)
class StartPlan:
    """A validated start, decided once and read by its admission, steps and commit.

    It carries the request's personal data (name, document, phone) in memory only, for as long
    as the start runs; its repr names none of it.
    """

    tenant: str
    keys: TenantKeys
    request_id: str
    # The request id's key: its pseudonym, never the id.
    request_key: str
    verification_id: str
    account_id: str
    method: MethodSpec
    document: Document
    name: str
    # Normalized, or "" when no step of the method reads a phone.
    phone: str
    # The calendar day (Asia/Shanghai) ages are judged on, fixed for the whole start.
    today: date
    declared: date | None
    # The consent purposes the method needs, and the text versions given with the request.
    purposes: frozenset[str]
    given: Mapping[str, str]
    name_tag: str
    info: RequestInfo
    extras: _StepExtras

    def __repr__(self) -> str:
        return f"StartPlan(tenant={self.tenant!r}, verification_id={self.verification_id!r}, <hidden>)"


def _submit_keys(keys: TenantKeys, verification_id: str, record: Mapping[str, str]) -> list[str]:
    """The keys of the ``submit`` script, for a code and for a vendor's verdict alike."""
    return [
        keys.verification(verification_id),
        keys.audit_log(),
        keys.account(record["acct"]),
        keys.identity(record["identity"]),
        keys.identity_accounts(record["identity"]),
        keys.otp_failures(record.get("otp_ps", "")),
        keys.consent(record["acct"]),
    ]


def _same_provider(verifiers: Mapping[str, Verifier], step_name: str) -> frozenset[str]:
    """The step and every configured step that depends on the same outside provider."""
    provider = getattr(verifiers[step_name], "provider", "")
    if not isinstance(provider, str) or not provider:
        return frozenset({step_name})
    return frozenset(
        name for name, verifier in verifiers.items() if getattr(verifier, "provider", "") == provider
    ) | {step_name}


def _count_start(method_id: str, view: VerificationView) -> None:
    metrics = telemetry.instruments
    telemetry.Instruments.add(metrics.verifications_started, method=method_id)
    if view.status == "CHALLENGE_SENT":
        telemetry.Instruments.add(metrics.challenge_sends, method=method_id)
    _count_finish(view)


def _count_finish(view: VerificationView) -> None:
    metrics = telemetry.instruments
    if view.reason_code == "OTP_MISMATCH":
        telemetry.Instruments.add(metrics.challenge_failures, method=view.method_id)
    if view.status in _FINAL:
        telemetry.Instruments.add(
            metrics.verifications_finished, method=view.method_id, status=view.status, reason=view.reason_code
        )
    if view.reason_code in {"BINDING_LIMIT_REACHED", "ACCOUNT_BOUND_TO_OTHER_IDENTITY", "NAME_MISMATCH"}:
        telemetry.Instruments.add(metrics.binding_refusals, reason=view.reason_code)


def _check_verification_id(value: str) -> str:
    if len(value) != _VERIFICATION_ID_HEX or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(
            "verification_id: 32 lower-case hex characters", reason="BAD_ID", field="verification_id"
        )
    return value


def _version_of(sealed_text: str) -> str:
    try:
        return sealed_version(sealed_text.encode("ascii", "replace"))
    except SealError:
        return ""


def _holder(holder: bytes | str | None) -> bytes | None:
    """The verification id a request id holds; None when free (a released one is: release_request.lua)."""
    if holder is None:
        return None
    return holder.encode() if isinstance(holder, str) else holder


def _check_client_ip(value: str) -> None:
    import ipaddress  # noqa: PLC0415 - cheap, and only this check needs it

    if not value:
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument("client_ip: not an IP address", reason="BAD_IP", field="client_ip") from None


__all__ = ["CONSENT_PURPOSES", "DocumentType", "StartRequest", "VerificationFlow", "VerificationView"]
