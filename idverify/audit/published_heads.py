"""The last tree head each tenant's log published, kept in the data directory, outside Redis.

A Redis snapshot restored from a backup holds the log as it was then; heads handed out since
then commit to entries the snapshot lacks. This file (``audit-heads.json``, mode 0600) remembers
the newest head handed out per tenant, so that a server finding its log behind it can refuse to
sign a fork (``idverify.audit.rollback``). It also keeps what such a server found (the log's size
then), until an operator acknowledges the loss (``idverify audit acknowledge-rollback``).

Every worker of a server records here: each write takes ``audit-heads.lock`` (``flock``), reads
the file again, keeps the larger head of each tenant and replaces the file atomically, so
workers racing each other never lose a head, and a crash leaves the old file or the new one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idverify.audit.checkpoint import CheckpointError, SignedHead, parse_checkpoint
from idverify.security.durable_files import write_durable_file

__all__ = [
    "HEADS_FILE",
    "HeadsFileError",
    "PublishedHead",
    "PublishedHeads",
    "merge_heads_files",
    "read_heads_file",
    "write_heads_file",
]

HEADS_FILE = "audit-heads.json"
_LOCK_FILE = "audit-heads.lock"
_FORMAT = 1
_MODE = 0o600


class HeadsFileError(ValueError):
    """The heads file is not one this code wrote (hand-edited or damaged)."""


@dataclass(frozen=True, slots=True)
class PublishedHead:
    """A tenant's newest published head, and the rollback found against it, if any.

    Attributes:
        signed: the head, as handed out (its checkpoint names size, root and time).
        found_size: the log's size when a server found it behind ``signed``; -1 when the log
            did not extend the head at all; None while no rollback was found.
    """

    signed: SignedHead
    found_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as stored in the file."""
        record: dict[str, Any] = {
            "checkpoint": base64.b64encode(self.signed.checkpoint).decode("ascii"),
            "key_id": self.signed.key_id,
            "signature": base64.b64encode(self.signed.signature).decode("ascii"),
        }
        if self.found_size is not None:
            record["rolled_back_to"] = self.found_size
        return record

    @classmethod
    def from_json(cls, record: object) -> PublishedHead:
        """A record read from the file.

        Raises:
            HeadsFileError: when it is not a record this code wrote.
        """
        try:
            assert isinstance(record, dict)  # noqa: S101 - turned into HeadsFileError below
            head = parse_checkpoint(base64.b64decode(record["checkpoint"], validate=True))
            signature = base64.b64decode(record["signature"], validate=True)
            found = record.get("rolled_back_to")
            assert found is None or (isinstance(found, int) and found >= -1)  # noqa: S101
            return cls(SignedHead(head, str(record["key_id"]), signature), found)
        except (AssertionError, KeyError, TypeError, binascii.Error, CheckpointError) as error:
            raise HeadsFileError(f"{HEADS_FILE}: a record is malformed ({type(error).__name__})") from None


