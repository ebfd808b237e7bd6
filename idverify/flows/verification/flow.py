"""The verification use case as the servicers see it: one facade over the modules beside it.

A start is validated into a plan (plan.py), admitted (admission.py), and its steps run and
committed (steps.py, commit.py); answers (answers.py), a guardian's consent (guardian.py) and
reads (views.py) work on the stored record, binding through binding.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from idverify.config import Settings
from idverify.domain.errors import RateLimited
from idverify.domain.methods import MethodSpec, is_biometric, required_fields
from idverify.domain.subjects import SubjectKind
from idverify.flows.account_age import AccountAges
from idverify.flows.consent import ConsentFlow, ConsentStore
from idverify.flows.context import FlowDeps, RequestInfo, seconds_left
from idverify.flows.read_accounting import Reader
from idverify.flows.verification.admission import RESERVATION_MS, StartAdmission
from idverify.flows.verification.answers import AnswerFlow
from idverify.flows.verification.binding import BindingPoints
from idverify.flows.verification.challenge_memo import ChallengeMemo
from idverify.flows.verification.commit import StartCommit
from idverify.flows.verification.guardian import GuardianConsent, GuardianConsents
from idverify.flows.verification.identities import Identities
from idverify.flows.verification.plan import StartRequest, plan_start
from idverify.flows.verification.port import VerificationStore
from idverify.flows.verification.steps import StepRunner
from idverify.flows.verification.views import VerificationReader, VerificationView
from idverify.observability import telemetry
from idverify.security.code_sends import SendLimits


def send_limits(settings: Settings) -> SendLimits:
    """The windows a verification's code sends and wrong codes are counted against."""
    limits, verification = settings.rate_limits, settings.verification
    return SendLimits(
        per_phone_per_hour=limits.code_sends_per_phone_per_hour,
        per_phone_all_tenants_per_hour=limits.code_sends_per_phone_all_tenants_per_hour,
        per_phone_all_tenants_per_day=limits.code_sends_per_phone_all_tenants_per_day,
        per_principal_per_minute=limits.code_sends_per_principal_per_minute,
        per_principal_per_day=limits.code_sends_per_principal_per_day,
        per_tenant_per_minute=limits.code_sends_per_tenant_per_minute,
        per_tenant_per_day=limits.code_sends_per_tenant_per_day,
        phone_failure_limit=verification.otp_failures_per_phone,
        failure_window_ms=verification.otp_failure_window_seconds * 1000,
    )


class VerificationFlow:
    """Runs verifications for every tenant."""

    def __init__(
        self,
        deps: FlowDeps,
        store: VerificationStore,
        consents: ConsentStore,
        identities: Identities,
        *,
        memo: ChallengeMemo | None = None,
    ) -> None:
        """Builds the flow.

        Args:
            deps: settings, keyring, sealer, indexer, verifiers, window limiter and calendar.
            store: the verifications and the requests that start them.
            consents: the accounts' consent records, which a start admits under.
            identities: finds a start's identity, and where a stored verification's lives now.
            memo: this worker's code challenges, whose answers are judged without reading them
                (None: every answer reads its verification).
        """
        self._d = deps
        self._consent = ConsentFlow(
            consents,
            deps.settings.consent,
            deps.keyring,
            deps.sealer,
            lifetime_ms=RESERVATION_MS + deps.settings.verification.session_ttl_seconds * 1000,
        )
        ages = AccountAges(deps.sealer)
        self._reader = VerificationReader(deps, store)
        binding = BindingPoints(identities, deps.sealer, self._reader)
        self._admission = StartAdmission(deps, store, self._consent, self._reader)
        self._commit = StartCommit(
            deps,
            store,
            consent=self._consent,
            lookup=identities,
            ages=ages,
            steps=StepRunner(deps, store),
            reader=self._reader,
            memo=memo,
        )
        self._answers = AnswerFlow(deps, store, self._reader, binding, memo)
        self._guardians = GuardianConsents(deps, store, self._consent, ages, self._reader, binding)

    @property
    def consent(self) -> ConsentFlow:
        """The consent records this flow admits verifications under."""
        return self._consent

    @property
    def guardians(self) -> GuardianConsents:
        """Completes minors' verifications with their guardians' consent, as ConsentService asks."""
        return self._guardians

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
            RateLimited: when the identity or phone is over its limit, or this worker's hashes
                would not be done in the call's time (HASH_QUEUE_FULL).
            StoreUnavailable: when Redis is down.
        """
        plan = plan_start(self._d, tenant, request, info)
        admission = await self._admission.prepare(plan)
        if isinstance(admission, str):
            return await self._admission.repeated(plan, admission)
        # After the reads, which answer a repeated request id without a hash; before the
        # admission's reservation and counters, so that a start refused here leaves nothing that
        # would change its retry.
        with self._hashes_promised():
            try:
                held = await self._admission.admit(admission)
                if held is None:
                    return await self._commit.run(plan)
            except BaseException:
                await self._admission.release(admission)
                raise
        return await self._admission.repeated(plan, held)

    @contextlib.contextmanager
    def _hashes_promised(self) -> Iterator[None]:
        """The start's hashes counted in the worker's backlog, or HASH_QUEUE_FULL (counted in metrics)."""
        time_left = seconds_left(self._d.settings.grpc.rpc_timeout_seconds)
        with contextlib.ExitStack() as promised:
            try:
                promised.enter_context(self._d.indexer.promise(time_left))
            except RateLimited:
                telemetry.Instruments.add(telemetry.instruments.rate_limit_hits, limit="hash_queue_full")
                raise
            yield

    # -- answers and reads -----------------------------------------------------------------

    async def submit(
        self, tenant: str, verification_id: str, code: str, info: RequestInfo
    ) -> VerificationView:
        """Judges one answer to the verification's challenge (:meth:`AnswerFlow.submit`)."""
        return await self._answers.submit(tenant, verification_id, code, info)

    async def finish_by_callback(
        self, tenant: str, verification_id: str, vendor_token: str, info: RequestInfo
    ) -> str:
        """Finishes a vendor-run challenge the vendor says is done (:meth:`AnswerFlow.finish_by_callback`)."""
        return await self._answers.finish_by_callback(tenant, verification_id, vendor_token, info)

    async def get(
        self, tenant: str, verification_id: str, info: RequestInfo, reader: Reader | None = None
    ) -> VerificationView:
        """The current state of a verification (:meth:`VerificationReader.get`)."""
        return await self._reader.get(tenant, verification_id, info, reader)

    async def grant_guardian_consent(self, request: GuardianConsent) -> VerificationView:
        """A guardian's consent completes a minor's verification (:meth:`GuardianConsents.grant`)."""
        return await self._guardians.grant(request)
