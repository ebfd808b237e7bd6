"""A start's admission: its request id reserved, its claims, consents and identity window judged.

One chain of scripts in the tenant's slot, sent once the start's reads answered. A repeated
request id answers with the verification it started (or waits for the attempt still running),
and a caller who gives up releases the request id for its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from idverify.domain import consent as consent_rules
from idverify.domain.errors import ConsentRequired, FailedPrecondition, NotFound, StoreUnavailable
from idverify.domain.methods import fallback_methods, steps_reading
from idverify.flows.consent import ConsentFlow
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification.plan import StartPlan
from idverify.flows.verification.views import VerificationReader, VerificationView
from idverify.store.connection import as_text, translate_errors
from idverify.store.consents import RedisConsentStore
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows, counted_step, judge_counted
from idverify.store.scripts import ChainStep

# A reservation holds a request id while its first attempt runs (argon2 + SMS send); a crashed
# attempt frees it after this long.
RESERVATION_MS = 30_000


@dataclass(slots=True)
class Admission:
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


class StartAdmission:
    """Reserves a start's request id and admits it, or answers for a repeated one."""

    def __init__(
        self, deps: FlowDeps, consent: ConsentFlow, consents: RedisConsentStore, reader: VerificationReader
    ) -> None:
        self._d = deps
        self._consent = consent
        # The store's own pieces: the start reads the record in its pipeline and admits in its chain.
        self._consents = consents
        self._reader = reader

    async def prepare(self, plan: StartPlan) -> Admission | bytes:
        """The step that reserves a start's request id and admits it: one chain, one round trip.

        The request id and the account's consent record are read first (one round trip): the
        verification id a repeated request id holds is then the answer; otherwise the consents
        are judged on the record, and the step checks that it did not change since (its
        revision; a changed record is answered and judged again, :meth:`admit`).

        Raises:
            ConsentRequired, FailedPrecondition: the consents refuse it (naming other methods).
        """
        d = self._d
        tenant, keys = plan.tenant, plan.keys
        limits = d.settings.rate_limits
        request = plan.info.audit_fields()
        admission = Admission(
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
            self._consents.queue_read(pipe, tenant, d.keyring.pseudonym(tenant, "account", plan.account_id))
            holder, consent_raw, cancelled = await pipe.execute()
        if _holder(holder) is not None:
            return bytes(holder)
        with self.offering_fallbacks(plan):
            judged = await self._consent.judge_start(plan, self._consents.record_of(consent_raw, cancelled))
            admission.consent = self._consents.start_step(tenant, judged)
        admission.window = RedisRateWindows.step(
            keys,
            "identity",
            admission.identity_ps,
            limit=limits.per_identity_per_hour,
            window_seconds=3600,
            request=request,
        )
        return admission

    async def admit(self, admission: Admission) -> bytes | None:
        """Runs the admission; None when it reserved and admitted, else the request id's holder.

        Raises:
            ConsentRequired, FailedPrecondition, RateLimited, StoreUnavailable: refused, or not
                run; a reservation it answered stays to be released by the caller (``may_hold``).
        """
        assert admission.consent is not None  # noqa: S101 - prepare() judged them
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
        with self.offering_fallbacks(admission.plan):
            if not self._consent.admitted(self._consents.reply_of(replies[2])):
                replies = await self._admit_on_record(admission, replies[2], window)
        if admission.window is None:
            return None
        d = self._d
        limit = d.settings.rate_limits.per_identity_per_hour
        if len(replies) > 3:  # noqa: PLR2004 - reservation, claims, consents, window
            RedisRateWindows.refuse_over_limit(replies[3], purpose="identity", limit=limit)
        else:
            await d.window_limiter.hit(
                admission.plan.tenant,
                "identity",
                admission.identity_ps,
                limit=limit,
                window_seconds=3600,
                request=admission.plan.info.audit_fields(),
            )
        return None

    async def _admit_on_record(
        self, admission: Admission, changed: Any, window: list[ChainStep]
    ) -> list[Any]:
        """Judges the consents on the record their step answered; the replies as the chain's would be.

        Empty when the record kept changing: then judged and admitted alone, and the window
        counted after.
        """
        record = self._consents.reply_of(changed).record
        assert record is not None  # noqa: S101 - a reply not admitted nor refused is CHANGED, with the record
        again = await self._consent.judge_start(admission.plan, record)
        replies = await self._d.scripts.run_chain(
            [self._consents.start_step(admission.plan.tenant, again), *window]
        )
        if self._consent.admitted(self._consents.reply_of(replies[0])):
            return [None, None, *replies]
        await self._consent.admit_start(admission.plan)
        return []

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

    async def release(self, admission: Admission) -> None:
        """Releases the request id so that the caller's retry can run, if the admission holds it.

        Called when the start fails after its admission: unless the start committed although its
        caller was told otherwise (a lost reply: the retry must find that verification). The
        release also turns away this attempt's own steps still on their way
        (release_request.lua). One lost as well leaves the id to the reservation's TTL.
        """
        if not admission.may_hold:
            return
        plan = admission.plan
        release = [
            plan.request_key,
            plan.keys.verification(plan.verification_id),
            plan.keys.request_released(plan.verification_id),
        ]
        with contextlib.suppress(StoreUnavailable):
            await self._d.scripts.run("release_request", release, [plan.verification_id, RESERVATION_MS])

    async def repeated(self, plan: StartPlan, holder: bytes) -> VerificationView:
        """A repeated request id: the verification it started, or wait for the attempt running."""
        existing = await self._verification_for_request(plan.tenant, holder, plan.request_key)
        return existing or await self._wait_for_request(plan.tenant, plan.keys, plan.request_id)

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
            existing = await self._reader.get(tenant, as_text(holder), RequestInfo.internal())
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


def _holder(holder: bytes | str | None) -> bytes | None:
    """The verification id a request id holds; None when free (a released one is: release_request.lua)."""
    if holder is None:
        return None
    return holder.encode() if isinstance(holder, str) else holder
