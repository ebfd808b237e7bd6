"""An in-memory ``flows.keyring_watcher.ServerReports``: running servers' reports as plain values.

A report lasts its ``ttl_ms`` by the monotonic clock, as the key's expiry does in Redis.
``tests/unit/usecases/test_server_reports_contract.py`` holds it and
``store.server_reports.RedisServerReports`` to the same assertions.
"""

from __future__ import annotations

import time

from idverify.flows.keyring_watcher import ServerKeyring
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemoryServerReports"]


class MemoryServerReports:
    """Reports by instance, each with the monotonic time it expires at.

    ``down`` makes every call raise StoreUnavailable, as an unreachable Redis would.
    """

    def __init__(self) -> None:
        self.down = False
        self._reports: dict[str, tuple[ServerKeyring, float]] = {}

    def _reach(self) -> None:
        refuse_if_down(self.down)

    async def publish(self, report: ServerKeyring, ttl_ms: int) -> None:
        """Keeps the report until ``ttl_ms`` from now."""
        self._reach()
        self._reports[report.instance] = (report, time.monotonic() + ttl_ms / 1000)

    async def withdraw(self, instance: str) -> None:
        """Forgets the instance's report."""
        self._reach()
        self._reports.pop(instance, None)

    async def running(self) -> list[ServerKeyring]:
        """The reports not yet expired."""
        self._reach()
        now = time.monotonic()
        return [report for report, expires in self._reports.values() if expires > now]
