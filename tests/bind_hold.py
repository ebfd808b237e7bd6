"""Holds one process's right answers at their binding boundaries, then lets each take one more step.

For the failover tests: ``python -m tests.bind_hold URL CASES_JSON`` answers each case
(``{"tenant", "vid", "limit", "nth"}``) concurrently in one process, as a worker serves many
calls, through ``RedisVerificationStore.submit`` with its steps run one by one (the path a Cluster
always takes) and acknowledged as the URL's ``wait_replicas`` says. Each answer waits once its
``nth`` step has answered (before its first when ``nth`` is 0); when all wait, the process prints
``paused`` and reads a line. Then each answer runs its next step and stops there for good, printing
``stopped <case>`` once that step answered; an answer whose next step waits for a replica that is
cut off prints nothing. The test SIGKILLs the process: what the steps it was told of wrote is
on the replicas, what the last ones wrote may be on the primary alone.

``held_answers`` runs it and gives the test the moment between the boundary and the step after it
(:class:`HeldAnswers`); ``blocked_waits`` counts the steps a primary holds unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from idverify.store.bucket_steps import StepRunner
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.topology import parse_redis_url
from tests.bind_crash import answer, store_of

__all__ = ["HeldAnswer", "HeldAnswers", "blocked_waits", "held_answers"]

_REPO = Path(__file__).resolve().parents[1]
LINE_SECONDS = 60.0  # how long the test waits for a line the process is to print


@dataclass(frozen=True, slots=True)
class HeldAnswer:
    """A right answer to hold after its ``nth`` step, at a binding limit of ``limit``."""

    tenant: str
    vid: str
    limit: int
    nth: int


class _Holding(StepRunner):
    """Step by step; waits at ``gate`` once the ``nth`` step answered, stops dead after the next."""

    def __init__(
        self, scripts: Scripts, case: int, nth: int, held: asyncio.Queue[int], gate: asyncio.Event
    ) -> None:
        super().__init__(scripts, step_by_step=True)
        self._case, self._nth, self._held, self._gate = case, nth, held, gate

    async def hold(self) -> None:
        await self._held.put(self._case)
        await self._gate.wait()

    async def _reached(self, sequence: str, done: int) -> None:
        del sequence
        if done == self._nth:
            await self.hold()
        elif done == self._nth + 1:
            print(f"stopped {self._case}", flush=True)  # noqa: T201 - the line the test waits for
            await asyncio.Event().wait()  # this answer goes no further; the others run on


async def _answer(
    client: RedisClient,
    url: str,
    case: int,
    held: HeldAnswer,
    waiting: asyncio.Queue[int],
    gate: asyncio.Event,
) -> None:
    scripts = Scripts(client, ack=parse_redis_url(url).ack)
    runner = _Holding(scripts, case, held.nth, waiting, gate)
    if held.nth == 0:
        await runner.hold()
    try:
        await answer(store_of(client, scripts, runner), held.tenant, held.vid, limit=held.limit)
    except Exception as error:  # noqa: BLE001 - said on stdout, for the test's message
        print(f"failed {case} {type(error).__name__}", flush=True)  # noqa: T201
        return
    print(f"finished {case}", flush=True)  # noqa: T201 - no step was left after its boundary


async def _run(url: str, cases: Sequence[HeldAnswer]) -> None:
    client = connect(url)  # one for all, as a worker's calls share one
    held: asyncio.Queue[int] = asyncio.Queue()
    gate = asyncio.Event()
    tasks = [asyncio.create_task(_answer(client, url, n, case, held, gate)) for n, case in enumerate(cases)]
    for _ in cases:
        await held.get()
    print("paused", flush=True)  # noqa: T201 - the line the test waits for
    await asyncio.to_thread(sys.stdin.readline)
    gate.set()
    await asyncio.gather(*tasks)
    await asyncio.Event().wait()  # the test kills the process; nothing ends it otherwise


class HeldAnswers:
    """The process holding the answers, between ``paused`` and its kill."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.strip())

    def next_line(self, timeout: float = LINE_SECONDS) -> str:
        """The process's next line.

        Raises:
            AssertionError: none came in time (what it said before is in the message).
        """
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the process said nothing more in {timeout} s after {self.said}") from None
        self.said.append(line)
        return line

    def release(self) -> None:
        """Lets every answer take its next step."""
        assert self._process.stdin is not None
        self._process.stdin.write("go\n")
        self._process.stdin.flush()

    def kill(self) -> None:
        """SIGKILLs the process: nothing of it runs again, not even a ``finally``."""
        os.kill(self._process.pid, signal.SIGKILL)
        assert self._process.wait(timeout=60) == -signal.SIGKILL

    def stopped(self) -> set[int]:
        """The cases whose next step answered so far (``stopped`` or ``finished``).

        Raises:
            AssertionError: an answer failed.
        """
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            self.said.append(line)
        assert not [line for line in self.said if line.startswith("failed")], self.said
        return {int(line.split()[1]) for line in self.said if line.split()[0] in {"stopped", "finished"}}


@contextlib.contextmanager
def held_answers(url: str, cases: Sequence[HeldAnswer]) -> Iterator[HeldAnswers]:
    """Runs the answers in a process until every one waits at its boundary; SIGKILLs it on leaving.

    Raises:
        AssertionError: the process ended, or said anything but ``paused``, first.
    """
    spec = json.dumps([asdict(case) for case in cases])
    command = [sys.executable, "-m", "tests.bind_hold", url, spec]
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    with subprocess.Popen(
        command, cwd=_REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            held = HeldAnswers(process)
            first = held.next_line()
            assert first == "paused", held.said
            yield held
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                assert process.wait(timeout=60) == -signal.SIGKILL


def blocked_waits(port: int) -> int:
    """How many clients of the node at ``port`` wait in WAIT: steps it ran and has not answered.

    An acknowledged step sends its script and WAIT on one connection, so a client blocked in WAIT
    has had its script run on the primary, and no replica has said it holds it.
    """
    with redis.Redis(port=port, socket_timeout=5) as direct:
        clients = direct.client_list()
    return sum(1 for client in clients if client["cmd"] == "wait" and "b" in client["flags"])


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1], [HeldAnswer(**case) for case in json.loads(sys.argv[2])]))
