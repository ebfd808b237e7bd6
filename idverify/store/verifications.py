"""Verifications in Redis, for ``flows.verification``.

``flows.verification`` decides (what a start stores, which answer is right, who may be a
guardian); this adapter knows the keys (``{t}:vf:<id>``, ``{t}:req:<request pseudonym>`` and the
attempt's release marker; a request's legacy key is read beside its account's, never written),
runs ``reserve_request``, ``release_request``, ``confirm_request``, ``start``, ``get``,
``submit`` and ``guardian`` and reads their replies once (a verification's
hash to and from its record through ``store.verification_fields``). A start's reads
are one pipeline and its admission ``store.admission_steps``' (one chain on one node), with the
consent record's pieces from ``store.consents`` and the counters' steps from ``store.code_sends``
(an answer's count runs in one chain with its judgement, after ``fields_unchanged`` where the
answer was judged from a remembered record), so a signup keeps its round trips
(``tests/unit/flows/test_round_trips.py``). Where steps run one by one (a Cluster), an answer's
binding is ``store.binding_steps``'s sequence; on one node ``submit.lua`` runs it in one script.
A script that may bind an identity answers MOVED when key rotation moved it; the retry that points
the record anew is :meth:`_until_placed`, once for all of them.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from idverify.domain.errors import StoreUnavailable
from idverify.flows.consent import ConsentAdmission
from idverify.flows.context import FlowDeps
from idverify.flows.identity_lookup import IdentityLookup
from idverify.flows.identity_mover import IdentityMover, move_wait_deadline, wait_for_move
from idverify.flows.verification import port
from idverify.flows.verification.challenge_memo import ChallengeMemo
from idverify.flows.verification.flow import VerificationFlow, send_limits
from idverify.flows.verification.identities import LookupIdentities
from idverify.flows.verification.record import VerificationRecord
from idverify.security.code_sends import SendPseudonyms
from idverify.security.rate_limits import WindowLimiter
from idverify.store.admission_steps import AdmissionSteps
from idverify.store.binding_steps import Answer, BindingSteps, Pointing
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains, counted_or_unavailable
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.consents import RedisConsentStore
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.read_steps import record_read, records
from idverify.store.scripts import ChainStep, Scripts, decode_flat, hash_fields
from idverify.store.verification_fields import fields_of, fields_read, record_of

__all__ = ["MOVE_ATTEMPTS", "RedisVerificationStore", "redis_verification_flow"]

# A write whose identity keeps moving (key rotation racing it) gives up after this many attempts.
MOVE_ATTEMPTS = 3

# The replies a write's script answers with, other than {'OK', record} and {'MOVED'}.
_OUTCOMES = {
    b"NOT_FOUND": port.WriteOutcome.NOT_FOUND,
    b"STATE": port.WriteOutcome.STATE,
    b"EXISTS": port.WriteOutcome.EXISTS,
    b"RELEASED": port.WriteOutcome.RELEASED,
    b"GUARDIAN": port.WriteOutcome.GUARDIAN_REFUSED,
    b"CHANGED": port.WriteOutcome.GUARDIAN_CHANGED,
    b"STALE": port.WriteOutcome.STALE,
}


@functools.lru_cache(maxsize=256)
def _keys(tenant: str) -> TenantKeys:
    return TenantKeys(tenant)


def _written(reply: Any) -> port.Written:
    """A write script's reply: {'OK', record} | {'NOT_FOUND'} | {'STATE', record} | {'EXISTS', id} | ..."""
    head = reply[0]
    if head == b"OK":
        return port.Written(port.WriteOutcome.DONE, record_of(decode_flat(reply[1])))
    outcome = _OUTCOMES[head]
    if outcome is port.WriteOutcome.STATE:
        return port.Written(outcome, record_of(decode_flat(reply[1])))
    return port.Written(outcome, detail=as_text(reply[1]) if len(reply) > 1 else "")


