"""A worker's memory of its code challenges never changes an answer's outcome or its counts.

Two workers (two flows with their own connections, one keyring) share a real redis-server. The
worker that started a verification judges answers from what it remembers; each test changes the
stored record behind its back the way another worker, an erasure or a key rotation would, and the
answer must come out as a read of the record would make it: its reply, and the wrong-code counts
of the phone and of the account and phone. Without the store's check of the remembered record,
every test of a changed record fails.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.domain.errors import FailedPrecondition, NotFound
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.verification import StartRequest, VerificationFlow
from idverify.flows.verification.challenge_memo import ChallengeMemo
from idverify.flows.verification.record import Status, VerificationRecord
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import associated_data, sealed_from_text, sealed_to_text
from idverify.security.rate_limits import WindowLimiter
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import PhoneKeys, TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import Scripts
from idverify.store.verifications import redis_verification_flow
from idverify.testing import RedisProcess
from idverify.testing.flow_deps import flow_deps_for_tests
from idverify.verifiers.sms_otp import SmsOtpVerifier

T = "default"
INFO = RequestInfo(principal="challenge-memo")
_n = itertools.count(1)


@dataclass
class Worker:
    flow: VerificationFlow
    deps: FlowDeps
    scripts: Scripts
    redis: RedisClient


@dataclass
class Workers:
    starting: Worker
    other: Worker
    redis: RedisClient


@pytest.fixture
async def workers(redis_server: RedisProcess) -> AsyncIterator[Workers]:
    settings, keyring = load_settings(None, environ={}), Keyring.generate()
    built = []
    for _ in range(2):
        redis = connect(redis_server.url)
        # As the server builds each worker's: scripts on the shared pipelined connection.
        scripts = Scripts(redis, share_connection=True)
        deps = flow_deps_for_tests(settings, keyring, WindowLimiter(RedisRateWindows(scripts)))
        built.append(Worker(redis_verification_flow(deps, redis, scripts), deps, scripts, redis))
    plain = connect(redis_server.url)
    yield Workers(built[0], built[1], plain)
    for worker in built:
        await worker.scripts.aclose()
        await worker.redis.aclose(close_connection_pool=True)
    await plain.aclose(close_connection_pool=True)


async def _started(worker: Worker, caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    """A signup's start on ``worker``: the verification id and the code sent."""
    n = next(_n) + secrets.randbelow(10**6) * 100
    body = f"440106199003{n % 28 + 1:02d}{n % 1000:03d}"
    consents = ("identity", "phone")
    request = StartRequest(
        request_id=f"memo-req-{n}",
        account_id=f"memo-acct-{n}",
        method_id="sms",
        subject=Subject(
            SubjectKind.PERSON,
            f"测试{n % 1000}",
            DocumentType.CN_RIC,
            body + ric.calc_check_digit(body + "0"),
            phone_number=f"137{n % 10**8:08d}",
        ),
        consents=consents,
        client_ip="203.0.113.9",
        consent_text_versions={p: text_version_of(f"text of {p}") for p in consents},
    )
    with caplog.at_level(logging.WARNING, logger="idverify.sms.console"):
        started = await worker.flow.start(T, request, INFO)
    assert started.status == "CHALLENGE_SENT", started
    logged = re.search(rf"code (\d+) for .* \(verification {started.verification_id}\)", caplog.text)
    assert logged is not None, caplog.text
    return started.verification_id, logged.group(1)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def _counter_keys(workers: Workers, verification_id: str) -> tuple[str, str]:
    """The wrong-code counters of the verification's phone and of its account and phone."""
    fields = await workers.redis.hgetall(TenantKeys(T).verification(verification_id))
    sealer = workers.starting.deps.sealer
    phone_ps = sealer.unseal(
        sealed_from_text(fields[b"phone_ps_sealed"].decode()),
        associated=associated_data(T, "phone-pseudonym", verification_id),
    ).decode()
    return PhoneKeys(phone_ps).otp_failures(), TenantKeys(T).otp_failures(fields[b"otp_ps"].decode())


async def _counts(workers: Workers, keys: tuple[str, ...]) -> list[int]:
    return [int(value or 0) for value in await workers.redis.mget(list(keys))]