class PublishedHeads:
    """The heads file of one data directory, and its copies in the configured witnesses.

    A witness is a directory outside the data directory and outside any backup (another
    machine's mount, shared by every replica): it holds an ``audit-heads.json`` of its own,
    written with the data directory's. Restoring a backup brings an old data directory back;
    it cannot bring back an old witness, so the newest head published still stands against the
    restored log. Replicas on several machines each know only the heads they handed out
    themselves; a shared witness knows every replica's.

    Reads merge every file (per tenant the largest head, a recorded rollback winning at equal
    heads) and are cached by each file's identity (inode, size, modification time), so a check
    before every signature costs a ``stat`` per file, and a change by another worker, another
    replica or ``acknowledge-rollback`` is seen at once. Writes take every file's lock (the data
    directory's first, then the witnesses' in configured order: one order everywhere, so two
    writers never wait on each other), apply the change to the merged records and write them to
    every file: a witness that cannot be written stops the head from being handed out, like the
    data directory would.
    """

    def __init__(self, data_dir: Path, witnesses: Sequence[str | Path] = ()) -> None:
        self._files = [_HeadsFile(data_dir), *(_HeadsFile(Path(w)) for w in witnesses)]
        self.path = self._files[0].path

    def read(self) -> dict[str, PublishedHead]:
        """Every tenant's record, merged over the files (empty when none exists yet).

        Raises:
            HeadsFileError: when a file is not one this code wrote.
            OSError: when one cannot be read.
        """
        if len(self._files) == 1:
            return self._files[0].read()
        return merge_heads_files(*(heads_file.read() for heads_file in self._files))

    def get(self, tenant: str) -> PublishedHead | None:
        """The tenant's record, if any (see :meth:`read`)."""
        return self.read().get(tenant)

    def record(self, tenant: str, signed: SignedHead) -> bool:
        """Records a head about to be handed out, unless a file holds a larger one or a rollback.

        Returns:
            Whether the files changed.

        Raises:
            OSError: when a file cannot be written (the head must not be handed out then).
        """

        def change(records: dict[str, PublishedHead]) -> bool:
            current = records.get(tenant)
            if current is not None and (
                current.found_size is not None or current.signed.head.size >= signed.head.size
            ):
                return False
            records[tenant] = PublishedHead(signed)
            return True

        return self._update(change)

    def mark_rolled_back(self, tenant: str, checkpoint: bytes, found_size: int) -> bool:
        """Keeps what a server found: the log at ``found_size`` behind the head of ``checkpoint``.

        The first finding stays: later ones see a log that has grown since (new entries on the
        restored one) and would no longer say where the loss begins.

        Returns:
            Whether the files changed.
        """

        def change(records: dict[str, PublishedHead]) -> bool:
            current = records.get(tenant)
            if current is None or current.signed.checkpoint != checkpoint or current.found_size is not None:
                return False
            records[tenant] = PublishedHead(current.signed, found_size)
            return True

        return self._update(change)

    def acknowledge(self, tenant: str, checkpoint: bytes) -> bool:
        """Forgets the head of ``checkpoint`` and its rollback: the next head signed is recorded afresh.

        Returns:
            Whether the files changed (False: the record is another head by now).
        """

        def change(records: dict[str, PublishedHead]) -> bool:
            current = records.get(tenant)
            if current is None or current.signed.checkpoint != checkpoint:
                return False
            del records[tenant]
            return True

        return self._update(change)

    def _update(self, change: Callable[[dict[str, PublishedHead]], bool]) -> bool:
        with contextlib.ExitStack() as locks:
            for heads_file in self._files:
                locks.enter_context(heads_file.locked())
            per_file = [heads_file.read(fresh=True) for heads_file in self._files]
            records = merge_heads_files(*per_file)
            if not change(records):
                return False
            for heads_file, held in zip(self._files, per_file, strict=True):
                # A file already holding the result is left alone: an acknowledged rollback
                # must leave no stale head behind in any file, a new head must reach all.
                if held != records:
                    write_heads_file(heads_file.path, records)
            return True


class _HeadsFile:
    """One ``audit-heads.json`` and its lock file, read through a cache of its identity."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / HEADS_FILE
        self._lock_path = directory / _LOCK_FILE
        self._cached: tuple[tuple[int, int, int], dict[str, PublishedHead]] | None = None

    def read(self, *, fresh: bool = False) -> dict[str, PublishedHead]:
        if fresh:
            self._cached = None
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return {}
        identity = (status.st_ino, status.st_size, status.st_mtime_ns)
        if self._cached is not None and self._cached[0] == identity:
            return self._cached[1]
        records = _parse(self.path.read_bytes())
        self._cached = (identity, records)
        return records

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


def _parse(data: bytes) -> dict[str, PublishedHead]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HeadsFileError(f"{HEADS_FILE} is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise HeadsFileError(f"{HEADS_FILE}: not format {_FORMAT}")
    tenants = document.get("tenants")
    if not isinstance(tenants, dict):
        raise HeadsFileError(f"{HEADS_FILE}: no tenants")
    return {str(tenant): PublishedHead.from_json(record) for tenant, record in tenants.items()}


def read_heads_file(path: Path) -> dict[str, PublishedHead]:
    """The records of a heads file anywhere (a backup's, an old data directory's).

    Raises:
        HeadsFileError: when it is not one this code wrote.
        OSError: when it cannot be read.
    """
    return _parse(path.read_bytes())


def write_heads_file(path: Path, records: dict[str, PublishedHead]) -> None:
    """Replaces ``path`` atomically with ``records`` (0600, synced with its directory).

    Raises:
        OSError: when it cannot be written.
    """
    text = json.dumps(
        {"format": _FORMAT, "tenants": {t: records[t].to_json() for t in sorted(records)}}, indent=1
    )
    write_durable_file(path, (text + "\n").encode("utf-8"), overwrite=True)


def merge_heads_files(*sources: dict[str, PublishedHead]) -> dict[str, PublishedHead]:
    """Per tenant, the largest head of any source (a recorded rollback wins at equal heads).

    A restore takes the backup's file and the newest one the operator still has: the newest
    head published must survive the restore, or the rollback would go unnoticed.
    """
    merged: dict[str, PublishedHead] = {}
    for records in sources:
        for tenant, record in records.items():
            current = merged.get(tenant)
            if current is None or _rank(record) > _rank(current):
                merged[tenant] = record
    return merged


def _rank(record: PublishedHead) -> tuple[int, int, int]:
    head = record.signed.head
    return (head.size, head.timestamp_ms, record.found_size is not None)
