"""CodeSendCounter over in-memory counters: what a send's and an answer's counts mean, no Redis or gRPC.

Each test shows one decision of ``security.code_sends``: a lock answers a verdict (the
verification is refused) while a full window raises with its reason and retry time, the phone's
shared windows answer as the tenant's own would, and refusals are audited once a window.
``tests/e2e/test_code_sends.py`` and ``tests/e2e/test_abuse.py`` run it over Redis and through
the server.
"""

from __future__ import annotations

import dataclasses

import pytest

from idverify.domain.errors import RateLimited, StoreUnavailable
from idverify.security.code_sends import CodeSendCounter, SendLimits, SendPseudonyms, SendToCount
from idverify.testing.memory_code_sends import MemoryCodeSends, send_limits

REQUEST = {"principal": "registrar01", "request_id": "r1", "trace_id": ""}
LIMITS = send_limits(
    per_phone_per_hour=2,
    per_phone_all_tenants_per_hour=3,
    per_principal_per_day=4,
    phone_failure_limit=3,
    failure_window_ms=900_000,
)


def send(tenant: str = "acme", phone: str = "p1", principal: str = "registrar01") -> SendToCount:
    return SendToCount(
        tenant, SendPseudonyms(f"acct:{phone}", f"{tenant}:{phone}", phone), principal, 3, REQUEST
    )


def world(limits: SendLimits = LIMITS) -> tuple[MemoryCodeSends, CodeSendCounter]:
    store = MemoryCodeSends(limits)
    return store, CodeSendCounter(store)


async def test_a_send_answers_the_wrong_codes_so_far_and_locks_at_max_attempts() -> None:
    store, counter = world()
    assert await counter.count_send(send()) == ("OK", 0)
    store.fail("acme", "acct:p1")
    assert await counter.count_send(send(phone="p1")) == ("OK", 1)
    store.fail("acme", "acct:p1")
    store.fail("acme", "acct:p1")
    assert await counter.count_send(send()) == ("OTP_LOCKED", 3)
    assert store.audit == []  # a lock is a verdict, not a limit hit


async def test_a_full_tenant_window_raises_its_reason() -> None:
    store, counter = world()
    await counter.count_send(send())
    await counter.count_send(send())
    with pytest.raises(RateLimited) as refused:
        await counter.count_send(send())
    assert refused.value.reason == "PHONE_RATE_LIMITED"
    assert refused.value.retry_after == 3600.0
    await counter.count_send(send(phone="p2"))
    await counter.count_send(send(phone="p3"))
    with pytest.raises(RateLimited) as budget:
        await counter.count_send(send(phone="p4"))
    assert budget.value.reason == "PRINCIPAL_SEND_BUDGET_EXCEEDED"
    assert budget.value.retry_after == 86_400.0
    assert store.audit == [("acme", "phone"), ("acme", "principal_sends_day")]


async def test_the_phones_shared_window_answers_as_the_tenants_own_and_is_audited_once() -> None:
    store, counter = world()
    for tenant in ("acme", "globex", "initech"):
        assert await counter.count_send(send(tenant)) == ("OK", 0)
    for _ in range(2):
        with pytest.raises(RateLimited) as refused:
            await counter.count_send(send("umbrella"))
        assert refused.value.reason == "PHONE_RATE_LIMITED"  # nothing said of other tenants
    assert store.audit == [("umbrella", "phone_all_tenants")]


async def test_wrong_codes_lock_the_phone_for_every_tenant_and_answer_alike() -> None:
    store, counter = world()
    for _ in range(3):
        await counter.count_answer("acme", "p1", wrong=True, lock_pseudonym="acct:p1", request=REQUEST)
    for wrong in (True, False):  # a right code meets the lock as a wrong one does
        with pytest.raises(RateLimited) as refused:
            await counter.count_answer("acme", "p1", wrong=wrong, lock_pseudonym="acct:p1", request=REQUEST)
        assert refused.value.reason == "PHONE_LOCKED"
        assert refused.value.retry_after == 900.0
    assert store.audit == [("acme", "phone_locked")]
    assert await counter.count_send(send("globex")) == ("PHONE_LOCKED", 0)
    store.advance(900_000)
    await counter.count_answer("acme", "p1", wrong=False, lock_pseudonym="acct:p1", request=REQUEST)


async def test_without_a_phone_lock_answers_are_not_counted() -> None:
    store, counter = world(dataclasses.replace(LIMITS, phone_failure_limit=0))
    store.down = True  # not asked at all
    for _ in range(5):
        await counter.count_answer("acme", "p1", wrong=True, lock_pseudonym="acct:p1", request=REQUEST)


async def test_a_count_not_made_sends_nothing() -> None:
    store, counter = world()
    store.down = True
    with pytest.raises(StoreUnavailable):
        await counter.count_send(send())
    with pytest.raises(StoreUnavailable):
        await counter.count_answer("acme", "p1", wrong=True, lock_pseudonym="acct:p1", request=REQUEST)