def _held(current: bytes | None, legacy: bytes | None) -> port.Held | None:
    """What a request id holds: its account's key first, else its legacy key's (GET replies)."""
    if current is not None:
        return port.Held(as_text(current))
    return port.Held(as_text(legacy), legacy=True) if legacy is not None else None


def _request_keys(keys: TenantKeys, request: port.RequestRef) -> list[str]:
    """The request id's key under its account, then its legacy key (read, never written).

    Both are the tenant's without a layout. A bucketed tenant's namer names both in the account's
    bucket, where no release wrote the legacy form: the tenant's records of it had expired before
    its records moved (docs/ARCHITECTURE.md §2, "Request ids"), so the read finds nothing there,
    as it would in ``{t:T}``, and keeps the step's keys in one slot.
    """
    account = request.account_pseudonym
    return [keys.request(request.pseudonym, account), keys.request(request.legacy_pseudonym, account)]


def _unchanged_step(key: str, expect: VerificationRecord | None) -> ChainStep | None:
    """``fields_unchanged`` on the verification's hash, for an answer judged from ``expect``."""
    if expect is None:
        return None
    fields = [text for pair in fields_read(expect).items() for text in pair]
    return ChainStep("fields_unchanged", [key], fields, proceed_on=("OK",))


def _binding_answer(answer: port.ChallengeAnswer, record: VerificationRecord) -> Answer:
    """The answer as a binding's steps take it, with the keys of ``record`` as read."""
    return Answer(
        answer.tenant,
        answer.verification_id,
        record.acct,
        record.otp_ps,
        answer.digest,
        answer.binding_limit,
        answer.failure_window_ms,
        answer.request_json,
        answer.verdict,
        answer.verdict_reason,
        answer.vendor_code,
    )


