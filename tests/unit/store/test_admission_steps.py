"""A start's admission step by step, attacked (docs/ARCHITECTURE.md, "3.7 Admission").

On one node the admission is one chain (reservation, claims, consents, window); step by step (a
Cluster) its steps are by bucket (``store.admission_steps``). Every refusal answers as the chain
does and leaves the same keys and audit entries; a process killed at each boundary leaves its
reservation to its short TTL, no window count unless the window's step ran, and nothing that
blocks an honest retry of the same request id once that TTL is over. Real redis-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from idverify.domain.errors import RateLimited
from idverify.flows.verification import port
from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, as_text
from idverify.store.keys import TenantKeys
from idverify.store.scripts import ChainStep, Scripts
from idverify.testing import RedisProcess
from tests.admission_crash import (
    ACCOUNT,
    CLAIMS_LIMIT,
    IDENTITY,
    NAME_TAG,
    PATHS,
    REQUEST,
    RESERVATION_MS,
    WINDOW_LIMIT,
    attempt,
    consents,
    killed_after,
    request_of,
    store_of,
    window,
)
from tests.unit.usecases.contract import audit_rows

TENANT = "adm"
KEYS = TenantKeys(TENANT)
WINDOW_KEY = KEYS.rate_limit("identity", IDENTITY)
CLAIMS_KEY = KEYS.rate_limit("claim_refusals", NAME_TAG)
# What each refusal needs stored before the start's reads.
REFUSALS = ("admitted", "held", "released", "claims", "cancelled", "changed", "window")


async def _refused_by(redis: RedisClient, refusal: str) -> None:
    if refusal == "held":
        await redis.set(KEYS.request(REQUEST.pseudonym), "vf-other", px=60_000)
    elif refusal == "released":
        await redis.set(KEYS.request_released("vf-1"), "1", px=60_000)
    elif refusal == "claims":
        await redis.set(CLAIMS_KEY, CLAIMS_LIMIT, px=86_400_000)
    elif refusal == "cancelled":
        await redis.hset(KEYS.account(ACCOUNT), "cancelled_ms", 1)
    elif refusal == "changed":
        await redis.hset(KEYS.consent(ACCOUNT), "rev", "7")
    elif refusal == "window":
        await redis.set(WINDOW_KEY, WINDOW_LIMIT, px=3_600_000)


def _reason(refused: RateLimited | None) -> str | None:
    return refused.reason if refused is not None else None


async def _left(redis: RedisClient) -> dict[str, Any]:
    """Every key left, with what it holds (the audit log as its entries' kinds), and whether it expires."""
    left: dict[str, Any] = {}
    for raw in sorted(await redis.keys("*")):
        key = as_text(raw)
        kind = as_text(await redis.type(key))
        expires = await redis.pttl(key) > 0
        if key == KEYS.audit_log():
            rows = await audit_rows(redis, TENANT)
            held: Any = [(row["type"], row["outcome"], row["reason"], row["attributes"]) for row in rows]
        elif ":audit:" in key:
            held = kind  # the log's head and indexes: times, and the entries above
        elif kind == "string":
            held = as_text(await redis.get(key))
        elif kind == "hash":
            held = {as_text(k): as_text(v) for k, v in (await redis.hgetall(key)).items()}
        elif kind == "zset":
            held = [as_text(member) for member in await redis.zrange(key, 0, -1)]
        else:
            held = kind
        left[key] = (held, expires)
    return left


async def _admitted(redis: RedisClient, refusal: str, *, chained: bool) -> tuple[Any, ...]:
    """One admission after its reads, on an emptied server made to refuse it by ``refusal``."""
    await redis.flushall()
    await _refused_by(redis, refusal)
    store = store_of(redis, chained=chained)
    read = await store.read_start(TENANT, REQUEST, NAME_TAG)
    # One node checks the claims in the chain and reads nothing more; step by step they are read.
    assert (read.claim_refusals is None) == chained, read
    answer = await store.admit(attempt(TENANT, "vf-1", read.claim_refusals))
    consent = answer.consent.outcome if answer.consent is not None else None
    outcome = (
        answer.reservation,
        answer.holder,
        _reason(answer.claims_refusal),
        consent,
        answer.window_counted,
        _reason(answer.window_refusal),
    )
    return outcome, await _left(redis)


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_each_refusal_answers_and_leaves_what_the_chain_does(
    own_client: RedisClient, refusal: str
) -> None:
    chained = await _admitted(own_client, refusal, chained=True)
    stepwise = await _admitted(own_client, refusal, chained=False)
    assert stepwise == chained
    outcome, left = chained
    # Each refusal is the one its keys ask for, so that the comparison compares something.
    expected = {
        "admitted": (port.Reservation.RESERVED, None, "admitted", True, None),
        "held": (port.Reservation.HELD, None, None, False, None),
        "released": (port.Reservation.RELEASED, None, None, False, None),
        "claims": (port.Reservation.RESERVED, "CLAIM_REFUSALS_LIMIT_REACHED", None, False, None),
        "cancelled": (port.Reservation.RESERVED, None, "cancelled", False, None),
        "changed": (port.Reservation.RESERVED, None, "changed", False, None),
        "window": (port.Reservation.RESERVED, None, "admitted", True, "IDENTITY_RATE_LIMITED"),
    }[refusal]
    reservation, _, claims, consent, counted, window_refused = outcome
    got = (reservation, claims, consent.value if consent is not None else None, counted, window_refused)
    assert got == expected
    assert (WINDOW_KEY in left) == (refusal in {"admitted", "window"})


@pytest.mark.parametrize("refusal", ["admitted", "cancelled", "changed", "window"])
async def test_a_readmission_answers_and_leaves_what_the_chain_does(
    own_client: RedisClient, refusal: str
) -> None:
    async def readmitted(*, chained: bool) -> tuple[Any, ...]:
        await own_client.flushall()
        await _refused_by(own_client, refusal)
        answer = await store_of(own_client, chained=chained).readmit(TENANT, consents("vf-1"), window())
        outcome = (answer.consent.outcome, answer.window_counted, _reason(answer.window_refusal))
        return outcome, await _left(own_client)

    chained = await readmitted(chained=True)
    assert await readmitted(chained=False) == chained
    assert (WINDOW_KEY in chained[1]) == (refusal in {"admitted", "window"})


async def test_claims_read_below_their_limit_are_not_checked_again(own_client: RedisClient) -> None:
    """The reads' count stands for the check: a refusal counted after them is the next start's.

    As if the chain had run at the reads' moment, and the refusal after it.
    """
    store = store_of(own_client)
    read = await store.read_start(TENANT, REQUEST, NAME_TAG)
    assert read.claim_refusals == 0
    await own_client.set(CLAIMS_KEY, CLAIMS_LIMIT, px=86_400_000)
    admitted = await store.admit(attempt(TENANT, "vf-1", read.claim_refusals))
    assert (admitted.claims_refusal, admitted.window_counted) == (None, True)
    refused = await store.admit(attempt(TENANT, "vf-2", CLAIMS_LIMIT, request=request_of("another-request")))
    assert _reason(refused.claims_refusal) == "CLAIM_REFUSALS_LIMIT_REACHED"


BOUNDARIES = [(path, nth) for path, steps in PATHS.items() for nth in range(1, steps + 1)]


@pytest.mark.parametrize(("path", "nth"), BOUNDARIES, ids=[f"{path}-{nth}" for path, nth in BOUNDARIES])
async def test_a_kill_at_each_boundary_leaves_the_reservation_to_its_ttl_and_the_retry_admitted(
    own_redis: RedisProcess, own_client: RedisClient, path: str, nth: int
) -> None:
    killed_after(own_redis.url, TENANT, path, nth)
    window_step = PATHS[path]
    counted = 1 if nth == window_step else 0
    assert int(await own_client.get(WINDOW_KEY) or 0) == counted  # the window only once its step ran
    assert await own_client.get(CLAIMS_KEY) is None  # the check counts nothing
    assert [row["type"] for row in await audit_rows(own_client, TENANT)] == []  # no grant, no refusal
    store = store_of(own_client)
    if path == "readmit":
        again = await store.readmit(TENANT, consents("vf-retry"), window())
        assert (again.consent.outcome.value, again.window_counted, again.window_refusal) == (
            "admitted",
            True,
            None,
        )
    else:
        # The dead attempt's reservation holds the request id for its short TTL, and no longer.
        assert as_text(await own_client.get(KEYS.request(REQUEST.pseudonym))) == "vf-killed"
        assert 0 < await own_client.pttl(KEYS.request(REQUEST.pseudonym)) <= RESERVATION_MS
        assert (await store.admit(attempt(TENANT, "vf-retry", 0))).reservation is port.Reservation.HELD
        await asyncio.sleep(RESERVATION_MS / 1000 + 0.05)
        read = await store.read_start(TENANT, REQUEST, NAME_TAG)
        assert read.holder is None
        again = await store.admit(attempt(TENANT, "vf-retry", read.claim_refusals))
        assert again.reservation is port.Reservation.RESERVED, again
        assert (again.window_counted, again.window_refusal) == (True, None)
    assert int(await own_client.get(WINDOW_KEY) or 0) == counted + 1
    members = [as_text(m) for m in await own_client.zrange(KEYS.account_verifications(ACCOUNT), 0, -1)]
    assert "vf-retry" in members


class _CountedScripts(Scripts):
    """Scripts that note each round trip they make: a script, a chain, or commands sent together."""

    def __init__(self, redis: RedisClient) -> None:
        super().__init__(redis)
        self.trips: list[str] = []

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        self.trips.append(name)
        return await super().run(name, keys, args)

    async def run_chain(self, steps: Sequence[ChainStep]) -> list[Any]:
        self.trips.append("+".join(step.name for step in steps))
        return await super().run_chain(steps)

    async def commands(self, *commands: Sequence[str | int | bytes]) -> list[Any]:
        self.trips.append(" ".join(str(command[0]) for command in commands))
        return await super().commands(*commands)


@pytest.mark.parametrize(
    ("chained", "trips"),
    [
        # One node: the reads, then the chain of four, as ever (test_round_trips counts it on the wire).
        (True, ["GET GET HGETALL HEXISTS", "reserve_request+refuse_counted+consent_start+rate_limit"]),
        # Step by step (a Cluster): the claims' counter read with them, the account's two steps
        # together, the identity's window after them: one round trip more.
        (False, ["GET GET HGETALL HEXISTS GET", "reserve_request+consent_start", "rate_limit"]),
    ],
    ids=["one-node", "step-by-step"],
)
async def test_an_admissions_round_trips(own_client: RedisClient, chained: bool, trips: list[str]) -> None:
    scripts = _CountedScripts(own_client)
    store = store_of(own_client, scripts, StepRunner(scripts, step_by_step=not chained))
    read = await store.read_start(TENANT, REQUEST, NAME_TAG)
    admitted = await store.admit(attempt(TENANT, "vf-1", read.claim_refusals))
    assert admitted.window_counted
    assert scripts.trips == trips
