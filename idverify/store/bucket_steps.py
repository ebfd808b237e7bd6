"""Runs an ordered sequence of slot-local scripts: a step sequence.

docs/ARCHITECTURE.md, "3. The multi-bucket steps", has the design.

A write that touches several hash slots is cut into steps of one slot each. On one node
(``Scripts.one_node``: standalone, Sentinel) the steps are joined by ``Scripts.run_chain`` into one
atomic EVAL: nothing can happen between them, so no crash boundary exists, no intent is written
and the round trips stay those of one script. On a Cluster they run one by one, each after the one
before answered; the first writes a durable intent in its slot, which the sequence's last step
removes and the repairer (``flows.bucket_repair``) finishes from when a worker dies in between.

A step runs only when the one before answered one of its ``proceed_on`` replies, the chain's rule,
so both paths stop at the same refusal. Every step before the last must be an acknowledged step
(``ACKNOWLEDGED_SCRIPTS``): with replicas to wait for, a failover cannot lose a step that a later
one relies on, and the last (the intent's removal, or the step the caller is answered after) is
the only one a repair may have to redo.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from idverify.flows.context import seconds_left
from idverify.store.connection import as_text
from idverify.store.scripts import ACKNOWLEDGED_SCRIPTS, ChainStep, Scripts
from idverify.store.topology import COMMAND_TIMEOUT_SECONDS

__all__ = ["INTENT_GRACE_MS", "Intent", "StepRunner"]

INTENT_GRACE_MS = 5_000
"""How long past a sequence's deadline its intent waits before the repairer may take it."""


@dataclass(frozen=True, slots=True)
class Intent:
    """The durable intent a sequence's first step writes when the steps run one by one.

    ``removed_after``: the first step's replies after which the intent exists and is the
    sequence's to remove once its other steps are done (a refusal or a repeat writes none).
    """

    index_key: str
    record_key: str
    member: str
    removed_after: tuple[str, ...]


class StepRunner:
    """Runs step sequences over one client's scripts.

    Args:
        scripts: the scripts of the client the steps run on.
        step_by_step: run the steps one by one on one node too, as on a Cluster. For the crash
            tests only (``idverify.testing`` and the suite pass it): no setting turns it on, so a
            production server on one node always runs its sequences atomically.
    """

    def __init__(self, scripts: Scripts, *, step_by_step: bool = False) -> None:
        self._scripts = scripts
        self._step_by_step = step_by_step

    @property
    def chained(self) -> bool:
        """True when a sequence runs as one atomic EVAL (one node): it writes no intent."""
        return self._scripts.one_node and not self._step_by_step

    @staticmethod
    def intent_delay_ms(steps: int) -> int:
        """When an intent of a sequence of ``steps`` may be repaired, in ms after its first step.

        The call's deadline (outside a call, or when it has none, each step bounded by the command
        timeout and the intent's removal one more) and ``INTENT_GRACE_MS``: a live worker is done
        by then, or its call was given up and the handler with it.
        """
        seconds = seconds_left((steps + 1) * COMMAND_TIMEOUT_SECONDS)
        return math.ceil(seconds * 1000) + INTENT_GRACE_MS

    async def run(
        self, sequence: str, steps: Sequence[ChainStep], *, intent: Intent | None = None, chain: bool = True
    ) -> list[Any]:
        """Runs ``steps`` in order; the replies of those that ran.

        ``chain=False`` runs them one by one on one node too: a repair, which resumes from an
        intent and must remove it. Step by step, ``intent`` (when the first step answered one of
        its ``removed_after``) is removed last, once every step that was to run ran: a crash or a
        failure before that leaves it to the repairer.

        Raises:
            StoreUnavailable: as ``Scripts.run``; the steps before it stay done.
            ValueError: a step before the last is not acknowledged (a programming error).
        """
        unacknowledged = [step.name for step in steps[:-1] if step.name not in ACKNOWLEDGED_SCRIPTS]
        if unacknowledged:
            msg = f"{sequence}: steps before the last must be acknowledged: {unacknowledged}"
            raise ValueError(msg)
        if chain and self.chained:
            return await self._scripts.run_chain(steps)
        replies: list[Any] = []
        for step in steps:
            reply = await self._scripts.run(step.name, step.keys, step.args)
            replies.append(reply)
            await self._reached(sequence, len(replies))
            if as_text(reply[0]) not in step.proceed_on:
                break
        if intent is not None and replies and as_text(replies[0][0]) in intent.removed_after:
            await self._scripts.run("intent_done", [intent.index_key, intent.record_key], [intent.member])
            await self._reached(sequence, len(replies) + 1)
        return replies

    async def run_at_once(self, sequence: str, steps: Sequence[ChainStep]) -> list[Any]:
        """Runs steps of different slots at once, one round trip to their nodes; their replies.

        For counters in two slots (docs/ARCHITECTURE.md, "3.6 Counters in two slots"): each step
        checks its own limits and counts in one script, so no step waits for another's answer;
        the caller gives a count back when another step refused. No intent: a crash before the
        give-back leaves a count spent, on the safe side. The boundary after them all is
        :meth:`_reached`'s, as after each step of :meth:`run`.

        Raises:
            StoreUnavailable: as ``Scripts.run``, once every step ended (one that ran stays counted).
        """
        outcomes = await asyncio.gather(
            *(self._scripts.run(step.name, step.keys, step.args) for step in steps), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        await self._reached(sequence, len(steps))
        return list(outcomes)

    async def run_one(self, sequence: str, step: ChainStep, done: int) -> Any:
        """Runs one step of a sequence whose caller picks each next step from the replies before.

        For a binding (``store.binding_steps``), which supersedes one account a step and only when
        a claim is established. ``done``: the steps of the sequence run so far, this one included;
        the boundary after it is :meth:`_reached`'s, as in :meth:`run`.
        """
        reply = await self._scripts.run(step.name, step.keys, step.args)
        await self._reached(sequence, done)
        return reply

    async def run_joined(self, sequence: str, steps: Sequence[ChainStep], done: int) -> list[Any]:
        """Runs steps of one slot as one step of a sequence: one chain (``Scripts.run_chain``).

        For consecutive steps in one bucket (a start's reservation and consents, ``store.admission_steps``):
        nothing can happen between them, so they are one boundary, :meth:`_reached`'s after them.
        The replies of those that ran, as ``run_chain`` answers them.
        """
        replies = await self._scripts.run_chain(steps)
        await self._reached(sequence, done)
        return replies

    async def run_reads(
        self, sequence: str, commands: Sequence[Sequence[str | int | bytes]], done: int
    ) -> list[Any]:
        """Plain reads of records in any buckets, sent together; their replies.

        For the reads followed by one write (docs/ARCHITECTURE.md, "3.5 The reads followed by
        one write"): one round trip, grouped by node on a Cluster (``Scripts.commands``), whose
        replies the write is then given. ``done`` as in :meth:`run_one`.

        Raises:
            StoreUnavailable: as ``Scripts.commands``.
        """
        replies = await self._scripts.commands(*commands)
        await self._reached(sequence, done)
        return replies

    async def _reached(self, sequence: str, done: int) -> None:
        """Called after each step that ran one by one (``done`` of them so far): a boundary.

        The crash tests' runner stops its process dead here (``tests/cancel_crash.py``).
        """
        del sequence, done