class _LookedUpAgain:
    """A start's ``point`` as the :class:`Pointing` of its binding's steps.

    Step by step a start in ``bind`` mode reads no identity (another bucket's): the place finds
    it moved, after the start stored the verification. It is pointed where the start's own
    lookup finds the identity now, as :meth:`RedisVerificationStore._until_placed` would have
    pointed it before storing it. The start's ``point`` reads and writes nothing stored (it looks
    the document up again), so the fields read before it still hold unless another writer
    changed them, which ``bind_repoint.lua`` refuses.
    """

    def __init__(self, point: port.Point) -> None:
        self._point = point

    async def repointing(self, tenant: str, record: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """The reference and name bindings of the record looked up again, where they changed."""
        del tenant
        fresh = await self._point(True)  # noqa: FBT003 - the port's callback
        new = {
            "identity": fresh.identity,
            "name_binding": fresh.name_binding,
            "name_binding_seen": fresh.name_binding_seen,
        }
        return {
            name: (record.get(name, ""), value)
            for name, value in new.items()
            if record.get(name, "") != value
        }


class RedisVerificationStore:
    """``flows.verification.port.VerificationStore`` over one Redis client, its scripts and counters."""

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        sends: CodeSendChains,
        *,
        steps: StepRunner | None = None,
        pointing: Pointing | None = None,
        keys: Callable[[str], TenantKeys] = _keys,
    ) -> None:
        """A store; ``pointing`` says where an identity that moved under a binding's steps lives now.

        It is the flow's ``IdentityMover``; without it such a binding is UNAVAILABLE, its intent left.
        ``keys`` names a tenant's keys (today's ``TenantKeys(tenant)`` by default; a bucketed
        tenant's namer in ``tests/integration/test_bucket_probe.py``); ``sends`` names its own.
        """
        self._redis = redis
        self._scripts = scripts
        self._sends = sends
        self._keys = keys
        self._runner = steps or StepRunner(scripts)
        self._binding = BindingSteps(self._runner, scripts, pointing=pointing, keys=keys)
        self._windows = WindowLimiter(RedisRateWindows(scripts, keys=keys))
        self._admission = AdmissionSteps(scripts, self._runner, keys=keys)

    # -- a start's admission -----------------------------------------------------------------

    async def read_start(self, tenant: str, request: port.RequestRef, name_tag: str) -> port.StartRead:
        """The request id's holder and the consent record, sent together.

        Step by step (a Cluster) the name's refused claims too, in the same round trip: the
        admission then skips its check below the limit (``store.admission_steps``). One node
        checks them in the admission's one script, and reads nothing more.
        """
        keys = self._keys(tenant)
        reads = [
            *(["GET", key] for key in _request_keys(keys, request)),
            *RedisConsentStore.read_commands(tenant, request.account_pseudonym, keys),
        ]
        if not self._runner.chained:
            reads.append(["GET", keys.rate_limit("claim_refusals", name_tag)])
        replies = await self._scripts.commands(*reads)
        holder, legacy_holder, consent_raw, cancelled = replies[:4]
        return port.StartRead(
            _held(holder, legacy_holder),
            RedisConsentStore.record_of(consent_raw, cancelled),
            int(replies[4] or 0) if len(replies) > 4 else None,  # noqa: PLR2004 - and the claims
        )

    async def admit(self, admission: port.Admission) -> port.AdmissionAnswer:
        """The reservation, claims, consents and window (``store.admission_steps``)."""
        return await self._admission.admit(admission)

    async def readmit(
        self, tenant: str, consent: ConsentAdmission, window: port.WindowCount | None
    ) -> port.Readmission:
        """``consent_start``, then the window's count (``store.admission_steps``)."""
        return await self._admission.readmit(tenant, consent, window)

    async def count_window(self, tenant: str, window: port.WindowCount) -> None:
        """The window's ``rate_limit`` step alone."""
        await self._windows.hit(
            tenant,
            "identity",
            window.identity_pseudonym,
            limit=window.limit,
            window_seconds=window.window_seconds,
            request=dict(window.request),
        )

    async def release(
        self, tenant: str, request: port.RequestRef, verification_id: str, reservation_ms: int
    ) -> None:
        """``release_request`` on the account's key, the only one this release reserves."""
        keys = self._keys(tenant)
        await self._scripts.run(
            "release_request",
            [
                keys.request(request.pseudonym, request.account_pseudonym),
                keys.verification(verification_id),
                keys.request_released(verification_id),
            ],
            [verification_id, reservation_ms],
        )

    async def holder(self, tenant: str, request: port.RequestRef) -> port.Held | None:
        """The request id's value, both keys read at once (release_request.lua deletes a released one)."""
        current, legacy = await self._scripts.commands(
            *(["GET", key] for key in _request_keys(self._keys(tenant), request))
        )
        return _held(current, legacy)

    async def confirm(self, tenant: str, request: port.RequestRef) -> None:
        """``confirm_request``, a write the replicas acknowledge, where steps wait for them."""
        if self._scripts.acknowledges:
            await self._scripts.run("confirm_request", _request_keys(self._keys(tenant), request), [])

    # -- a start's steps and commit ----------------------------------------------------------

    async def count_send(self, send: port.CodeSend) -> port.SendCount:
        """The code send's counts, the identity's name bindings read first in the same chain on one server."""
        before = None
        if send.identity_keys is not None and self._scripts.one_node:
            before = ChainStep("hget_each", list(send.identity_keys), ["name_binding"], proceed_on=("OK",))
        verdict, failures, read = await self._sends.count_send(
            send.tenant,
            SendPseudonyms(
                account_phone=send.account_phone,
                tenant_phone=send.tenant_phone,
                phone=send.phone,
                account=send.account_pseudonym,
            ),
            principal=send.principal,
            max_attempts=send.max_attempts,
            request=dict(send.request),
            before=before,
        )
        return port.SendCount(
            port.SendVerdict(verdict), failures, list(read[1:]) if read is not None else None
        )

    async def commit(self, start: port.NewVerification, point: port.Point) -> port.Written:
        """``start``, pointed anew while the identity moves."""
        keys = self._keys(start.tenant)
        account = keys.account(start.account_pseudonym)

        binds = start.mode == "bind"

        def attempt(record: VerificationRecord) -> Awaitable[Any]:
            step = ChainStep(
                "start",
                [
                    keys.request(start.request_pseudonym, start.account_pseudonym),
                    keys.verification(start.verification_id),
                    keys.audit_entries(account),
                    keys.account(start.account_pseudonym),
                    keys.request_released(start.verification_id),
                    *(self._identity_keys(keys, record) if binds else ()),
                ],
                [
                    start.verification_id,
                    start.ttl_ms,
                    json.dumps(fields_of(record)),
                    start.binding_limit,
                    start.request_json,
                    start.mode,
                ],
            )
            if binds and not self._runner.chained:
                return self._binding.bind(
                    start.tenant,
                    self._stepwise(start.tenant, start.verification_id, start.account_pseudonym, step),
                    start.binding_limit,
                    start.request_json,
                    pointing=_LookedUpAgain(point),
                )
            return self._scripts.run(step.name, step.keys, step.args)

        return _written(await self._until_placed(attempt, point, first=start.record))

    # -- a stored verification ---------------------------------------------------------------

    async def record(self, tenant: str, verification_id: str) -> VerificationRecord | None:
        """HGETALL of the verification."""
        raw = await self._scripts.command("HGETALL", self._keys(tenant).verification(verification_id))
        fields = hash_fields(raw)
        return record_of(fields) if fields else None

    async def read(
        self, tenant: str, verification_id: str, request_json: str, read_spec: Sequence[str] | None
    ) -> port.Written:
        """``get``: on one node one script, step by step a read and its accounting.

        The read in the verification's bucket (``get_verification``), then its accounting in the
        tenant's slot (``store.read_steps``).
        """
        keys = self._keys(tenant)
        verification = keys.verification(verification_id)
        read_keys = [verification, keys.audit_entries(verification)]
        if self._runner.chained:
            return _written(await self._scripts.run("get", read_keys, [request_json, *(read_spec or ())]))
        recording = records(read_spec)
        read_ms = await self._scripts.clock.now_ms() if recording else 0
        step = ChainStep("get_verification", read_keys, [request_json, "1" if recording else "0"])
        reply = await self._runner.run_one("get", step, 1)
        if read_spec is not None and recording and reply[0] == b"OK" and reply[2]:
            account, identity = as_text(reply[2]), as_text(reply[3])
            await record_read(
                self._runner,
                "get",
                2,
                keys,
                read_spec,
                read_ms=read_ms,
                accounts=[account],
                identities=[identity],
            )
        return _written(reply)

    async def submit(self, answer: port.ChallengeAnswer, point: port.Point) -> port.Written:
        """``submit``, after the answer's count in the phone's slot (one chain with it on one server).

        An answer judged from a remembered record (``answer.expect``) is checked first
        (``fields_unchanged``), in the same chain on one server: a record that changed stops it
        before anything is counted.
        """
        keys, verification_id = self._keys(answer.tenant), answer.verification_id
        args: list[str | int | bytes] = [
            answer.digest,
            answer.binding_limit,
            answer.failure_window_ms,
            answer.request_json,
        ]
        if answer.verdict:
            args += [answer.verdict, answer.verdict_reason, answer.vendor_code]
        guard = _unchanged_step(keys.verification(verification_id), answer.expect)
        count = answer.count
        step = (
            self._sends.answer_step(count.phone_pseudonym, wrong=count.wrong) if count is not None else None
        )
        if not self._runner.chained:
            return await self._submit_stepwise(answer, point, guard)

        def submit_keys(record: VerificationRecord) -> list[str]:
            return [
                keys.verification(verification_id),
                keys.audit_log(),
                keys.account(record.acct),
                keys.identity(record.identity),
                keys.identity_accounts(record.identity),
                keys.otp_failures(record.otp_ps, record.acct),
                keys.consent(record.acct),
            ]

        async def attempt(record: VerificationRecord) -> Any:
            nonlocal step, guard
            # The check and the count go with the first attempt only, before its judgement.
            checked, counted = guard, step
            guard = step = None
            if checked is None and counted is None:
                return await self._scripts.run("submit", submit_keys(record), args)
            chain = [before for before in (checked, counted) if before is not None]
            chain.append(ChainStep("submit", submit_keys(record), args))
            async with counted_or_unavailable() if counted is not None else contextlib.nullcontext():
                replies = await self._scripts.run_chain(chain)
            if checked is not None:
                if replies[0][0] != b"OK":
                    return [b"STALE"]
                replies = replies[1:]
            if counted is not None and count is not None:
                await self._sends.judge_answer_count(
                    replies[0],
                    tenant=answer.tenant,
                    lock_pseudonym=count.lock_pseudonym,
                    request=count.request,
                    account=count.account_pseudonym,
                )
            return replies[-1]

        return _written(await self._until_placed(attempt, point))

    async def _submit_stepwise(
        self, answer: port.ChallengeAnswer, point: port.Point, guard: ChainStep | None
    ) -> port.Written:
        """``submit`` where steps run one by one (a Cluster: the phone's slot is another server's).

        The check and the count are steps of their own, in that order, and so is each step of a
        binding (``store.binding_steps``).
        """
        if not await self._unchanged_then_counted(answer.tenant, guard, answer.count):
            return port.Written(port.WriteOutcome.STALE)

        def attempt(record: VerificationRecord) -> Awaitable[Any]:
            return self._binding.submit(_binding_answer(answer, record))

        return _written(await self._until_placed(attempt, point))

    async def _unchanged_then_counted(
        self, tenant: str, guard: ChainStep | None, count: port.AnswerCount | None
    ) -> bool:
        """The check of a remembered record, then the answer's count, each a step of its own.

        False, with nothing counted, when the record changed.
        """
        if guard is not None and (await self._scripts.run(guard.name, guard.keys, guard.args))[0] != b"OK":
            return False
        if count is not None:
            await self._sends.count_answer(
                count.phone_pseudonym,
                wrong=count.wrong,
                tenant=tenant,
                lock_pseudonym=count.lock_pseudonym,
                request=dict(count.request),
                account=count.account_pseudonym,
            )
        return True

    async def account_fields(
        self, tenant: str, account_pseudonym: str, names: Sequence[str]
    ) -> dict[str, str]:
        """HMGET of the account's ``names``."""
        async with translate_errors():
            row = await self._redis.hmget(self._keys(tenant).account(account_pseudonym), list(names))
        return {name: as_text(value) for name, value in zip(names, row, strict=True) if value}

    async def grant_guardian(self, grant: port.GuardianGrant, point: port.Point) -> port.Written:
        """``guardian``: on one node it reads the guardian's account itself; step by step, see below."""
        keys = self._keys(grant.tenant)
        args: list[str | int | bytes] = [
            grant.binding_limit,
            grant.request_json,
            grant.text_version,
            grant.relationship,
            json.dumps(dict(grant.guardian_fields)),
            grant.refusal,
        ]
        account = keys.account(grant.account_pseudonym)
        account_keys = [keys.verification(grant.verification_id), keys.audit_entries(account), account]

        def attempt(record: VerificationRecord) -> Awaitable[Any]:
            if not self._runner.chained:
                return self._grant_stepwise(grant, record, ChainStep("guardian", account_keys, args))
            guardian_key = keys.account(grant.guardian_pseudonym)
            return self._scripts.run(
                "guardian", [*account_keys, *self._identity_keys(keys, record), guardian_key], args
            )

        return _written(await self._until_placed(attempt, point))

    async def _grant_stepwise(
        self, grant: port.GuardianGrant, record: VerificationRecord, step: ChainStep
    ) -> Any:
        """A guardian's consent step by step: the guardian's account read, then the minor's steps.

        The guardian's account is another account's bucket (A'), so the minor's step is given no
        key of it: it is read here, in a round trip of its own right before that step, and the step
        judges the consent on this read as it would on its own (docs/ARCHITECTURE.md, "3.1
        Binding": why a change after the read is one after the consent). The verification's
        identity is asked next (``identity_rests``), as one node's script asks it: moved, the
        guardian's account may name the new ref of the minor's own identity beside the old ref
        the verification names, and GUARDIAN_IS_SUBJECT, which compares them, would miss it. It
        answers RETRY or MOVED then, and :meth:`_until_placed` waits or points the verification
        anew. After the guardian's read, so that a read naming a move's new ref finds that move.
        """
        keys = self._keys(grant.tenant)
        read = await self.account_fields(
            grant.tenant, grant.guardian_pseudonym, (*port.GUARDIAN_FIELDS, "audit")
        )
        if record.identity:
            rests = await self._scripts.run(
                "identity_rests", [keys.identity(record.identity)], [record.name_binding_seen]
            )
            if rests[0] != b"OK":
                return rests
        first = self._stepwise(grant.tenant, grant.verification_id, grant.account_pseudonym, step)
        return await self._binding.bind(
            grant.tenant,
            ChainStep(first.name, first.keys, [*first.args, json.dumps(read)]),
            grant.binding_limit,
            grant.request_json,
        )

    def _identity_keys(self, keys: TenantKeys, record: VerificationRecord) -> tuple[str, ...]:
        """The identity's keys for an account's step that may bind, on one node only.

        There its script runs the binding's other steps too, in one EVAL. Step by step (a Cluster)
        the account's step is given no identity key: it is another bucket's, and the place asks
        it (``bind_place.lua``); :meth:`_stepwise` gives it the intent's keys instead.
        """
        if not self._runner.chained:
            return ()
        return (keys.identity(record.identity), keys.identity_accounts(record.identity))

    def _stepwise(self, tenant: str, verification_id: str, account_ps: str, step: ChainStep) -> ChainStep:
        """A binding's account step given its intent's keys and delay, to run step by step."""
        return ChainStep(
            step.name,
            [*step.keys, *self._binding.intent_keys(tenant, verification_id, account_ps)],
            [*step.args, self._binding.intent_delay_ms()],
        )

    @staticmethod
    async def _until_placed(
        attempt: Callable[[VerificationRecord], Awaitable[Any]],
        point: port.Point,
        *,
        first: VerificationRecord | None = None,
    ) -> Any:
        """Runs a script that may bind an identity until it did not answer MOVED or RETRY.

        Identities move when keys rotate or a new pepper is adopted; a move that races the script
        makes it answer MOVED instead of binding a stale reference, and ``point`` answers the
        record pointed anew. ``first``: the record as it is pointed already, for the first attempt.
        A move still in flight (step by step, on a Cluster) makes it answer RETRY: the same record
        is tried again after a pause, until the call's deadline (then UNAVAILABLE), so that no
        binding limit is counted on half of the identity's members.
        """
        moved = False
        deadline = move_wait_deadline()
        for _ in range(MOVE_ATTEMPTS):
            record = first if first is not None and not moved else await point(moved)
            reply = await attempt(record)
            while reply[0] == b"RETRY":
                await wait_for_move(deadline)
                reply = await attempt(record)
            if reply[0] != b"MOVED":
                return reply
            moved = True
        raise StoreUnavailable("the identity kept moving; retry", reason="CONTENDED")


def redis_verification_flow(deps: FlowDeps, redis: RedisClient, scripts: Scripts) -> VerificationFlow:
    """The verification flow over a Redis client and its scripts, as the server builds it."""
    mover = IdentityMover(RedisIdentityRecords(redis, scripts), deps.sealer)
    return VerificationFlow(
        deps,
        RedisVerificationStore(
            redis, scripts, CodeSendChains(scripts, send_limits(deps.settings)), pointing=mover
        ),
        RedisConsentStore(redis, scripts),
        LookupIdentities(IdentityLookup(deps.keyring, deps.sealer, deps.indexer, mover), mover),
        # On Cluster the remembered record's check would be a round trip of its own (the phone's
        # count is on another server), no cheaper than the read it stands in for.
        memo=ChallengeMemo() if scripts.one_node else None,
    )
