"""A start's admission as steps of one bucket each (docs/ARCHITECTURE.md, "3.7 Admission").

The admission reserves the request id (``reserve_request``), checks the name's refused claims
(``refuse_counted``), admits the start under the account's consents (``consent_start``) and counts
the identity's window (``rate_limit``), in that order, each only after the one before said yes. On
one node (``StepRunner.chained``) the four are one chain, one EVAL, as they always were. Step by
step (a Cluster) they are in three buckets: the reservation and the consents in the account's
(A), the claims' counter in the name's (C), the window in the identity's (C'). So:

- the account's two run as one chain, one round trip, when the start's reads found the claims'
  counter below its limit (``ClaimsCheck.refusals_read``): the check then passes, as it would have
  at that moment, and is not sent;
- otherwise the reservation runs alone, then the check, then the consents: the order of the chain,
  so that a held request id still answers before a refusal of its claims;
- the window runs last, alone, once the consents admitted the start: no step after it can refuse,
  so its count is never one a refused start took, and nothing is given back.

A refusal by a step after the reservation leaves the reservation to the flow's release, as the
chain's does; a crash at a boundary leaves it to its short TTL, and what each boundary leaves is
argued in ARCHITECTURE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idverify.domain.errors import RateLimited
from idverify.flows.consent import ConsentAdmission
from idverify.flows.verification import port
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import as_text
from idverify.store.consents import RedisConsentStore
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows, counted_step, judge_counted
from idverify.store.scripts import ChainStep, Scripts

__all__ = ["ADMISSION", "READMISSION", "AdmissionSteps"]

ADMISSION = "admission"
"""The sequence's name at the step runner's boundaries (the crash tests stop there)."""
READMISSION = "readmission"


def _refusal(reply: Any, judge: Callable[[Any], None]) -> RateLimited | None:
    """The refusal ``judge`` raises on ``reply``, kept for the caller to raise when it is ready."""
    try:
        judge(reply)
    except RateLimited as refused:
        return refused
    return None


def _claims_refusal(reply: Any) -> RateLimited | None:
    return _refusal(reply, lambda counted: judge_counted(counted, purpose="claim_refusals"))


def _window_refusal(reply: Any, window: port.WindowCount) -> RateLimited | None:
    return _refusal(
        reply,
        lambda counted: RedisRateWindows.refuse_over_limit(counted, purpose="identity", limit=window.limit),
    )


def _window_step(keys: TenantKeys, window: port.WindowCount | None) -> ChainStep | None:
    if window is None:
        return None
    return RedisRateWindows.step(
        keys,
        "identity",
        window.identity_pseudonym,
        limit=window.limit,
        window_seconds=window.window_seconds,
        request=dict(window.request),
    )


def _ok(reply: Any) -> bool:
    return as_text(reply[0]) == "OK"


class AdmissionSteps:
    """Runs a start's admission and readmission: one chain on one node, steps by bucket elsewhere."""

    def __init__(
        self, scripts: Scripts, runner: StepRunner, *, keys: Callable[[str], TenantKeys] = TenantKeys
    ) -> None:
        """Steps on ``runner``; ``keys`` names a tenant's keys (today's ``TenantKeys`` by default).

        The reservation is named in the account's bucket, each counter in its own, and each
        step's entry beside the key it counts or changes.
        """
        self._scripts = scripts
        self._runner = runner
        self._keys = keys

    async def admit(self, admission: port.Admission) -> port.AdmissionAnswer:
        """The reservation, claims, consents and window, each only after an OK of the one before."""
        keys = self._keys(admission.tenant)
        claims = admission.claims
        request = admission.request
        reserve = ChainStep(
            "reserve_request",
            [
                keys.request(request.pseudonym, request.account_pseudonym),
                keys.request_released(admission.verification_id),
            ],
            [admission.verification_id, admission.reservation_ms],
            proceed_on=("OK",),
        )
        check = counted_step(
            keys, "claim_refusals", claims.name_tag, limit=claims.limit, request=dict(claims.request)
        )
        consents = RedisConsentStore.start_step(admission.tenant, admission.consent, keys)
        window = _window_step(keys, admission.window)
        if self._runner.chained:
            replies = await self._scripts.run_chain(
                [reserve, check, consents, *([window] if window is not None else [])]
            )
            return self._answer(admission, replies)
        if claims.limit <= 0 or (claims.refusals_read is not None and claims.refusals_read < claims.limit):
            # The check would pass: the reservation and the consents, one chain in A.
            replies = await self._runner.run_joined(ADMISSION, [reserve, consents], 1)
            replies.insert(1, [b"OK"])  # the check as the reads found it
            done = 1
        else:
            replies = [await self._runner.run_one(ADMISSION, reserve, 1)]
            for step in (check, consents):
                if not _ok(replies[-1]):
                    break
                replies.append(await self._runner.run_one(ADMISSION, step, len(replies) + 1))
            done = len(replies)
        if window is not None and len(replies) == 3 and _ok(replies[2]):  # noqa: PLR2004 - the consents admitted
            replies.append(await self._runner.run_one(ADMISSION, window, done + 1))
        return self._answer(admission, replies)

    @staticmethod
    def _answer(admission: port.Admission, replies: list[Any]) -> port.AdmissionAnswer:
        """The replies of the steps that ran, in the chain's order: reservation, claims, consents, window."""
        reservation = replies[0]
        if reservation[0] == b"HELD":
            return port.AdmissionAnswer(port.Reservation.HELD, holder=as_text(reservation[1]))
        if reservation[0] != b"OK":
            return port.AdmissionAnswer(port.Reservation.RELEASED)
        refused = _claims_refusal(replies[1])
        if refused is not None or len(replies) < 3:  # noqa: PLR2004 - reservation, claims, consents
            return port.AdmissionAnswer(port.Reservation.RESERVED, claims_refusal=refused)
        window = admission.window
        counted = window is not None and len(replies) > 3  # noqa: PLR2004 - and the window
        return port.AdmissionAnswer(
            port.Reservation.RESERVED,
            consent=RedisConsentStore.reply_of(replies[2]),
            window_counted=counted,
            window_refusal=_window_refusal(replies[3], window) if window is not None and counted else None,
        )

    async def readmit(
        self, tenant: str, consent: ConsentAdmission, window: port.WindowCount | None
    ) -> port.Readmission:
        """``consent_start`` (A), then the window's count (C') once it admitted: a chain on one node."""
        keys = self._keys(tenant)
        consents = RedisConsentStore.start_step(tenant, consent, keys)
        count = _window_step(keys, window)
        if self._runner.chained:
            replies = await self._scripts.run_chain([consents, *([count] if count is not None else [])])
        else:
            replies = [await self._runner.run_one(READMISSION, consents, 1)]
            if count is not None and _ok(replies[0]):
                replies.append(await self._runner.run_one(READMISSION, count, 2))
        counted = window is not None and len(replies) > 1
        return port.Readmission(
            RedisConsentStore.reply_of(replies[0]),
            window_counted=counted,
            window_refusal=_window_refusal(replies[1], window) if window is not None and counted else None,
        )
