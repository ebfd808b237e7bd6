"""Kills a sequencer process at a step boundary, for the crash tests of staged audit entries.

``python -m tests.sequencer_crash URL TENANT BUCKETS STEP NTH`` sequences the tenant's buckets
as a worker does, but stops for good once the NTH call of STEP (``staged``: its XRANGE read,
``sequence``: the committed append, ``trim``: the stream trimmed) has returned, after printing
``paused``: the test then kills it with SIGKILL, so nothing after that boundary runs, not even
a ``finally``. ``killed_at`` runs it and does the killing; ``assert_sequenced_once`` checks what
any crash must leave after a rerun.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from idverify.audit.sequencer import Sequenced, StagedRecord, StageSequencer
from idverify.store.audit_stages import RedisAuditStages
from idverify.store.connection import RedisClient, connect
from idverify.store.keys import BucketKeys, TenantKeys
from idverify.store.scripts import Scripts

STEPS = ("staged", "sequence", "trim")
_REPO = Path(__file__).resolve().parents[1]


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

    async def trim(self, tenant: str, bucket: int, cursor: str) -> None:
        await super().trim(tenant, bucket, cursor)
        self._returned("trim")


def killed_at(url: str, tenant: str, buckets: int, step: str, nth: int) -> None:
    """Runs a sequencer process and SIGKILLs it once it stopped after the ``nth`` ``step``.

    Raises:
        AssertionError: the process ended (or failed) before reaching that boundary.
    """
    command = [sys.executable, "-m", "tests.sequencer_crash", url, tenant, str(buckets), step, str(nth)]
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    with subprocess.Popen(command, cwd=_REPO, env=env, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "paused":
            process.wait(timeout=60)
            msg = f"the sequencer ended ({process.returncode}) before the {nth}th {step}"
            raise AssertionError(msg)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL


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


async def _run(url: str, tenant: str, buckets: int, step: str, nth: int) -> None:
    redis = connect(url)
    await StageSequencer(_Stopping(redis, Scripts(redis), step, nth), buckets).sequence(tenant)


if __name__ == "__main__":
    url, tenant, buckets, step, nth = sys.argv[1:]
    asyncio.run(_run(url, tenant, int(buckets), step, int(nth)))
