"""A start's admission, the one step that reserves, checks claims, admits and counts.

That step reserves the request id, checks the name and document's refused claims, admits the
start under the account's consents and counts the identity's window.

These tests hold it to what the separate steps guaranteed: a refusal stops the steps after it,
the account's record (not a stale read of it) is judged, and an attempt that gave up leaves its
request id to the caller's retry even when its own steps reach Redis after the release; a start
whose hash would wait too long is refused before it. Real Redis throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.domain.errors import ConsentRequired, RateLimited
from idverify.domain.normalize import normalize_name
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import RequestInfo, call_deadline
from idverify.flows.verification import StartRequest, VerificationFlow
from idverify.flows.verification.plan import request_ref
from idverify.privacy.keyring import Keyring
from idverify.privacy.name_binding import claim_tag
from idverify.security.rate_limits import WindowLimiter
from idverify.store.connection import RedisClient
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import ChainStep, Scripts
from idverify.store.verifications import redis_verification_flow
from idverify.testing import RedisProcess
from idverify.testing.flow_deps import flow_deps_for_tests

TENANT = "default"
INFO = RequestInfo(principal="admission")
KEYS = TenantKeys(TENANT)
_n = itertools.count(1)


@dataclass
class Rig:
    flow: VerificationFlow
    scripts: Scripts
    keyring: Keyring
    redis: RedisClient


@pytest.fixture
async def rig(redis_server: RedisProcess, redis: RedisClient) -> AsyncIterator[Rig]:
    settings = load_settings(None, environ={})
    keyring = Keyring.generate()
    scripts = Scripts(redis, share_connection=True)
    deps = flow_deps_for_tests(settings, keyring, WindowLimiter(RedisRateWindows(scripts)))
    del redis_server
    yield Rig(redis_verification_flow(deps, redis, scripts), scripts, keyring, redis)
    await scripts.aclose()


def _person() -> Subject:
    n = next(_n) + 5000
    body = f"110105198807{n % 28 + 1:02d}{n % 1000:03d}"
    return Subject(
        SubjectKind.PERSON,
        f"准入{n}",
        DocumentType.CN_RIC,
        body + ric.calc_check_digit(body + "0"),
        phone_number=f"137{n:08d}",
    )


def _start(
    account: str, subject: Subject, *, consents: tuple[str, ...] = ("identity", "phone")
) -> StartRequest:
    return StartRequest(
        request_id=f"req-{next(_n)}",
        account_id=account,
        method_id="sms",
        subject=subject,
        consents=consents,
        client_ip="203.0.113.9",
        consent_text_versions={p: text_version_of(f"text of {p}") for p in consents},
    )


def _code(caplog: pytest.LogCaptureFixture, verification_id: str) -> str:
    found = re.search(rf"code (\d+) for .* \(verification {verification_id}\)", caplog.text)
    assert found is not None, caplog.text
    return found.group(1)


async def _audit_types(redis: RedisClient) -> list[str]:
    return [json.loads(raw)["type"] for raw in await redis.hvals(KEYS.audit_log())]


class TestARefusalStopsTheStepsAfterIt:
    async def test_claims_at_their_limit_take_no_consent_no_window_and_leave_the_id_free(
        self, rig: Rig
    ) -> None:
        """A name and document refused too often: refused before its consents or window are written."""
        subject, account = _person(), f"acct-claims-{next(_n)}"
        name_tag = claim_tag(
            rig.keyring,
            TENANT,
            DocumentType.CN_RIC.value,
            subject.document_number,
            normalize_name(subject.name),
        )
        limit = rig.flow._d.settings.rate_limits.claim_refusals_per_day
        await rig.redis.set(KEYS.rate_limit("claim_refusals", name_tag), limit, px=3_600_000)
        audited_before = (await _audit_types(rig.redis)).count("rate_limit.hit")
        request = _start(account, subject)

        for _ in range(2):
            with pytest.raises(RateLimited) as refused:
                await rig.flow.start(TENANT, request, INFO)
            assert refused.value.reason == "CLAIM_REFUSALS_LIMIT_REACHED"

        account_ps = rig.keyring.pseudonym(TENANT, "account", account)
        assert await rig.redis.exists(KEYS.consent(account_ps), KEYS.account_verifications(account_ps)) == 0
        identity_ps = rig.keyring.pseudonym(TENANT, "rl-identity", name_tag)
        assert await rig.redis.exists(KEYS.rate_limit("identity", identity_ps)) == 0
        # The first refusal of the window is audited, the second is not (no flood).
        assert (await _audit_types(rig.redis)).count("rate_limit.hit") == audited_before + 1
        # The request id is not held: the same request, once the counter's window ends, starts.
        await rig.redis.delete(KEYS.rate_limit("claim_refusals", name_tag))
        assert (await rig.flow.start(TENANT, request, INFO)).status == "CHALLENGE_SENT"


class TestAReturningAccountIsJudgedOnItsRecord:
    async def test_standing_grants_admit_a_request_that_repeats_none(
        self, rig: Rig, caplog: pytest.LogCaptureFixture
    ) -> None:
        subject, account = _person(), f"acct-back-{next(_n)}"
        with caplog.at_level(logging.WARNING, logger="idverify.sms.console"):
            first = await rig.flow.start(TENANT, _start(account, subject), INFO)
            done = await rig.flow.submit(
                TENANT, first.verification_id, _code(caplog, first.verification_id), INFO
            )
            assert done.status == "VERIFIED"
            # The grants are lasting now: a new verification needs no consent repeated.
            again = await rig.flow.start(TENANT, _start(account, subject, consents=()), INFO)
        assert again.status == "CHALLENGE_SENT"

    async def test_a_withdrawn_consent_is_not_taken_for_absent(
        self, rig: Rig, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The request repeats only identity: the record says phone was withdrawn, so it is refused."""
        subject, account = _person(), f"acct-withdrawn-{next(_n)}"
        with caplog.at_level(logging.WARNING, logger="idverify.sms.console"):
            first = await rig.flow.start(TENANT, _start(account, subject), INFO)
            await rig.flow.submit(TENANT, first.verification_id, _code(caplog, first.verification_id), INFO)
        await rig.flow.consent.withdraw(TENANT, account, "phone", INFO)

        with pytest.raises(ConsentRequired):
            await rig.flow.start(TENANT, _start(account, subject, consents=("identity",)), INFO)
        # Given again with the request, it is granted again.
        again = await rig.flow.start(TENANT, _start(account, subject), INFO)
        assert again.status == "CHALLENGE_SENT"
        states = {s.purpose: s.granted for s in await rig.flow.consent.list(TENANT, account)}
        assert states["phone"] is True


