"""Kills a sequencer process at a step boundary, for the crash tests of staged audit entries.

``python -m tests.sequencer_crash URL TENANT BUCKETS STEP NTH`` sequences the tenant's buckets
as a worker does (acknowledging its steps as the URL's ``wait_replicas`` says), but stops for good
once the NTH call of STEP has returned (``cursor``: a bucket's cursor read, ``staged``: its XRANGE
read, ``sequence``: the committed append, ``trim``: its records deleted from the stream), after printing
``paused``. ``paused_at`` runs it and kills it with SIGKILL when the caller is done with the
pause (a test kills a Redis primary meanwhile), ``killed_at`` at once: nothing after that
boundary runs, not even a ``finally``. ``trim_half`` leaves what a trim interrupted halfway would.
``assert_sequenced_once`` and ``assert_tree_verifies`` check what any crash must leave after a
rerun; the standalone and Cluster crash tests share all of it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from idverify.audit import merkle
from idverify.audit.integrator import TreeIntegrator
from idverify.audit.sequencer import SEQUENCE_BATCH, Sequenced, StagedRecord, StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.audit_store import AuditStore
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts
from idverify.store.topology import parse_redis_url
from tests import rfc6962

STEPS = ("cursor", "staged", "sequence", "trim")
LOOPS_ENV = "IDVERIFY_CRASH_LOOPS"
"""Rounds of the crash loops (the long loop); CI runs each loop's few rounds without it."""
SEED_ENV = "IDVERIFY_CRASH_SEED"
"""The seed a crash loop's draws replay (a failure names it); a new one each run without it."""
_REPO = Path(__file__).resolve().parents[1]
Event = tuple[dict[str, str], dict[str, str]]


def loop_rounds(ci_rounds: int) -> int:
    """How many rounds a crash loop runs: ``IDVERIFY_CRASH_LOOPS``, else its CI share."""
    return int(os.environ.get(LOOPS_ENV) or ci_rounds)


def drawn_seed() -> int:
    """``IDVERIFY_CRASH_SEED``, else a new seed; printed, so a failure's captured output shows it too."""
    seed = int(os.environ.get(SEED_ENV) or random.randrange(2**32))  # noqa: S311 - a test's draw
    print(f"{SEED_ENV}={seed}")  # noqa: T201 - shown with a failure's captured output
    return seed


def replay_hint(seed: int, rounds: int) -> str:
    """What to set to run a failed loop's draws again."""
    return f"replay with {SEED_ENV}={seed} {LOOPS_ENV}={rounds}"


def calls_at_least(step: str, prestaged: Sequence[int]) -> int:
    """How many calls of ``step`` a pass makes at the least, its buckets holding ``prestaged`` (none 0).

    Stagers adding records meanwhile, and what a crash left at or below a cursor (a late batch),
    only add calls.
    """
    batches = sum(math.ceil(n / SEQUENCE_BATCH) for n in prestaged)
    # A bucket's reads end with an empty one; a deletion of its records follows each batch.
    return {
        "cursor": len(prestaged),
        "staged": batches + len(prestaged),
        "sequence": batches,
        "trim": batches,
    }[step]


def event(request_id: str) -> Event:
    """A staged event the log can tell apart by its request id."""
    return {"principal": "t/registrar/c1", "request_id": request_id, "trace_id": ""}, {
        "type": "verification.started",
        "outcome": "started",
    }


class _Stopping(RedisAuditStages):
    """The store, but the process stops dead after the ``nth`` call of ``step``."""

    def __init__(self, redis: RedisClient, scripts: Scripts, step: str, nth: int) -> None:
        super().__init__(redis, scripts)
        self._step, self._left = step, nth

    def _returned(self, step: str) -> None:
        if step == self._step:
            self._left -= 1
            if self._left == 0:
                print("paused", flush=True)  # noqa: T201 - the line the killing test waits for
                time.sleep(3600)  # blocks the loop: nothing else of this process runs again

    async def cursor(self, tenant: str, bucket: int) -> str:
        cursor = await super().cursor(tenant, bucket)
        self._returned("cursor")
        return cursor

    async def staged(self, tenant: str, bucket: int, after: str, count: int) -> list[StagedRecord]:
        records = await super().staged(tenant, bucket, after, count)
        self._returned("staged")
        return records

    async def sequence(
        self, tenant: str, bucket: int, after: str, records: Sequence[StagedRecord]
    ) -> Sequenced:
        outcome = await super().sequence(tenant, bucket, after, records)
        self._returned("sequence")
        return outcome

    async def trim(self, tenant: str, bucket: int, records: Sequence[StagedRecord]) -> None:
        await super().trim(tenant, bucket, records)
        self._returned("trim")


