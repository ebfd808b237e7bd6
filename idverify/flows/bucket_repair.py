"""The repairer: finishes step sequences a worker left half done.

docs/ARCHITECTURE.md, "3. The multi-bucket steps", has the design.

A sequence that runs step by step (a Cluster) writes a durable intent with its first step and
removes it with its last. An intent still there after its retry time means the worker running the
sequence died, or lost its store, in between. Every worker runs :func:`repair_forever` beside the
audit integration: every few seconds, for each tenant, it reads the due intents (64 at most a
round), takes each with a check-and-set on its retry time (so two repairers rarely take the same
one, and if they do, every step being idempotent, the second changes nothing) and resumes the
sequence after its first step (a cancellation's, an account's erasure's, a binding's, an
identity's re-indexing's). The rule is to finish,
never undo.

The store checks each intent as the sequence's first step would see it and finishes only what that
step recorded: an intent planted by someone with write access to Redis (for an account that is not
cancelled, say) or a malformed one is removed without acting, and logged here by its key, never its
contents (an unexpected key is not shown at all: it might hold anything).

The flow reads and writes the store through :class:`IntentRepairs`, the port declared here;
``store.intent_repairs.RedisIntentRepairs`` implements it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from idverify.domain.errors import StoreUnavailable

__all__ = [
    "DUE_PAGE",
    "REPAIR_INTERVAL_SECONDS",
    "BucketRepairer",
    "DueIntent",
    "IntentRepairs",
    "Repair",
    "RepairOutcome",
    "repair_forever",
]

log = logging.getLogger("idverify.repair")

REPAIR_INTERVAL_SECONDS = 3.0
DUE_PAGE = 64
# An intent's member as this release writes it: its kind and a pseudonym (32 hex digits), or a
# re-indexing's and the SHA-1 of its old ref (40). Only such a member is shown in a log line.
_LOGGABLE = re.compile(r"(?:unbind|erase|bind|place):[0-9a-f]{32}|move:[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class DueIntent:
    """An intent whose retry time has passed: its member and that time, as read (epoch ms).

    ``index``: the store's name of the index it was read from (a bucketed tenant has one per
    bucket), so that the repair takes it there; '' for the tenant's one.
    """

    member: str
    retry_after_ms: int
    index: str = ""


class RepairOutcome(Enum):
    """What became of one due intent."""

    REPAIRED = "repaired"  # its sequence finished, its intent removed
    # another repairer took it first, its own worker finished meanwhile, or it waits for another
    RACED = "raced"
    DROPPED = "dropped"  # refused: planted, malformed or of an unknown kind; removed, nothing done


@dataclass(frozen=True, slots=True)
class Repair:
    """A repair's outcome, and for a dropped intent why (a reason code)."""

    outcome: RepairOutcome
    reason: str = ""


class IntentRepairs(Protocol):
    """The intents of a tenant's step sequences; every method may raise StoreUnavailable."""

    async def now_ms(self) -> int:
        """The store's clock, in ms of the epoch."""
        ...

    async def due(self, tenant: str, until_ms: int, limit: int) -> list[DueIntent]:
        """At most ``limit`` intents whose retry time is ``until_ms`` or before, oldest first."""
        ...

    async def repair(self, tenant: str, intent: DueIntent) -> Repair:
        """Takes the intent (if its retry time is still as read) and finishes its sequence."""
        ...

    def key_of(self, tenant: str, member: str) -> str:
        """The intent's record key, for a log line."""
        ...


class BucketRepairer:
    """Finishes the due intents of every tenant it is asked about."""

    def __init__(self, store: IntentRepairs) -> None:
        self._store = store

    async def repair(self, tenant: str) -> int:
        """One pass over ``tenant``'s due intents; how many sequences it finished.

        Raises:
            StoreUnavailable: Redis is down (the pass stops; the next one goes on).
        """
        now = await self._store.now_ms()
        finished = 0
        for intent in await self._store.due(tenant, now, DUE_PAGE):
            try:
                repair = await self._store.repair(tenant, intent)
            except StoreUnavailable:
                raise
            except Exception as error:  # noqa: BLE001 - one bad intent must not stop the others
                log.error("repair of %s failed: %s", self._shown(tenant, intent.member), type(error).__name__)  # noqa: TRY400
                continue
            if repair.outcome is RepairOutcome.REPAIRED:
                finished += 1
                log.info("repaired %s", self._shown(tenant, intent.member))
            elif repair.outcome is RepairOutcome.DROPPED:
                log.warning("intent %s dropped: %s", self._shown(tenant, intent.member), repair.reason)
        return finished

    def _shown(self, tenant: str, member: str) -> str:
        if _LOGGABLE.fullmatch(member):
            return self._store.key_of(tenant, member)
        return f"of tenant {tenant} (a key this release never writes)"


async def repair_forever(
    repairer: BucketRepairer,
    tenants: Callable[[], Awaitable[Collection[str]]],
    *,
    interval_seconds: float = REPAIR_INTERVAL_SECONDS,
) -> None:
    """Repairs every tenant's due intents every ``interval_seconds``, until cancelled.

    Runs in every worker; they share the work through the take's check-and-set. A tenant whose pass
    fails is logged and does not hold back the others; Redis being down ends the round (it is the
    health watcher's news); the next round tries again.
    """
    while True:
        try:
            for tenant in sorted(await tenants()):
                try:
                    await repairer.repair(tenant)
                except StoreUnavailable:
                    raise
                except Exception as error:  # noqa: BLE001 - the loop must outlive any one bad tenant
                    # The type, not the message: a foreign exception's text is not ours to log.
                    log.error("intent repair of %s failed: %s", tenant, type(error).__name__)  # noqa: TRY400
        except StoreUnavailable:
            pass
        except Exception as error:  # noqa: BLE001 - nor any one bad round (the tenants' list)
            log.error("intent repair failed: %s", type(error).__name__)  # noqa: TRY400
        await asyncio.sleep(interval_seconds)
