"""What the ports' contract suites share: one fixture running each test on both implementations.

Each suite runs its tests on the in-memory implementation and on Redis's through ``port_on_each``;
most hand a test the port with a ``World`` beside it (what the port does not write itself, time,
the audit log) in a ``Contract``, and a world that is only the audit log is an ``AuditTrail``. The
rest is what their Redis sides read and write the same way: the audit log's entries, the outbox's
records, waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import pytest

from idverify.audit.events import AuditEvent, parse_entry
from idverify.store.connection import RedisClient, as_text
from idverify.store.keys import TenantKeys

S = TypeVar("S")
W = TypeVar("W")
P = TypeVar("P")


@dataclass(frozen=True)  # no slots: Contract[S, W](...) sets __orig_class__ on what it builds
class Contract(Generic[S, W]):
    """One implementation of a port, and the world a test arranges and inspects around it."""

    store: S
    world: W


def port_on_each(
    memory: Callable[[], P], redis: Callable[[RedisClient], P], **redis_variants: Callable[[RedisClient], P]
) -> Any:
    """A fixture ``port`` giving each test the in-memory port, then Redis's, then each variant's.

    Redis's are built over the module's own server (``own_client``, emptied before each test); a
    variant ``step_by_step`` runs as ``redis-step-by-step``.
    """
    variants = {f"redis-{name.replace('_', '-')}": build for name, build in redis_variants.items()}
    builds = {"redis": redis} | variants

    @pytest.fixture(name="port", params=["memory", *builds])
    def port(request: pytest.FixtureRequest, own_client: RedisClient) -> P:
        return memory() if request.param == "memory" else builds[request.param](own_client)

    return port


async def audit_rows(redis: RedisClient, tenant: str) -> list[dict[str, Any]]:
    """The tenant's audit log entries as stored (JSON), in the order they were appended."""
    log = await redis.hgetall(TenantKeys(tenant).audit_log())
    return [json.loads(log[index]) for index in sorted(log, key=lambda i: int(as_text(i)))]


class AuditTrail(Protocol):
    """The audit log a port writes to, each of a tenant's entries cut to the fields a suite checks."""

    async def audited(self, tenant: str) -> list[tuple[str, ...]]: ...


@dataclass(frozen=True)
class MemoryAuditTrail:
    """An in-memory store's ``audit`` list, whose entries are ``(tenant, *fields)``."""

    audit: Sequence[tuple[str, ...]]

    async def audited(self, tenant: str) -> list[tuple[str, ...]]:
        return [entry[1:] for entry in self.audit if entry[0] == tenant]


@dataclass(frozen=True)
class RedisAuditTrail:
    """The tenant's audit log as Redis stores it, each entry (its JSON) cut to ``fields(entry)``."""

    redis: RedisClient
    fields: Callable[[dict[str, Any]], tuple[str, ...]]

    async def audited(self, tenant: str) -> list[tuple[str, ...]]:
        return [self.fields(row) for row in await audit_rows(self.redis, tenant)]


async def audit_events(redis: RedisClient, tenant: str) -> list[AuditEvent]:
    """The tenant's audit log entries decoded as the log's readers decode them (the format checked)."""
    log = TenantKeys(tenant).audit_log()
    events = []
    for index in range(int(await redis.hlen(log))):
        leaf = await redis.hget(log, str(index))
        assert isinstance(leaf, bytes)
        events.append(parse_entry(leaf))
    return events


async def sleep_ms(ms: int) -> None:
    """Lets ``ms`` go by on Redis's side, where the store's own clock moves with the wall clock."""
    await asyncio.sleep(ms / 1000)


def outbox_appender(
    redis: RedisClient, *, after: int = -1
) -> Callable[[str, bytes | None, str, str], Awaitable[str]]:
    """Appends outbox records as the prelude's ``audit()`` does, numbering each tenant's from ``after``.

    A record names its entry (None: one gone with its log, so nothing is stored under its number),
    the account sealed for subscribers and the span; it answers the record's stream id.
    """
    numbers: dict[str, int] = {}

    async def append(tenant: str, entry: bytes | None, sealed: str, span: str) -> str:
        keys = TenantKeys(tenant)
        number = numbers[tenant] = numbers.get(tenant, after) + 1
        if entry is not None:
            await redis.hset(keys.audit_log(), str(number), entry)
        fields = {"s": str(number), **({"a": sealed} if sealed else {}), **({"c": span} if span else {})}
        return as_text(await redis.xadd(keys.events_outbox(), fields))  # type: ignore[arg-type]

    return append