async def test_an_answer_after_the_right_code_on_another_worker_is_refused_uncounted(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    verification_id, code = await _started(workers.starting, caplog)
    keys = await _counter_keys(workers, verification_id)
    assert (await workers.other.flow.submit(T, verification_id, code, INFO)).status == "VERIFIED"
    with pytest.raises(FailedPrecondition) as refused:
        await workers.starting.flow.submit(T, verification_id, _wrong(code), INFO)
    assert refused.value.reason == "NOT_AWAITING_CHALLENGE"
    assert await _counts(workers, keys) == [0, 0]


async def test_wrong_codes_on_both_workers_count_down_once_each(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    verification_id, code = await _started(workers.starting, caplog)
    keys = await _counter_keys(workers, verification_id)
    first = await workers.other.flow.submit(T, verification_id, _wrong(code), INFO)
    second = await workers.starting.flow.submit(T, verification_id, _wrong(code), INFO)
    assert (first.attempts_left, second.attempts_left) == (4, 3)
    assert await _counts(workers, keys) == [2, 2]
    assert (await workers.starting.flow.submit(T, verification_id, code, INFO)).status == "VERIFIED"
    assert await _counts(workers, keys) == [2, 2]


async def test_a_new_challenge_behind_the_workers_back_is_judged_by_its_own_code(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """A new code stored with a new salt (as a new send would) is right, though the memory says wrong."""
    verification_id, code = await _started(workers.starting, caplog)
    keys = await _counter_keys(workers, verification_id)
    verifier = workers.starting.deps.verifiers["sms_otp"]
    assert isinstance(verifier, SmsOtpVerifier)
    salt, new_code = secrets.token_bytes(16), _wrong(code)
    digest = verifier.digest_answer(T, verification_id, salt, new_code)
    await workers.redis.hset(
        TenantKeys(T).verification(verification_id), mapping={"salt": salt.hex(), "digest": digest.hex()}
    )
    assert (await workers.starting.flow.submit(T, verification_id, new_code, INFO)).status == "VERIFIED"
    assert await _counts(workers, keys) == [0, 0]


async def test_an_erased_verification_is_not_found_and_its_answer_uncounted(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    verification_id, code = await _started(workers.starting, caplog)
    keys = await _counter_keys(workers, verification_id)
    await workers.redis.delete(TenantKeys(T).verification(verification_id))
    with pytest.raises(NotFound):
        await workers.starting.flow.submit(T, verification_id, _wrong(code), INFO)
    assert await _counts(workers, keys) == [0, 0]


async def test_a_resealed_phone_pseudonym_is_counted_where_the_record_points_now(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """The phone the record names now takes the wrong code, never the one this worker opened before."""
    verification_id, code = await _started(workers.starting, caplog)
    remembered_phone, account_phone = await _counter_keys(workers, verification_id)
    elsewhere = secrets.token_hex(16)
    sealed = workers.starting.deps.sealer.seal(
        elsewhere.encode(), associated=associated_data(T, "phone-pseudonym", verification_id)
    )
    await workers.redis.hset(
        TenantKeys(T).verification(verification_id), "phone_ps_sealed", sealed_to_text(sealed)
    )
    answered = await workers.starting.flow.submit(T, verification_id, _wrong(code), INFO)
    assert answered.attempts_left == 4
    keys = (remembered_phone, PhoneKeys(elsewhere).otp_failures(), account_phone)
    assert await _counts(workers, keys) == [0, 1, 1]


def _challenge(expires_ms: int, status: Status = Status.CHALLENGE_SENT) -> VerificationRecord:
    return VerificationRecord(status=status, step_verifier="sms_otp", digest="ab", expires_ms=expires_ms)


def test_the_memo_forgets_the_least_recently_used_and_the_expired() -> None:
    now = [1_000]
    memo = ChallengeMemo(capacity=2, clock_ms=lambda: now[0])
    memo.remember(T, "a", _challenge(2_000))
    memo.remember(T, "b", _challenge(5_000))
    assert memo.recall(T, "a") is not None  # "b" is now the least recently used
    memo.remember(T, "c", _challenge(5_000))
    assert (memo.recall(T, "b"), len(memo)) == (None, 2)
    now[0] = 2_000
    assert memo.recall(T, "a") is None
    assert memo.recall(T, "c") is not None
    assert len(memo) == 1


def test_the_memo_keeps_only_challenges_waiting_for_a_code() -> None:
    memo = ChallengeMemo(clock_ms=lambda: 0)
    memo.remember(T, "a", _challenge(10))
    memo.remember(T, "a", _challenge(10, Status.VERIFIED))
    memo.remember(
        T, "b", VerificationRecord(status=Status.CHALLENGE_SENT, step_verifier="face", expires_ms=10)
    )
    assert (memo.recall(T, "a"), memo.recall(T, "b"), len(memo)) == (None, None, 0)
