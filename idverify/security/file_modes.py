"""Who may read what the server keeps on disk: the data directory and the files holding secrets.

Every start tightens the data directory to 0700 and what is in it (the embedded Redis' AOF, its
log, the generated keyring and signing key) to 0600, whatever an earlier build, a restore or a
careless ``cp`` left. A keyring or audit signing key file that other users can read is refused,
since anyone on the machine holding it could match every stored identity or sign tree heads;
``allow_readable_key_files`` accepts such a file with a warning (a mount the operator cannot
change). Group access is only warned about: Kubernetes gives a Secret's files to the pod's
``fsGroup``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from idverify.config import Settings
from idverify.domain.errors import ConfigError

log = logging.getLogger(__name__)
_OTHERS = stat.S_IRWXO
_GROUP = stat.S_IRWXG


def tighten_data_dir(data_dir: Path) -> None:
    """Makes the data directory 0700 and every file and folder in it the server's alone.

    Entries another user owns are left as they are (chmod would fail): they are reported.
    """
    owner = os.geteuid()
    for path in (data_dir, *data_dir.rglob("*")):
        try:
            status = path.lstat()
        except FileNotFoundError:
            continue  # removed meanwhile (a Redis rewrite's temporary file)
        if stat.S_ISLNK(status.st_mode) or stat.S_ISSOCK(status.st_mode):
            continue  # a link's mode is not its own; the socket is Redis' (700) inside a 0700 folder
        wanted = 0o700 if stat.S_ISDIR(status.st_mode) else 0o600
        if stat.S_IMODE(status.st_mode) & ~wanted == 0:
            continue
        if status.st_uid != owner:
            log.warning("%s belongs to another user: it keeps mode %o", path, stat.S_IMODE(status.st_mode))
            continue
        path.chmod(stat.S_IMODE(status.st_mode) & wanted)


def check_key_file(path: Path, setting: str, *, allow_readable: bool) -> None:
    """Refuses a file of secrets that users other than the owner and group can read or write.

    Raises:
        ConfigError: naming ``setting``, when others have access and ``allow_readable`` is off.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return  # generated on first start, with mode 0600
    if mode & _OTHERS:
        if not allow_readable:
            raise ConfigError(
                f"{setting}: {path} is readable by other users (mode {mode:04o}); make it 0600 "
                "or 0400, or set allow_readable_key_files = true"
            )
        log.warning("%s: %s is readable by other users (mode %04o), allowed by setting", setting, path, mode)
    elif mode & _GROUP:
        log.warning(
            "%s: %s is accessible by its group (mode %04o); make it 0600 or 0400", setting, path, mode
        )


def secure_data_and_keys(settings: Settings) -> None:
    """At start, before any worker: tightens the data directory and checks the key files.

    Raises:
        ConfigError: a keyring or signing key file that other users can read (see module doc).
    """
    tighten_data_dir(settings.data_dir)
    allow = settings.allow_readable_key_files
    if settings.keyring_file:
        check_key_file(Path(settings.keyring_file), "keyring_file", allow_readable=allow)
    if settings.audit_signing_key_file:
        check_key_file(Path(settings.audit_signing_key_file), "audit_signing_key_file", allow_readable=allow)
