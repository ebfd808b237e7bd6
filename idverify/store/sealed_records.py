"""The records holding sealed values in Redis, for ``flows.reindex``.

Each kind of record is found by a SCAN of its key pattern across tenants (``iv1:{t:*}:<kind>:*``;
the account ids older servers kept for events in a tenant's one hash ``iv1:{t:*}:events:acct``
are read by HSCAN, a page at a time, until the map is empty), its fields read by HMGETs
pipelined per page, and its fields re-sealed by ``reseal_verification.lua``, which writes only if
each still holds what was read. The reindex's checkpoint is the hash ``iv1:{global}:reindex``
(``target``, ``phase``, ``cursor``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

from idverify.flows.reindex import RecordKind, ReindexCheckpoint, SealedRecord
from idverify.store.connection import as_text, translate_errors
from idverify.store.keys import PREFIX, GlobalKeys
from idverify.store.scan import scan_pages
from idverify.store.scripted_store import ScriptedStore

__all__ = ["RedisSealedRecords", "split_key"]

# How many fields of a tenant's event account ids one HSCAN asks for.
_EVENT_ACCOUNTS_PAGE: Final = 500
_PATTERNS: Final = {
    RecordKind.IDENTITY: f"{PREFIX}:{{t:*}}:id:*",
    RecordKind.VERIFICATION: f"{PREFIX}:{{t:*}}:vf:*",
    RecordKind.ACCOUNT: f"{PREFIX}:{{t:*}}:acct:*",
    RecordKind.WEBHOOK: f"{PREFIX}:{{t:*}}:webhook:*",
    RecordKind.EVENT_ACCOUNTS: f"{PREFIX}:{{t:*}}:events:acct",
}


def split_key(key: bytes | str) -> tuple[str, str, str]:
    """``iv1:{t:<tenant>}:<kind>:<rest>`` -> (tenant, kind, rest).

    Raises:
        ValueError: the key is not a tenant key.
    """
    text = as_text(key)
    head, sep, tail = text.partition("}:")
    if not sep or not head.startswith(f"{PREFIX}:{{t:"):
        raise ValueError("not a tenant key")
    kind, _, rest = tail.partition(":")
    return head[len(PREFIX) + 4 :], kind, rest


def _key(record: SealedRecord) -> str:
    """The key :func:`split_key` split."""
    return f"{PREFIX}:{{t:{record.tenant}}}:{record.kind.value}:{record.name}"


class RedisSealedRecords(ScriptedStore):
    """``flows.reindex.SealedRecords`` over Redis."""

    async def records(
        self, kind: RecordKind, *, cursor: int = 0, count: int = 500
    ) -> AsyncIterator[tuple[int, list[SealedRecord]]]:
        """SCAN pages of the kind's pattern (on a Cluster, of every primary, the cursor always 0)."""
        async for next_cursor, page in scan_pages(self._redis, _PATTERNS[kind], cursor=cursor, count=count):
            records = []
            for key in page:
                tenant, _, rest = split_key(key)
                records.append(SealedRecord(kind, tenant, rest))
            yield next_cursor, records

    async def read_fields(
        self, records: Sequence[SealedRecord], fields: Sequence[str]
    ) -> list[list[str | None]]:
        """An HMGET per record, pipelined: one round trip."""
        async with translate_errors(), self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.hmget(_key(record), list(fields))
            rows = await pipe.execute()
        return [[None if value is None else as_text(value) for value in row] for row in rows]

    async def hash_pages(self, record: SealedRecord) -> AsyncIterator[dict[str, str]]:
        """HSCAN of the record, a page at a time."""
        key = _key(record)
        cursor = 0
        while True:
            async with translate_errors():
                cursor, values = await self._redis.hscan(key, cursor, count=_EVENT_ACCOUNTS_PAGE)
            assert isinstance(values, dict)  # noqa: S101 - HSCAN answers a mapping
            yield {as_text(k): as_text(v) for k, v in values.items()}
            if int(cursor) == 0:
                return

    async def reseal(self, record: SealedRecord, changes: Mapping[str, tuple[str, str]]) -> bool:
        """Runs ``reseal_verification.lua`` on the record: True when it answered OK."""
        result = await self._scripts.run(
            "reseal_verification",
            [_key(record)],
            [json.dumps({name: [old, new] for name, (old, new) in changes.items()})],
        )
        return as_text(result[0]) == "OK"

    async def checkpoint(self) -> ReindexCheckpoint | None:
        """HGETALL of the checkpoint."""
        async with translate_errors():
            raw = await self._redis.hgetall(GlobalKeys.REINDEX_CHECKPOINT)
        saved = {as_text(k): as_text(v) for k, v in raw.items()}
        if not saved:
            return None
        return ReindexCheckpoint(
            saved.get("target", ""), saved.get("phase", ""), int(saved.get("cursor") or 0)
        )

    async def save_checkpoint(self, checkpoint: ReindexCheckpoint) -> None:
        """HSET of the checkpoint's three fields."""
        async with translate_errors():
            await self._redis.hset(
                GlobalKeys.REINDEX_CHECKPOINT,
                mapping={"target": checkpoint.target, "phase": checkpoint.phase, "cursor": checkpoint.cursor},
            )
