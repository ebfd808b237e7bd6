"""An in-memory ``flows.reindex.SealedRecords``: records holding sealed values as plain values.

Records are kept by :class:`~idverify.flows.reindex.SealedRecord` with their fields; pages come
in a fixed order, the cursor being the position after the page (0 at the end), and a record's
fields in pages of ``hash_page`` fields. ``reseal`` writes as ``reseal_verification.lua`` does.
``tests/unit/usecases/test_sealed_records_contract.py`` holds it and
``store.sealed_records.RedisSealedRecords`` to the same assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

from idverify.flows.reindex import RecordKind, ReindexCheckpoint, SealedRecord
from idverify.testing.unreachable import refuse_if_down

__all__ = ["MemorySealedRecords"]


class MemorySealedRecords:
    """Every tenant's records by kind; ``down`` makes every call raise StoreUnavailable."""

    def __init__(self, hash_page: int = 500) -> None:
        self.records_by_kind: dict[RecordKind, dict[SealedRecord, dict[str, str]]] = {
            kind: {} for kind in RecordKind
        }
        self.saved: ReindexCheckpoint | None = None
        self.down = False
        self._hash_page = hash_page

    def _reach(self) -> None:
        refuse_if_down(self.down)

    def put(self, record: SealedRecord, fields: Mapping[str, str]) -> None:
        """Stores the record's fields (the test's arrangement)."""
        self.records_by_kind[record.kind].setdefault(record, {}).update(fields)

    def fields(self, record: SealedRecord) -> dict[str, str]:
        """The record's fields as stored now."""
        return dict(self.records_by_kind[record.kind].get(record, {}))

    async def records(
        self, kind: RecordKind, *, cursor: int = 0, count: int = 500
    ) -> AsyncIterator[tuple[int, list[SealedRecord]]]:
        """Pages in (tenant, name) order."""
        ordered = sorted(self.records_by_kind[kind], key=lambda r: (r.tenant, r.name))
        while True:
            self._reach()
            page = ordered[cursor : cursor + count]
            cursor = cursor + count if cursor + count < len(ordered) else 0
            yield cursor, page
            if cursor == 0:
                return

    async def read_fields(
        self, records: Sequence[SealedRecord], fields: Sequence[str]
    ) -> list[list[str | None]]:
        """Each record's fields."""
        self._reach()
        return [[self.fields(record).get(name) for name in fields] for record in records]

    async def hash_pages(self, record: SealedRecord) -> AsyncIterator[dict[str, str]]:
        """The record's fields, ``hash_page`` at a time."""
        items = sorted(self.fields(record).items())
        for start in range(0, max(len(items), 1), self._hash_page):
            self._reach()
            yield dict(items[start : start + self._hash_page])

    async def reseal(self, record: SealedRecord, changes: Mapping[str, tuple[str, str]]) -> bool:
        """Writes as ``reseal_verification.lua`` does: only if every field holds what was read."""
        self._reach()
        stored = self.records_by_kind[record.kind].get(record)
        if stored is None or any(stored.get(name, "") != old for name, (old, _) in changes.items()):
            return False
        stored.update({name: new for name, (_, new) in changes.items()})
        return True

    async def checkpoint(self) -> ReindexCheckpoint | None:
        """The checkpoint saved last."""
        self._reach()
        return self.saved

    async def save_checkpoint(self, checkpoint: ReindexCheckpoint) -> None:
        """Saves the checkpoint."""
        self._reach()
        self.saved = checkpoint
