"""``manifest.json``: what a backup holds, and the facts a verifier checks it against.

Files are named by their path inside the backup (``redis/idverify.rdb``, ``keyring.json``...),
each with its size and SHA-256, so a changed byte or a missing file is found before anything
is read from them. ``audit_logs`` gives each tenant's log size and RFC 6962 root in the
snapshot, computed from the entries themselves when the backup was made.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from idverify.security.durable_files import make_private_dirs

__all__ = [
    "FORMAT",
    "MANIFEST",
    "RDB",
    "FileEntry",
    "LogSummary",
    "Manifest",
    "ManifestError",
    "copy_private",
    "describe_file",
]

FORMAT = 1
MANIFEST = "manifest.json"
RDB = "redis/idverify.rdb"
_CHUNK = 1 << 20


def _version() -> str:
    try:
        return metadata.version("idverify")
    except metadata.PackageNotFoundError:
        return "unknown"


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or of another format."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a backup: its size and SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class LogSummary:
    """A tenant's audit log in a snapshot: its entries and their root (hex)."""

    size: int
    root: str


@dataclass
class Manifest:
    """The manifest of one backup.

    Attributes:
        created_ms: when the backup was made.
        redis: ``embedded`` (the RDB is in the backup) or ``external`` (the operator backs
            Redis up; the logs were read live).
        keyring: ``file`` (``keyring.json`` is in the backup) or ``environment`` (kept by
            whoever keeps ``IDVERIFY_KEYRING``).
        signing_key: ``file`` or ``environment``, likewise for the audit signing key.
        signing_key_id: the id of the key that signs the logs.
        files: path inside the backup -> size and digest.
        audit_logs: tenant -> its log in the snapshot.
        version: the idverify release that wrote the backup.
    """

    created_ms: int
    redis: str
    keyring: str
    signing_key: str
    signing_key_id: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    audit_logs: dict[str, LogSummary] = field(default_factory=dict)
    version: str = field(default_factory=_version)

    def write(self, folder: Path) -> None:
        """Writes ``manifest.json`` into ``folder``."""
        document: dict[str, Any] = {
            "format": FORMAT,
            "idverify_version": self.version,
            "created_ms": self.created_ms,
            "redis": self.redis,
            "keyring": self.keyring,
            "signing_key": self.signing_key,
            "signing_key_id": self.signing_key_id,
            "files": {p: {"size": e.size, "sha256": e.sha256} for p, e in sorted(self.files.items())},
            "audit_logs": {t: {"size": s.size, "root": s.root} for t, s in sorted(self.audit_logs.items())},
        }
        (folder / MANIFEST).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of the backup in ``folder``.

        Raises:
            ManifestError: when it is missing, not JSON, or not a manifest of this format.
        """
        path = folder / MANIFEST
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ManifestError(f"{MANIFEST} is missing: not a backup, or an incomplete one") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"{MANIFEST} cannot be read ({type(error).__name__})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ManifestError(f"{MANIFEST} is not a backup manifest of format {FORMAT}")
        try:
            return cls(
                created_ms=int(document["created_ms"]),
                redis=str(document["redis"]),
                keyring=str(document["keyring"]),
                signing_key=str(document["signing_key"]),
                signing_key_id=str(document["signing_key_id"]),
                files={
                    str(p): FileEntry(int(e["size"]), str(e["sha256"])) for p, e in document["files"].items()
                },
                audit_logs={
                    str(t): LogSummary(int(s["size"]), str(s["root"]))
                    for t, s in document["audit_logs"].items()
                },
                version=str(document.get("idverify_version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ManifestError(f"{MANIFEST} is malformed ({type(error).__name__})") from None


def describe_file(path: Path) -> FileEntry:
    """The size and SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(size, digest.hexdigest())


def copy_private(source: Path, target: Path) -> None:
    """Copies a file readable by its owner only (keys and snapshots are secrets), parents 0700."""
    make_private_dirs(target.parent)
    with source.open("rb") as reading, target.open("xb") as writing:
        target.chmod(0o600)
        shutil.copyfileobj(reading, writing, _CHUNK)