@contextmanager
def paused_module(arguments: Sequence[str], boundary: str) -> Iterator[None]:
    """Runs ``python -m <arguments>`` until it prints ``paused``; SIGKILLs it on leaving.

    Raises:
        AssertionError: the process ended (or failed) before pausing (``boundary`` says where it
            was to pause, for the message).
    """
    command = [sys.executable, "-m", *arguments]
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    with subprocess.Popen(command, cwd=_REPO, env=env, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "paused":
                process.wait(timeout=60)
                msg = f"the process ended ({process.returncode}) before {boundary}"
                raise AssertionError(msg)
            yield
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                assert process.wait(timeout=60) == -signal.SIGKILL


@contextmanager
def paused_at(url: str, tenant: str, buckets: int, step: str, nth: int) -> Iterator[None]:
    """Runs a sequencer process until it stopped after the ``nth`` ``step``; SIGKILLs it on leaving.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    arguments = ["tests.sequencer_crash", url, tenant, str(buckets), step, str(nth)]
    with paused_module(arguments, f"the sequencer's {nth}th {step}"):
        yield


def killed_at(url: str, tenant: str, buckets: int, step: str, nth: int) -> None:
    """Runs a sequencer process and SIGKILLs it once it stopped after the ``nth`` ``step``.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    with paused_at(url, tenant, buckets, step, nth):
        pass


async def trim_half(redis: RedisClient, tenant: str, buckets: int) -> int:
    """Deletes half of each bucket's records at or below its cursor, as a trim cut short would leave.

    The trim is one script (a range, or the batch's records), so a crash inside it leaves the
    stream as before or after it; this is what an XDEL-by-XDEL trim would leave. Returns how many
    records it deleted.
    """
    halved = 0
    stages = RedisAuditStages(redis, Scripts(redis))
    for bucket in range(buckets):
        cursor = await stages.cursor(tenant, bucket)
        stage = BucketKeys(tenant, bucket).audit_stage()
        below = [i for i, _ in await redis.xrange(stage, "-", cursor)] if cursor else []
        if below:
            halved += await redis.xdel(stage, *below[: len(below) // 2])
    return halved


async def assert_sequenced_once(redis: RedisClient, tenant: str, staged: dict[int, list[str]]) -> list[bytes]:
    """Every staged request id in the log once, each bucket's in order, the streams empty; the entries."""
    raw = await redis.hgetall(TenantKeys(tenant).audit_log())
    entries = [raw[str(i).encode()] for i in range(len(raw))]
    parsed: list[dict[str, Any]] = [json.loads(entry) for entry in entries]
    assert [e["seq"] for e in parsed] == list(range(len(parsed)))
    ids = [e["request_id"] for e in parsed]
    assert sorted(ids) == sorted(i for mine in staged.values() for i in mine)
    for bucket, mine in staged.items():
        assert [i for i in ids if i in set(mine)] == mine
        assert await redis.xlen(BucketKeys(tenant, bucket).audit_stage()) == 0
    times = [e["time_ms"] for e in parsed]
    assert times == sorted(times)
    return entries


async def assert_tree_verifies(redis: RedisClient, tenant: str, proved: Iterable[int]) -> int:
    """Integrates the log: its root RFC 6962's over every entry, the ``proved`` entries' proofs verifying.

    Returns:
        the tree's size.
    """
    store = AuditStore(redis, Scripts(redis))
    state = await TreeIntegrator(store).integrate(tenant)
    entries = await store.entries(tenant, list(range(state.size)))
    leaves = [rfc6962.leaf(entry) for entry in entries if entry is not None]
    assert len(leaves) == state.size
    assert state.root == rfc6962.root(leaves)
    for index in proved:
        plan = merkle.inclusion_plan(index, state.size)
        proof = plan.assemble(await store.read_nodes(tenant, plan.nodes))
        assert rfc6962.proves_inclusion(leaves[index], index, state.size, proof, state.root), index
        # The check can fail: the same proof does not take another entry to the root.
        assert not rfc6962.proves_inclusion(rfc6962.leaf(b"forged"), index, state.size, proof, state.root)
    return state.size


async def _run(url: str, tenant: str, buckets: int, step: str, nth: int) -> None:
    redis = connect(url)
    scripts = Scripts(redis, ack=parse_redis_url(url).ack)
    await StageSequencer(_Stopping(redis, scripts, step, nth), buckets).sequence(tenant)


if __name__ == "__main__":
    url, tenant, buckets, step, nth = sys.argv[1:]
    asyncio.run(_run(url, tenant, int(buckets), step, int(nth)))