def _attempt() -> str:
    """A fresh verification id: an attempt's release mark outlives the test that left it."""
    return secrets.token_hex(16)


def _reserve(request: str, attempt: str) -> list[ChainStep]:
    return [ChainStep("reserve_request", [request, KEYS.request_released(attempt)], [attempt, 30_000])]


async def _release(rig: Rig, request: str, attempt: str) -> object:
    keys = [request, KEYS.verification(attempt), KEYS.request_released(attempt)]
    return await rig.scripts.run("release_request", keys, [attempt, 30_000])


class TestAnAttemptThatGaveUp:
    """Its steps may reach Redis after its release (a stalled Redis): they must take nothing."""

    async def test_its_late_reservation_takes_nothing_and_the_retry_starts(self, rig: Rig) -> None:
        request = KEYS.request(f"gave-up-{next(_n)}")
        gave_up, retry = _attempt(), _attempt()
        # The caller gave up first: its release arrived before its chain.
        assert await _release(rig, request, gave_up) == 1
        assert await rig.redis.get(request) is None, "the request id is left free"
        assert await rig.scripts.run_chain(_reserve(request, gave_up)) == [[b"RELEASED"]]
        assert await rig.scripts.run_chain(_reserve(request, retry)) == [[b"OK"]]
        assert await rig.redis.get(request) == retry.encode()

    async def test_its_release_after_its_reservation_frees_the_id_for_the_retry_only(self, rig: Rig) -> None:
        request = KEYS.request(f"gave-up-{next(_n)}")
        gave_up = _attempt()
        assert await rig.scripts.run_chain(_reserve(request, gave_up)) == [[b"OK"]]
        assert await _release(rig, request, gave_up) == 1
        # Free as 0.1.0 leaves a request id it releases: a retry there does not misread it.
        assert await rig.redis.get(request) is None
        # Its own start, late, commits nothing; the retry takes the id.
        start = await rig.scripts.run(
            "start",
            [
                request,
                KEYS.verification(gave_up),
                KEYS.audit_log(),
                "acct",
                KEYS.request_released(gave_up),
            ],
            [gave_up, 60_000, json.dumps({"steps": "[]"}), 1, json.dumps(INFO.audit_fields()), "challenge"],
        )
        assert start == [b"RELEASED"]
        assert await rig.redis.exists(KEYS.verification(gave_up)) == 0
        assert await rig.scripts.run_chain(_reserve(request, _attempt())) == [[b"OK"]]

    async def test_a_release_never_frees_another_attempts_reservation(self, rig: Rig) -> None:
        request = KEYS.request(f"gave-up-{next(_n)}")
        holder, other = _attempt(), _attempt()
        assert await rig.scripts.run_chain(_reserve(request, holder)) == [[b"OK"]]
        assert await _release(rig, request, other) == 0
        assert await rig.redis.get(request) == holder.encode()
        assert await rig.redis.exists(KEYS.request_released(other)) == 0
        held = await rig.scripts.run_chain(_reserve(request, _attempt()))
        assert held == [[b"HELD", holder.encode()]]

    async def test_the_flow_answers_a_repeated_request_with_its_verification(self, rig: Rig) -> None:
        subject, account = _person(), f"acct-repeat-{next(_n)}"
        request = _start(account, subject)
        first = await rig.flow.start(TENANT, request, INFO)
        again = await rig.flow.start(TENANT, request, INFO)
        assert again.verification_id == first.verification_id


