"""Running servers' keyring reports in Redis, for ``flows.keyring_watcher``.

Each server keeps one report under ``iv1:{global}:keyring:<instance>``: a JSON object of the
keyring versions it holds and the schema version its release writes (``schema``; 0.1.0's reports
name none), with an expiry the server renews while it runs. Reports that do not decode are left
out, as a report written by a release this one cannot read.
"""

from __future__ import annotations

import contextlib
import json

from idverify.flows.keyring_watcher import UNREPORTED_SCHEMA, ServerKeyring
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys
from idverify.store.scan import scan_pages

__all__ = ["REPORTED_SCHEMA", "RedisServerReports"]

REPORTED_SCHEMA = "schema"
"""The report's field naming the data layout its server's release writes (absent: 0.1.0)."""


class RedisServerReports:
    """``flows.keyring_watcher.ServerReports`` over one Redis client.

    Every method may raise StoreUnavailable when Redis cannot be reached.
    """

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def publish(self, report: ServerKeyring, ttl_ms: int) -> None:
        """SET of the report's JSON with its expiry."""
        fields = {
            "wrapping_current": report.wrapping_current,
            "wrapping": list(report.wrapping),
            "pepper_current": report.pepper_current,
            REPORTED_SCHEMA: report.schema,
        }
        async with translate_errors():
            await self._redis.set(GlobalKeys.keyring_instance(report.instance), json.dumps(fields), px=ttl_ms)

    async def withdraw(self, instance: str) -> None:
        """DEL of the instance's report."""
        async with translate_errors():
            await self._redis.delete(GlobalKeys.keyring_instance(instance))

    async def running(self) -> list[ServerKeyring]:
        """Every report still stored: a SCAN of their keys and a GET of each."""
        found: list[ServerKeyring] = []
        async for _, page in scan_pages(self._redis, GlobalKeys.keyring_instance("*")):
            for key in page:
                async with translate_errors():
                    raw = await self._redis.get(key)
                if raw is None:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    report = json.loads(raw)
                    found.append(
                        ServerKeyring(
                            instance=as_text(key).rsplit(":", 1)[-1],
                            wrapping_current=str(report["wrapping_current"]),
                            wrapping=tuple(report["wrapping"]),
                            pepper_current=str(report["pepper_current"]),
                            schema=int(report.get(REPORTED_SCHEMA, UNREPORTED_SCHEMA)),
                        )
                    )
        return found
