"""A leaving tenant's audit log written out for it, up to its final head, and verified.

The export is the file ``idverify audit export`` writes (its head line, then one line per entry
with its stored leaf hash) beside the public key that verifies it; each file takes its place
whole once written, and the log's file is verified before ``flows.tenant_removal`` erases
anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from idverify.audit.checkpoint import SignedHead, load_public_key
from idverify.audit.export import VerifyReport, entry_line, head_line, verify_export
from idverify.audit.integrator import BATCH
from idverify.domain.errors import FailedPrecondition
from idverify.flows.audit import origin_of

__all__ = ["LogEntries", "LogSigner", "export_log", "export_paths"]


class LogEntries(Protocol):
    """A tenant's log as stored (``flows.tenant_removal.RemovalStore`` is one)."""

    async def entries(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's entries, as stored; None where there is none."""
        ...

    async def leaf_hashes(self, tenant: str, indices: Sequence[int]) -> list[bytes | None]:
        """The log's stored leaf hashes; None where there is none."""
        ...


class LogSigner(Protocol):
    """The audit log's signing (``flows.audit.AuditFlow`` is one)."""

    @property
    def public_key_pem(self) -> str:
        """The PEM of the key that verifies the log's heads."""
        ...

    async def signed_head(self, tenant: str) -> SignedHead:
        """A signed head of everything appended so far."""
        ...


def export_paths(directory: Path, tenant: str) -> tuple[Path, Path]:
    """Where the export of a tenant's log and the key that verifies it are written."""
    return directory / f"audit-{tenant}.jsonl", directory / "audit-public-key.pem"


async def export_log(
    log: LogEntries,
    signer: LogSigner,
    tenant: str,
    head: SignedHead,
    directory: Path,
    *,
    progress: Callable[[int], object],
) -> Path:
    """Writes the log up to ``head`` and the public key into ``directory``, and verifies it.

    Returns:
        The export file.

    Raises:
        FailedPrecondition: the written export does not verify (``EXPORT_DOES_NOT_VERIFY``).
        OSError: the directory or files cannot be written.
        StoreUnavailable: when Redis cannot be reached.
    """
    log_path, key_path = export_paths(directory, tenant)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    with _replacing(log_path) as out:
        out.write(head_line(head))
        for start in range(0, head.head.size, BATCH):
            indices = list(range(start, min(start + BATCH, head.head.size)))
            entries = await log.entries(tenant, indices)
            hashes = await log.leaf_hashes(tenant, indices)
            for index, entry, stored in zip(indices, entries, hashes, strict=True):
                if entry is None or stored is None:
                    raise FailedPrecondition(
                        f"audit entry {index} of tenant {tenant} is missing from the store",
                        reason="EXPORT_DOES_NOT_VERIFY",
                    )
                out.write(entry_line(index, entry, stored))
            progress(len(indices))
    pem = signer.public_key_pem.encode("ascii")
    with _replacing(key_path) as out:
        out.write(pem)
    report = await asyncio.to_thread(_verify_file, log_path, pem, origin_of(tenant))
    if not report.ok:
        raise FailedPrecondition(
            f"the export of tenant {tenant}'s log does not verify: {report.problem}",
            reason="EXPORT_DOES_NOT_VERIFY",
        )
    return log_path


def _verify_file(path: Path, pem: bytes, origin: str) -> VerifyReport:
    with path.open("rb") as handle:
        return verify_export(handle, load_public_key(pem), expected_origin=origin)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file that takes ``path``'s place whole once written (a stopped run leaves no half file)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            yield out
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    finally:
        Path(temporary).unlink(missing_ok=True)