@contextlib.contextmanager
def _no_time_left() -> Iterator[None]:
    """The current call's deadline is now: no hash can be done in its time (HASH_QUEUE_FULL)."""
    token = call_deadline.set(asyncio.get_running_loop().time())
    try:
        yield
    finally:
        call_deadline.reset(token)


class TestAStartWhoseHashWouldWaitTooLong:
    """Refused before its admission: nothing reserved or counted changes its retry."""

    async def test_it_takes_no_request_id_consent_or_window_and_its_retry_starts(self, rig: Rig) -> None:
        subject, account = _person(), f"acct-backlog-{next(_n)}"
        request = _start(account, subject)
        audited_before = await _audit_types(rig.redis)
        with _no_time_left():
            for _ in range(2):
                with pytest.raises(RateLimited) as refused:
                    await rig.flow.start(TENANT, request, INFO)
                assert refused.value.reason == "HASH_QUEUE_FULL"
                assert refused.value.retry_after > 0

        account_ps = rig.keyring.pseudonym(TENANT, "account", account)
        keys = [KEYS.request(request_ref(rig.keyring, TENANT, account_ps, request.request_id).pseudonym)]
        keys += [KEYS.consent(account_ps), KEYS.account_verifications(account_ps)]
        name_tag = claim_tag(
            rig.keyring,
            TENANT,
            DocumentType.CN_RIC.value,
            subject.document_number,
            normalize_name(subject.name),
        )
        identity_ps = rig.keyring.pseudonym(TENANT, "rl-identity", name_tag)
        keys += [KEYS.rate_limit("identity", identity_ps), KEYS.rate_limit("claim_refusals", name_tag)]
        assert await rig.redis.exists(*keys) == 0
        assert await _audit_types(rig.redis) == audited_before
        assert rig.flow._d.indexer.backlog.pending == 0

        assert (await rig.flow.start(TENANT, request, INFO)).status == "CHALLENGE_SENT"
        assert rig.flow._d.indexer.backlog.pending == 0

    async def test_a_repeated_request_is_answered_without_waiting_for_a_hash(self, rig: Rig) -> None:
        """A retry of a start that went through needs no hash: it is answered even with no time left."""
        request = _start(f"acct-backlog-{next(_n)}", _person())
        first = await rig.flow.start(TENANT, request, INFO)
        with _no_time_left():
            again = await rig.flow.start(TENANT, request, INFO)
        assert again.verification_id == first.verification_id
