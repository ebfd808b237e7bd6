"""Start-up guard: a lost keyring or audit signing key is refused, never silently replaced.

Redis keeps a key-check value per key version (``iv1:{global}:keycheck``: an HMAC of a fixed
label under each pepper and wrapping key, and the pinned pseudonym pepper's id) and the id of
the key that signs the audit log (``iv1:{global}:audit-key``). A server refuses to start when
the keyring it was given lacks a recorded version or holds another secret for one, and when its
signing key is not the recorded one. A keyring or signing key is generated in the data
directory only when the store holds no data: a store "holds data" when it has a key-check
record, the bootstrap marker or the client index, or when a bounded SCAN finds a tenant's key
(a store written by a build that kept no key-check values).

The guard reads and writes those records through :class:`KeyCheckStore`, the port declared here;
``store.key_checks.RedisKeyChecks`` implements it over Redis, and every caller passes the port.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from idverify.audit.checkpoint import key_id_for
from idverify.audit.signing_key import DEFAULT_KEY_FILE, SIGNING_KEY_ENV, load_signing_key
from idverify.config import Settings
from idverify.domain.errors import ConfigError, StoreUnavailable
from idverify.privacy.keyring import Keyring, ensure_keyring_file, load_keyring

__all__ = [
    "KEYRING_ENV",
    "KeyCheckStore",
    "check_signing_key",
    "forget_key_version",
    "key_check_values",
    "open_keyring",
    "record_key_versions",
    "record_signing_key",
    "recorded_signing_key",
    "store_holds_data",
]

KEYRING_ENV = "IDVERIFY_KEYRING"

_LABEL = b"idverify key check v1"
_CHECK_TENANT = "_keycheck"
_CHECK_PURPOSE = "keycheck"
_PSEUDONYM_FIELD = "pseudonym"
_RESTORE = (
    "restore the keyring that wrote the data (the file from a backup, or the same "
    f"{KEYRING_ENV} or keyring_file); nothing was changed"
)

log = logging.getLogger("idverify.keys")


class KeyCheckStore(Protocol):
    """The records the guard keeps: key-check values, the signing key's id, signs of data.

    Every method may raise StoreUnavailable when the store cannot be reached.
    """

    async def holds_markers(self) -> bool:
        """Whether a key-check record, the bootstrap marker or the client index exists."""
        ...

    async def any_tenant_key(self) -> bool:
        """Whether a bounded search finds any tenant's key."""
        ...

    async def any_audit_log(self) -> bool:
        """Whether a bounded search finds any tenant's audit log."""
        ...

    async def recorded_values(self) -> dict[str, str]:
        """The key-check fields recorded so far (``p:<v>``, ``w:<v>``, ``pseudonym``)."""
        ...

    async def add_values(self, values: Mapping[str, str]) -> None:
        """Records key-check fields."""
        ...

    async def forget_version(self, version: str) -> None:
        """Removes a version's ``p:`` and ``w:`` fields."""
        ...

    async def signing_key(self) -> str | None:
        """The id of the recorded signing key, if any."""
        ...

    async def record_first_signing_key(self, key_id: str) -> None:
        """Records ``key_id`` unless a signing key is recorded already."""
        ...

    async def replace_signing_key(self, key_id: str) -> str | None:
        """Records ``key_id``; returns the id it replaces."""
        ...


def key_check_values(keyring: Keyring) -> dict[str, str]:
    """The key-check fields of ``keyring``: ``p:<version>``, ``w:<version>`` and ``pseudonym``.

    Each value is a truncated HMAC of a fixed label, so it shows whether a secret is the same
    without revealing anything about it.
    """
    values = {
        f"p:{version}": keyring.mac(_CHECK_TENANT, _CHECK_PURPOSE, _LABEL, pepper_version=version).hex()[:32]
        for version in keyring.pepper_versions
    }
    for version in keyring.wrapping_versions:
        values[f"w:{version}"] = hmac.new(keyring.wrapping_key(version), _LABEL, hashlib.sha256).hexdigest()[
            :32
        ]
    values[_PSEUDONYM_FIELD] = keyring.pseudonym_pepper
    return values


async def store_holds_data(checks: KeyCheckStore) -> bool:
    """Whether the store has idverify data (see the module docstring).

    Raises:
        StoreUnavailable: Redis is down.
    """
    return await checks.holds_markers() or await checks.any_tenant_key()


def _keyring_source(settings: Settings, env: Mapping[str, str]) -> tuple[str, Keyring | None, Path | None]:
    """Where the keyring comes from, the keyring when configured, else the default file's path.

    Raises:
        ConfigError: a configured keyring cannot be read or is invalid.
    """
    if env.get(KEYRING_ENV):
        return KEYRING_ENV, load_keyring(text=env[KEYRING_ENV]), None
    if settings.keyring_file:
        return f"keyring_file {settings.keyring_file}", load_keyring(path=Path(settings.keyring_file)), None
    path = settings.data_dir / "keyring.json"
    return f"the generated keyring {path}", None, path


