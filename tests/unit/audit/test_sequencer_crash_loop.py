"""Sequencer processes killed -9 at boundaries drawn at random, while stagers go on, in a loop.

Each round stages a few hundred entries in each of three buckets, then runs a sequencer process
while three stagers keep staging into random buckets, and kills the process (SIGKILL) after the
n-th call of a step drawn at random: its cursor read, its XRANGE read, its committed step (also
with half of the trim done, ``trim_half``) or its trim, n drawn among the calls the pass makes
at least. A fresh sequencer then runs, and the round checks the invariants: every staged entry
in the log exactly once, each bucket's entries in the order of their stream ids, times never
backwards, the streams empty, the tree's root the RFC 6962 root computed here (``tests.rfc6962``)
and inclusion proofs verifying.

CI runs ``CI_ROUNDS`` rounds; ``IDVERIFY_CRASH_LOOPS=500`` runs the long loop (a slow test,
docs/RELIABILITY.md). The seed is drawn anew each run and named in any failure;
``IDVERIFY_CRASH_SEED`` replays its boundaries and sizes (the stagers' interleaving with the
sequencer is the machine's).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from idverify.audit.sequencer import StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.synthetic_audit import SyntheticStager
from idverify.testing import RedisProcess
from tests.sequencer_crash import (
    STEPS,
    assert_sequenced_once,
    assert_tree_verifies,
    calls_at_least,
    drawn_seed,
    event,
    killed_at,
    loop_rounds,
    replay_hint,
    trim_half,
)

CI_ROUNDS = 10
ROUNDS = loop_rounds(CI_ROUNDS)
BUCKETS = 3
STAGERS = 3
# Each check reads the whole log: a tenant takes this many rounds, then the next one starts
# afresh on an emptied server (its first round has no cursors yet, a boundary of its own).
ROUNDS_A_TENANT = 10
# (step, half of what was sequenced left in the stream, as a trim cut short would leave it)
BOUNDARIES = [(step, False) for step in STEPS] + [("sequence", True)]


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


@dataclass
class Tenant:
    """A tenant's staged records: per bucket, (stream id, request id) as staged."""

    name: str
    rounds: int = 0
    boundary: str = "none yet"
    """Where the current round's sequencer was killed, for a failure's message."""
    staged: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: {b: [] for b in range(BUCKETS)})

    def expected(self) -> dict[int, list[str]]:
        """Each bucket's request ids in stream order: the order the log must keep."""
        return {
            b: [name for _, name in sorted(mine, key=lambda r: _stream_order(r[0]))]
            for b, mine in self.staged.items()
        }


async def _stage_meanwhile(
    stager: SyntheticStager, tenant: Tenant, rng: random.Random, label: str, done: asyncio.Event
) -> None:
    """Stages small batches into random buckets until the sequencer is killed (600 entries at most)."""
    for batch in range(60):
        if done.is_set():
            return
        bucket, names = rng.randrange(BUCKETS), [f"{label}-{batch}-{n}" for n in range(rng.randint(1, 10))]
        ids = await stager.stage(tenant.name, bucket, [event(name) for name in names])
        tenant.staged[bucket] += zip(ids, names, strict=True)
        await asyncio.sleep(0.02)


async def _round(redis: RedisClient, url: str, tenant: Tenant, rng: random.Random) -> None:
    """One round: stage, kill a sequencer at a boundary while stagers go on, rerun, check."""
    stager = SyntheticStager(redis)
    label = f"r{tenant.rounds}"
    prestaged = [rng.randint(1, 700) for _ in range(BUCKETS)]
    for bucket, count in enumerate(prestaged):
        names = [f"{label}-b{bucket}-{n}" for n in range(count)]
        ids = await stager.stage(tenant.name, bucket, [event(name) for name in names])
        tenant.staged[bucket] += zip(ids, names, strict=True)
    step, partial = rng.choice(BOUNDARIES)
    nth = rng.randint(1, calls_at_least(step, prestaged))
    tenant.boundary = f"call {nth} of {step}" + (", half trimmed" if partial else "")
    done = asyncio.Event()
    draws = [random.Random(rng.random()) for _ in range(STAGERS)]  # noqa: S311 - a test's draw
    stagers = [
        asyncio.create_task(_stage_meanwhile(stager, tenant, draw, f"{label}-s{s}", done))
        for s, draw in enumerate(draws)
    ]
    try:
        await asyncio.to_thread(killed_at, url, tenant.name, BUCKETS, step, nth)
    finally:
        done.set()
        await asyncio.gather(*stagers)
    if partial:
        await trim_half(redis, tenant.name, BUCKETS)
    await StageSequencer(RedisAuditStages(redis, Scripts(redis)), BUCKETS).sequence(tenant.name)
    await assert_sequenced_once(redis, tenant.name, tenant.expected())
    size = sum(len(mine) for mine in tenant.staged.values())
    proved = {0, size - 1, *(rng.randrange(size) for _ in range(3))}
    assert await assert_tree_verifies(redis, tenant.name, sorted(proved)) == size
    tenant.rounds += 1


@pytest.mark.timeout(120 + 15 * ROUNDS)
async def test_sequencers_killed_at_random_boundaries_lose_and_double_nothing(
    own_redis: RedisProcess,
) -> None:
    seed = drawn_seed()
    rng = random.Random(seed)  # noqa: S311 - a test's draw
    redis = connect(own_redis.url)
    tenant = Tenant("loop-0")
    try:
        for n in range(ROUNDS):
            if tenant.rounds == ROUNDS_A_TENANT:
                await redis.flushall()
                tenant = Tenant(f"loop-{n}")
            try:
                await _round(redis, own_redis.url, tenant, rng)
            except Exception as exc:
                where = f"round {n} of {ROUNDS} ({tenant.name}, killed after {tenant.boundary})"
                msg = f"{where}: {replay_hint(seed, ROUNDS)}"
                raise AssertionError(msg) from exc
    finally:
        await redis.aclose()
