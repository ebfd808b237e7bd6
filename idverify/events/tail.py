"""Waking a worker's event streams when a tenant's outbox grows.

Each worker polls the newest cursor of a tenant's outbox, once per interval, only while a stream
of that tenant waits in it: one small read per tenant, however many streams are open. A blocking
read would hold a Redis connection per tenant, and the service shares one connection among all
calls. The newest cursor is read through :class:`NewestCursors` (``events.outbox.Outbox``, over
the outbox's port, ``OutboxStore``), so the tail knows nothing of the store.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from idverify.domain.errors import StoreUnavailable
from idverify.events.outbox import cursor_key

__all__ = ["NewestCursors", "OutboxTail"]

log = logging.getLogger("idverify.events")


class NewestCursors(Protocol):
    """Where a tenant's outbox ends (``events.outbox.Outbox`` is one)."""

    async def last_cursor(self, tenant: str) -> str:
        """The newest record's cursor, or empty while the outbox is empty; may raise StoreUnavailable."""
        ...


@dataclass
class _Tenant:
    newest: str = ""
    waiting: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poller: asyncio.Task[None] | None = None


class OutboxTail:
    """Tells waiting streams that a tenant's outbox has records past their cursor."""

    def __init__(self, outbox: NewestCursors, poll_seconds: float) -> None:
        self._outbox = outbox
        self._poll_seconds = poll_seconds
        self._tenants: dict[str, _Tenant] = {}

    async def wait_past(self, tenant: str, cursor: str, seconds: float) -> bool:
        """Waits until the outbox holds a record after ``cursor``, at most ``seconds``.

        Returns:
            Whether it does (False: the time ran out first).
        """
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        state.waiting += 1
        if state.poller is None or state.poller.done():
            state.poller = asyncio.create_task(self._poll(tenant, state), name=f"events-tail-{tenant}")
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                while cursor_key(state.newest) <= cursor_key(cursor):
                    await state.changed.wait()
        except TimeoutError:
            return False
        finally:
            state.waiting -= 1
        return True

    async def _poll(self, tenant: str, state: _Tenant) -> None:
        while state.waiting > 0:
            try:
                newest = await self._outbox.last_cursor(tenant)
            except StoreUnavailable:
                newest = state.newest  # streams wait on; the next round tries again
            if newest != state.newest:
                state.newest = newest
                woken, state.changed = state.changed, asyncio.Event()
                woken.set()
            await asyncio.sleep(self._poll_seconds)
        if self._tenants.get(tenant) is state and state.waiting == 0:
            del self._tenants[tenant]

    async def aclose(self) -> None:
        """Stops every poller (at shutdown)."""
        pollers = [state.poller for state in self._tenants.values() if state.poller is not None]
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        self._tenants.clear()