async def open_keyring(
    settings: Settings, checks: KeyCheckStore, environ: Mapping[str, str] | None = None
) -> Keyring:
    """The keyring from ``IDVERIFY_KEYRING``, ``keyring_file`` or ``<data_dir>/keyring.json``, checked.

    ``keyring.json`` is generated only over an empty store. The keyring must open what the store
    holds; its new versions are recorded. A store that cannot be reached is checked at the next
    start (a warning says so), except that no keyring is generated without the check.

    Raises:
        ConfigError: the keyring cannot be read, is missing over data, or cannot open the data.
    """
    env = os.environ if environ is None else environ
    source, keyring, default_path = _keyring_source(settings, env)
    try:
        if keyring is None:
            assert default_path is not None  # noqa: S101 - set whenever no keyring was configured
            if not default_path.exists() and await store_holds_data(checks):
                raise ConfigError(
                    f"keyring file {default_path} is missing, but Redis holds data written under a "
                    f"keyring; a new one would make all of it unreadable: {_RESTORE}, or set "
                    f"{KEYRING_ENV} or keyring_file to it"
                )
            keyring = ensure_keyring_file(default_path)
        await record_key_versions(checks, keyring, source)
    except StoreUnavailable:
        if keyring is None:
            msg = f"Redis cannot be reached to check that it holds no data before generating {source}"
            raise ConfigError(msg) from None
        log.warning("redis not reachable at start-up; the keyring is checked against it at the next start")
    return keyring


async def record_key_versions(checks: KeyCheckStore, keyring: Keyring, source: str) -> None:
    """Checks ``keyring`` against the recorded key-check values, then records its new versions.

    Raises:
        ConfigError: a recorded version is missing from ``keyring`` or has another secret there.
        StoreUnavailable: Redis is down.
    """
    expected = key_check_values(keyring)
    recorded = await checks.recorded_values()
    missing = sorted(field for field in recorded if field not in expected)
    other = sorted(
        field
        for field, value in recorded.items()
        if field in expected and not hmac.compare_digest(value.encode(), expected[field].encode())
    )
    if missing or other:
        named = [f"{field.partition(':')[2] or field} (missing)" for field in missing]
        named += [f"{field.partition(':')[2] or field} (another secret)" for field in other]
        raise ConfigError(
            f"{source} cannot open the data in Redis: key versions {', '.join(named)}; {_RESTORE}"
        )
    new = {field: value for field, value in expected.items() if field not in recorded}
    if new:
        await checks.add_values(new)


async def forget_key_version(checks: KeyCheckStore, version: str) -> None:
    """Removes a retired version's key-check value (before the keyring file loses the version).

    Raises:
        StoreUnavailable: Redis is down.
    """
    await checks.forget_version(version)


def _signing_key_source(settings: Settings, env: Mapping[str, str]) -> tuple[str, Path | None]:
    if env.get(SIGNING_KEY_ENV):
        return SIGNING_KEY_ENV, None
    if settings.audit_signing_key_file:
        return f"audit_signing_key_file {settings.audit_signing_key_file}", None
    path = settings.data_dir / DEFAULT_KEY_FILE
    return f"the generated audit signing key {path}", path


async def check_signing_key(
    settings: Settings, checks: KeyCheckStore, environ: Mapping[str, str] | None = None
) -> None:
    """Refuses a signing key other than the one that signed the log; records the first one.

    Raises:
        ConfigError: the generated key is missing while a log exists, or the configured key is
            not the recorded one; a new key is an explicit ``idverify audit rotate-key``.
    """
    env = os.environ if environ is None else environ
    source, default_path = _signing_key_source(settings, env)
    rotate = "or make the new key the log's explicitly with `idverify audit rotate-key`"
    try:
        recorded = await checks.signing_key()
        if (
            default_path is not None
            and not default_path.exists()
            and (recorded is not None or await checks.any_audit_log())
        ):
            raise ConfigError(
                f"audit signing key {default_path} is missing, but the audit log in Redis is signed "
                f"by key {recorded or 'of an earlier start'}: restore the file (or set "
                f"audit_signing_key_file or {SIGNING_KEY_ENV} to that key), {rotate}"
            )
        key_id = key_id_for(
            load_signing_key(settings.data_dir, settings.audit_signing_key_file, env).public_key()
        )
        if recorded is None:
            await checks.record_first_signing_key(key_id)
        elif recorded != key_id:
            raise ConfigError(
                f"{source} is key {key_id}, but the audit log in Redis is signed by key {recorded}: "
                f"use that key, {rotate}"
            )
    except StoreUnavailable:
        log.warning("redis not reachable at start-up; the audit signing key is checked at the next start")


async def recorded_signing_key(checks: KeyCheckStore) -> str | None:
    """The id of the key recorded as the log's signing key, if one is.

    Raises:
        StoreUnavailable: Redis is down.
    """
    return await checks.signing_key()


async def record_signing_key(checks: KeyCheckStore, key_id: str) -> str | None:
    """Makes ``key_id`` the log's recorded signing key; returns the one it replaces.

    Raises:
        StoreUnavailable: Redis is down.
    """
    return await checks.replace_signing_key(key_id)
