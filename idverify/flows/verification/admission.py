"""A start's admission: its request id reserved, its claims, consents and identity window judged.

One step of the store (``VerificationStore.admit``), sent once the start's reads answered. A
repeated request id answers with the verification it started (or waits for the attempt still
running), and a caller who gives up releases the request id for its retry.

A request id is the account's: its key is keyed over the account (``plan.request_ref``), so the
same id under another account is a new start that reads nothing of the first. Keys of the form
before (the request id's alone, ``Held.legacy``) are still read until they expired, and answer
only a retry of their verification's own account (docs/ARCHITECTURE.md, "Buckets: the plan",
§2 "Request ids").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from idverify.domain import consent as consent_rules
from idverify.domain.errors import (
    ConsentRequired,
    FailedPrecondition,
    NotFound,
    RateLimited,
    StoreUnavailable,
)
from idverify.domain.methods import fallback_methods, steps_reading
from idverify.flows.consent import ConsentFlow, ConsentRecord
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.plan import StartPlan
from idverify.flows.verification.port import (
    Admission,
    ClaimsCheck,
    Held,
    RequestRef,
    Reservation,
    VerificationStore,
    WindowCount,
)
from idverify.flows.verification.views import VerificationReader, VerificationView

# A reservation holds a request id while its first attempt runs (argon2 + SMS send); a crashed
# attempt frees it after this long.
RESERVATION_MS = 30_000
# A repeated request id whose attempt is still running is asked again this often, this many
# times (3 s), before the caller is told to retry.
_WAIT_ROUNDS = 60
_WAIT_SECONDS = 0.05


@dataclass(slots=True)
class Reserved:
    """A start's admission as judged, and whether its request id is ours to release.

    Sent once the start's reads answered. The consents' part checks that the record did not
    change since it was read (its revision) and otherwise answers the record, which is judged
    again (ConsentRequired, FailedPrecondition) and admitted in one more step with the window.
    A caller who gives up after it answered releases the request id, and its own writes
    arriving later find it released and take nothing.
    """

    plan: StartPlan
    admission: Admission
    # Whether the request id is ours to release (the admission answered that it reserved it).
    may_hold: bool = False


class StartAdmission:
    """Reserves a start's request id and admits it, or answers for a repeated one."""

    def __init__(
        self, deps: FlowDeps, store: VerificationStore, consent: ConsentFlow, reader: VerificationReader
    ) -> None:
        self._d = deps
        self._store = store
        self._consent = consent
        self._reader = reader

    async def prepare(self, plan: StartPlan) -> Reserved | str:
        """The admission that reserves a start's request id and admits it: one step, one round trip.

        The request id and the account's consent record are read first (one round trip): the
        verification id a repeated request id holds is then the answer; otherwise the consents
        are judged on the record, and the admission checks that it did not change since (its
        revision; a changed record is answered and judged again, :meth:`admit`).

        Raises:
            ConsentRequired, FailedPrecondition: the consents refuse it (naming other methods).
        """
        d = self._d
        tenant = plan.tenant
        limits = d.settings.rate_limits
        request = plan.info.audit_fields()
        # What the start reads before its admission: one round trip. The admission (its first
        # write) is sent only once these answered, so a store that stalls on them never runs a
        # reservation for a caller who gave up.
        read = await self._store.read_start(tenant, plan.request, plan.name_tag)
        if read.holder is not None:
            holder = await self._answering(plan.tenant, plan.request, read.holder)
            if holder is not None:
                return holder
        with self.offering_fallbacks(plan):
            judged = await self._consent.judge_start(plan, read.consent)
        identity_ps = d.keyring.pseudonym(tenant, "rl-identity", plan.name_tag)
        return Reserved(
            plan,
            Admission(
                tenant=tenant,
                request=plan.request,
                verification_id=plan.verification_id,
                reservation_ms=RESERVATION_MS,
                # Every counter that refuses a start counts per (document, name) pair, so that a
                # squatter's failures under a false name never refuse the owner who presents the true one.
                claims=ClaimsCheck(
                    plan.name_tag,
                    limits.claim_refusals_per_day,
                    {**request, "account": d.keyring.pseudonym(tenant, "audit", plan.account_id)},
                    refusals_read=read.claim_refusals,
                ),
                consent=judged,
                window=WindowCount(identity_ps, limits.per_identity_per_hour, 3600, request)
                if limits.per_identity_per_hour > 0
                else None,
            ),
        )

    async def admit(self, reserved: Reserved) -> str | None:
        """Runs the admission; None when it reserved and admitted, else the request id's holder.

        Raises:
            ConsentRequired, FailedPrecondition, RateLimited, StoreUnavailable: refused, or not
                run; a reservation it answered stays to be released by the caller (``may_hold``).
        """
        admission = reserved.admission
        # An admission that failed unanswered is not released, as a reservation never was: the
        # call fails at once (a stalled one that runs later holds the id for its 30 s).
        answer = await self._store.admit(admission)
        if answer.reservation is Reservation.HELD:
            return answer.holder
        if answer.reservation is Reservation.RELEASED:
            raise StoreUnavailable("the request was released by its caller; retry")
        reserved.may_hold = True
        if answer.claims_refusal is not None:
            raise answer.claims_refusal
        assert answer.consent is not None  # noqa: S101 - the claims said yes, so the consents ran
        counted, refusal = answer.window_counted, answer.window_refusal
        with self.offering_fallbacks(reserved.plan):
            if not self._consent.admitted(answer.consent):
                counted, refusal = await self._admit_on_record(reserved, answer.consent.record)
        if refusal is not None:
            raise refusal
        if admission.window is not None and not counted:
            await self._store.count_window(admission.tenant, admission.window)
        return None

    async def _admit_on_record(
        self, reserved: Reserved, record: ConsentRecord | None
    ) -> tuple[bool, RateLimited | None]:
        """Judges the consents on the record the admission answered, then admits them with the window.

        Whether the window was counted with them, and its refusal. When the record kept changing
        they are judged and admitted alone, and the window counted after.
        """
        assert record is not None  # noqa: S101 - a reply not admitted nor refused is CHANGED, with the record
        plan, window = reserved.plan, reserved.admission.window
        again = await self._consent.judge_start(plan, record)
        answer = await self._store.readmit(plan.tenant, again, window)
        if self._consent.admitted(answer.consent):
            return answer.window_counted, answer.window_refusal
        await self._consent.admit_start(plan)
        return False, None

    @contextlib.contextmanager
    def offering_fallbacks(self, plan: StartPlan) -> Iterator[None]:
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

    async def release(self, reserved: Reserved) -> None:
        """Releases the request id so that the caller's retry can run, if the admission holds it.

        Called when the start fails after its admission: unless the start committed although its
        caller was told otherwise (a lost reply: the retry must find that verification). The
        release also turns away this attempt's own writes still on their way. One lost as well
        leaves the id to the reservation's TTL.
        """
        if not reserved.may_hold:
            return
        plan = reserved.plan
        with contextlib.suppress(StoreUnavailable):
            await self._store.release(plan.tenant, plan.request, plan.verification_id, RESERVATION_MS)

    async def repeated(self, plan: StartPlan, holder: str) -> VerificationView:
        """A repeated request id: the verification it started, or wait for the attempt running."""
        existing = await self._verification_for_request(plan.tenant, holder, plan.request)
        return existing or await self._wait_for_request(plan.tenant, plan.request)

    async def _answering(self, tenant: str, request: RequestRef, held: Held) -> str | None:
        """The verification id that answers a start whose request id holds ``held``; None: start anew.

        The account's own key always answers. A legacy one answers only when its verification is
        the account's (:meth:`_legacy_accounts`); while it is only a reservation (an older
        server's attempt still running) the start waits for it as for its own, as the older
        release did.

        Raises:
            StoreUnavailable: ``REQUEST_IN_PROGRESS``, the legacy reservation outlived the wait.
        """
        for _ in range(_WAIT_ROUNDS):
            if not held.legacy:
                return held.verification_id
            accounts = await self._legacy_accounts(tenant, request, held)
            if accounts is not None:
                return held.verification_id if accounts else None
            await asyncio.sleep(_WAIT_SECONDS)
            current = await self._store.holder(tenant, request)
            if current is None:
                return None  # released or expired: nothing of it to answer
            held = current
        raise _in_progress()

    async def _existing_for_request(self, tenant: str, request: RequestRef) -> VerificationView | None:
        current = await self._store.holder(tenant, request)
        if current is None:
            return None
        if current.legacy and not await self._legacy_accounts(tenant, request, current):
            return None
        return await self._verification_for_request(tenant, current.verification_id, request)

    async def _legacy_accounts(self, tenant: str, request: RequestRef, held: Held) -> bool | None:
        """Whether a legacy holder's verification is the request's account's; None: not stored yet.

        Read without a side effect (no expiry, no read recorded), so another account's learns nothing.
        """
        record = await self._store.record(tenant, held.verification_id)
        return None if record is None else record.acct == request.account_pseudonym

    async def _verification_for_request(
        self, tenant: str, holder: str, request: RequestRef
    ) -> VerificationView | None:
        """The verification whose id holds a request id, if it was started yet.

        Where writes wait for replicas, the answer waits too: the attempt that wrote it may have
        been refused for want of replicas, and a failover would take back what it wrote.

        Raises:
            StoreUnavailable: the verification has not reached enough replicas in time.
        """
        try:
            existing = await self._reader.get(tenant, holder, RequestInfo.internal())
        except NotFound:
            return None  # reserved by an attempt still running (or crashed: the TTL frees it)
        await self._store.confirm(tenant, request)
        return existing

    async def _wait_for_request(self, tenant: str, request: RequestRef) -> VerificationView:
        """A concurrent call holds the request id: wait briefly for its verification."""
        for _ in range(_WAIT_ROUNDS):
            existing = await self._existing_for_request(tenant, request)
            if existing is not None:
                return existing
            await asyncio.sleep(_WAIT_SECONDS)
        raise _in_progress()


def _in_progress() -> StoreUnavailable:
    return StoreUnavailable("the same request is still in progress; retry", reason="REQUEST_IN_PROGRESS")
