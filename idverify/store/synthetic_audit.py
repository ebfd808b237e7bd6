"""Synthetic audit entries for tests and benchmarks, appended through the prelude's real ``audit()``.

The service never appends an entry without a state change; these helpers do, to fill a log
quickly (a million entries for ``bench/audit.py``) with exactly the bytes and indexes the
production scripts write, because they run the same Lua function. It registers its own script,
so it lives with the store's other scripts rather than with the audit log's readers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from idverify.store.connection import RedisClient
from idverify.store.keys import BucketKeys, TenantKeys

__all__ = ["SyntheticAppender", "SyntheticStager", "prelude_source"]

# KEYS: audit log. ARGV: a JSON list of [base, fields] pairs, appended in order.
_BODY = """
for _, pair in ipairs(cjson.decode(ARGV[1])) do
  audit(KEYS[1], pair[1], pair[2])
end
return redis.call('HGET', string.sub(KEYS[1], 1, -4) .. 'head', 'size')
"""

# KEYS: a bucket's stage stream. ARGV: a JSON list of [base, fields] pairs, staged in order.
_STAGE_BODY = """
local ids = {}
for i, pair in ipairs(cjson.decode(ARGV[1])) do
  ids[i] = audit_stage(KEYS[1], pair[1], pair[2])
end
return ids
"""


def prelude_source() -> str:
    """The Lua prelude every script starts with (its functions, such as ``audit()``, for a body after it)."""
    return (resources.files("idverify.store") / "lua" / "_prelude.lua").read_text(encoding="utf-8")


def _source(body: str = _BODY) -> str:
    return f"{prelude_source()}\n{body}"


class SyntheticAppender:
    """Appends made-up events to a tenant's log, many per round trip if asked."""

    def __init__(self, redis: RedisClient) -> None:
        self._script: AsyncScript = redis.register_script(_source())

    async def append(self, tenant: str, events: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> int:
        """Appends ``(base, fields)`` pairs as the prelude's ``audit(log, base, fields)`` would.

        Returns:
            The log's size afterwards.
        """
        pairs = [[dict(base), dict(fields)] for base, fields in events]
        size = await self._script(keys=[TenantKeys(tenant).audit_log()], args=[json.dumps(pairs)])
        return int(size)


class SyntheticStager:
    """Stages made-up events in a tenant's bucket streams, as a script in a bucket's slot would."""

    def __init__(self, redis: RedisClient) -> None:
        self._script: AsyncScript = redis.register_script(_source(_STAGE_BODY))

    async def stage(
        self, tenant: str, bucket: int, events: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[str]:
        """Stages ``(base, fields)`` pairs as the prelude's ``audit_stage(stage, base, fields)`` would.

        Returns:
            Each entry's stream id in the bucket's stream (with the bucket, its staged position).
        """
        pairs = [[dict(base), dict(fields)] for base, fields in events]
        ids = await self._script(keys=[BucketKeys(tenant, bucket).audit_stage()], args=[json.dumps(pairs)])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
