"""The keyring: versioned secret peppers and AES-SIV wrapping keys, and the HKDF subkeys derived from them.

Every keyed hash in idverify goes through a per-tenant, per-purpose subkey from here, so records of two
tenants (or two purposes) can never be joined, even by someone who holds the whole database.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from idverify.domain.errors import ConfigError
from idverify.privacy.hmac_batch import hmac_sha256_each
from idverify.privacy.pseudonym_memo import MAX_PSEUDONYM_MEMOS, PseudonymMemo
from idverify.security.durable_files import write_durable_file

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = [
    "DEPLOYMENT_LABEL",
    "KEYRING_ENV_VAR",
    "PEPPER_MIN_BYTES",
    "PSEUDONYM_BYTES",
    "SUBKEY_BYTES",
    "WRAPPING_KEY_BYTES",
    "Keyring",
    "LiveKeyring",
    "UnknownKeyVersion",
    "create_keyring_file",
    "ensure_keyring_file",
    "load_keyring",
    "save_keyring_file",
]

_log = logging.getLogger(__name__)

KEYRING_ENV_VAR: Final = "IDVERIFY_KEYRING"
"""Environment variable that may hold the keyring JSON (the config layer reads it, not this module)."""

DEPLOYMENT_LABEL: Final = "*deployment"
"""The tenant label of deployment-wide pseudonyms (a phone's counters shared by all tenants).

No tenant can have it: tenant names are lower-case letters, digits, ``-`` and ``_``
(``domain.tenants.valid_tenant``), so its subkeys are never any tenant's.
"""

PEPPER_MIN_BYTES: Final = 32
WRAPPING_KEY_BYTES: Final = 64  # AES-256-SIV: two 256-bit halves (S2V MAC key + CTR key)
SUBKEY_BYTES: Final = 32
PSEUDONYM_BYTES: Final = 16

_PEPPER_MAX_BYTES: Final = 1024
_NEW_PEPPER_BYTES: Final = 32
_MAX_KEYRING_FILE_BYTES: Final = 1 << 20
# Plain numbered ids keep the next version obvious and keep ids free of the separators that the
# PHC text (``$``) and the sealed header (``:``) rely on.
_PEPPER_ID: Final = re.compile(r"p[1-9][0-9]{0,5}")
_WRAPPING_ID: Final = re.compile(r"w[1-9][0-9]{0,5}")
_SAFE_ID: Final = re.compile(r"[a-z][0-9]{1,6}")
_FIELD_NAME: Final = re.compile(r"[a-z_]{1,40}")
_DOCUMENT_KEYS: Final = frozenset(
    {"peppers", "pepper_current", "pseudonym_pepper", "wrapping_keys", "wrapping_current"}
)
_HKDF_SALT: Final = b"idverify/keyring/v1"
_HKDF_LABEL: Final = b"idverify/subkey/v1"
# Tenants and purposes are few (tenants come from authenticated principals, purposes are code
# constants); the bound only guards against a caller that feeds request data in as a purpose.
_SUBKEY_CACHE_MAX: Final = 4096
_UNPARSABLE: Final = object()


class UnknownKeyVersion(LookupError):
    """A pepper or wrapping-key version is not in the keyring (retired, or never added)."""


def _length_prefixed(part: bytes) -> bytes:
    # A fixed-width length in front of each field makes the concatenation injective, so
    # ("ab", "c") and ("a", "bc") can never derive the same subkey.
    return len(part).to_bytes(4, "big") + part


def _version_number(version: str) -> int:
    return int(version[1:])


class Keyring:
    """Versioned peppers and wrapping keys; the only holder of idverify's secrets.

    Peppers seed the HKDF subkeys (identity index salt, name binding, pseudonyms, rate-limit keys);
    wrapping keys seal stored index values with AES-SIV. Each kind has one write version (the
    current one) and any number of older versions that stay readable until every record moved on.
    Instances are immutable: the ``with_*`` methods return a new keyring.

    Two peppers matter. The *current* pepper salts new identity indexes, which move to it lazily
    (the next time their identity is presented). The *pseudonym* pepper is pinned for the life of
    the keyring: pseudonyms, token hashes, rate-limit and challenge keys derive from it by
    default, because they are names of records and cannot move without the plaintext they hide
    (an account id is never stored), so a pepper rotation must not change them.

    ``repr`` and ``str`` name versions only, never secrets.
    """

    __slots__ = (
        "_pepper_current",
        "_peppers",
        "_pseudonym_memos",
        "_pseudonym_pepper",
        "_subkeys",
        "_wrapping_current",
        "_wrapping_keys",
    )

    def __init__(
        self,
        *,
        peppers: Mapping[str, bytes],
        pepper_current: str,
        wrapping_keys: Mapping[str, bytes],
        wrapping_current: str,
        pseudonym_pepper: str | None = None,
    ) -> None:
        """Build and validate a keyring.

        Args:
            peppers: pepper version id (``p1``) -> secret of at least 32 random bytes.
            pepper_current: the pepper version new identity indexes are written under.
            wrapping_keys: wrapping-key version id (``w1``) -> 64-byte AES-SIV key.
            wrapping_current: the wrapping-key version new values are sealed under.
            pseudonym_pepper: the pinned pepper of pseudonyms and other keyed names; the current
                pepper when None (a keyring written before pinning existed used only that one).

        Raises:
            ConfigError: a version id is malformed, a secret has the wrong length, two versions
                share a secret, or a current version is missing. The message never contains
                key material.

        """
        self._peppers = _validated_secrets(
            peppers, kind="pepper", pattern=_PEPPER_ID, min_len=PEPPER_MIN_BYTES, max_len=_PEPPER_MAX_BYTES
        )
        self._wrapping_keys = _validated_secrets(
            wrapping_keys,
            kind="wrapping key",
            pattern=_WRAPPING_ID,
            min_len=WRAPPING_KEY_BYTES,
            max_len=WRAPPING_KEY_BYTES,
        )
        if pepper_current not in self._peppers:
            raise ConfigError("keyring: pepper_current does not name a pepper in the keyring")
        pinned = pepper_current if pseudonym_pepper is None else pseudonym_pepper
        if pinned not in self._peppers:
            raise ConfigError("keyring: pseudonym_pepper does not name a pepper in the keyring")
        self._pseudonym_pepper = pinned
        if wrapping_current not in self._wrapping_keys:
            raise ConfigError("keyring: wrapping_current does not name a wrapping key in the keyring")
        self._pepper_current = pepper_current
        self._wrapping_current = wrapping_current
        self._subkeys: dict[tuple[str, str, str], bytes] = {}
        self._pseudonym_memos: dict[tuple[str, str], PseudonymMemo] = {}

    @classmethod
    def generate(cls) -> Keyring:
        """Return a fresh keyring with one pepper (``p1``) and one wrapping key (``w1``)."""
        return cls(
            peppers={"p1": secrets.token_bytes(_NEW_PEPPER_BYTES)},
            pepper_current="p1",
            wrapping_keys={"w1": secrets.token_bytes(WRAPPING_KEY_BYTES)},
            wrapping_current="w1",
        )

    @property
    def pepper_current(self) -> str:
        """The pepper version new records are written under."""
        return self._pepper_current

    @property
    def wrapping_current(self) -> str:
        """The wrapping-key version new values are sealed under."""
        return self._wrapping_current

    @property
    def pseudonym_pepper(self) -> str:
        """The pinned pepper version that pseudonyms and other keyed names derive from."""
        return self._pseudonym_pepper

    @property
    def pepper_versions(self) -> tuple[str, ...]:
        """Every readable pepper version, current first, then newest to oldest."""
        return _current_first(self._peppers, self._pepper_current)

    @property
    def wrapping_versions(self) -> tuple[str, ...]:
        """Every readable wrapping-key version, current first, then newest to oldest."""
        return _current_first(self._wrapping_keys, self._wrapping_current)

    def subkey(self, tenant: str, purpose: str, pepper_version: str | None = None) -> bytes:
        """Return the 32-byte subkey of ``tenant`` for ``purpose`` under a pepper version.

        Args:
            tenant: the tenant id, from the authenticated principal.
            purpose: a code constant naming what the key is for (``index``, ``name``, ...).
            pepper_version: the pepper to derive from; the pinned pseudonym pepper when None.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.

        """
        version = self._pseudonym_pepper if pepper_version is None else pepper_version
        cache_key = (version, tenant, purpose)
        cached = self._subkeys.get(cache_key)
        if cached is not None:
            return cached
        if not tenant or not purpose:
            raise ValueError("subkey needs a non-empty tenant and purpose")
        pepper = self._peppers.get(version)
        if pepper is None:
            raise UnknownKeyVersion(f"pepper version {version!r} is not in the keyring")
        info = (
            _HKDF_LABEL + _length_prefixed(purpose.encode("utf-8")) + _length_prefixed(tenant.encode("utf-8"))
        )
        derived = HKDF(algorithm=hashes.SHA256(), length=SUBKEY_BYTES, salt=_HKDF_SALT, info=info).derive(
            pepper
        )
        if len(self._subkeys) >= _SUBKEY_CACHE_MAX:
            self._subkeys.clear()
        self._subkeys[cache_key] = derived
        return derived

    def mac(self, tenant: str, purpose: str, data: bytes, *, pepper_version: str | None = None) -> bytes:
        """Return HMAC-SHA256 of ``data`` under the tenant's subkey for ``purpose``.

        This is the :class:`idverify.verifiers.base.Keyed` protocol. By default the result is
        under the pinned pseudonym pepper, so it survives pepper rotations; pass ``pepper_version``
        for a value tied to a pepper version (an identity's name binding).

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.

        """
        return hmac.digest(self.subkey(tenant, purpose, pepper_version), data, hashlib.sha256)

    def pseudonym(self, tenant: str, purpose: str, value: str, *, pepper_version: str | None = None) -> str:
        """Return a stable 32-hex-digit pseudonym of ``value`` (account ids, Redis key names).

        128 bits keep collisions out of reach for any realistic number of accounts while keeping
        key names short.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.

        """
        digest = self.mac(tenant, purpose, value.encode("utf-8"), pepper_version=pepper_version)
        return digest[:PSEUDONYM_BYTES].hex()

    def pseudonyms(self, tenant: str, purpose: str, values: Sequence[str]) -> list[str]:
        """:meth:`pseudonym` of each value under the pinned pepper, remembered for repeated batches.

        The keyring remembers the pseudonyms it derived here (``privacy.pseudonym_memo``): a
        batch read names the same accounts again and again.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
        """
        memo = self._pseudonym_memos.get((tenant, purpose))
        if memo is None:
            subkey = self.subkey(tenant, purpose)
            if len(self._pseudonym_memos) >= MAX_PSEUDONYM_MEMOS:
                # Bounds the memory of many tenants: the memo made longest ago goes.
                del self._pseudonym_memos[next(iter(self._pseudonym_memos))]
            memo = self._pseudonym_memos[tenant, purpose] = PseudonymMemo(
                lambda missing: [
                    digest[:PSEUDONYM_BYTES].hex()
                    for digest in hmac_sha256_each(subkey, [value.encode("utf-8") for value in missing])
                ]
            )
        return memo.of(values)

    def wrapping_key(self, version: str) -> bytes:
        """Return the 64-byte wrapping key of ``version``; for :mod:`idverify.privacy.sealing` only.

        Raises:
            UnknownKeyVersion: ``version`` is not in the keyring.

        """
        key = self._wrapping_keys.get(version)
        if key is None:
            raise UnknownKeyVersion(f"wrapping-key version {version!r} is not in the keyring")
        return key

    def with_new_pepper(self, *, make_current: bool = True) -> Keyring:
        """Return a keyring with one more pepper version (the highest number plus one).

        Args:
            make_current: write new records under it at once. With several replicas, add it with
                False first, roll the keyring out everywhere, then promote it with
                :meth:`with_current`, so that no replica meets a record it cannot read.

        """
        version = f"p{max(map(_version_number, self._peppers)) + 1}"
        return self._replace(
            peppers={**self._peppers, version: secrets.token_bytes(_NEW_PEPPER_BYTES)},
            pepper_current=version if make_current else self._pepper_current,
        )

    def with_new_wrapping_key(self, *, make_current: bool = True) -> Keyring:
        """Return a keyring with one more wrapping-key version (see :meth:`with_new_pepper`)."""
        version = f"w{max(map(_version_number, self._wrapping_keys)) + 1}"
        return self._replace(
            wrapping_keys={**self._wrapping_keys, version: secrets.token_bytes(WRAPPING_KEY_BYTES)},
            wrapping_current=version if make_current else self._wrapping_current,
        )

    def with_current(self, *, pepper: str | None = None, wrapping: str | None = None) -> Keyring:
        """Return a keyring whose write versions are ``pepper`` and/or ``wrapping``.

        Raises:
            ConfigError: a named version is not in the keyring.

        """
        return self._replace(
            pepper_current=self._pepper_current if pepper is None else pepper,
            wrapping_current=self._wrapping_current if wrapping is None else wrapping,
        )

    def without(self, version: str) -> Keyring:
        """Return a keyring without the pepper or wrapping key ``version`` (once nothing uses it).

        Raises:
            UnknownKeyVersion: ``version`` is not in the keyring.
            ConfigError: ``version`` is a current write version.

        """
        if version in self._peppers:
            if version == self._pepper_current:
                raise ConfigError(f"keyring: cannot retire the current pepper {version}")
            if version == self._pseudonym_pepper:
                raise ConfigError(f"keyring: cannot retire {version}: pseudonyms are pinned to it")
            return self._replace(peppers={k: v for k, v in self._peppers.items() if k != version})
        if version in self._wrapping_keys:
            if version == self._wrapping_current:
                raise ConfigError(f"keyring: cannot retire the current wrapping key {version}")
            return self._replace(wrapping_keys={k: v for k, v in self._wrapping_keys.items() if k != version})
        raise UnknownKeyVersion(f"version {version!r} is not in the keyring")

    def to_json(self) -> str:
        """Return the keyring file format, secrets included: write it only to a 0600 file.

        The ``json``-and-``base64`` round trip is the one place secrets leave this object.
        """

        def encoded(items: Mapping[str, bytes]) -> dict[str, str]:
            return {k: base64.b64encode(v).decode("ascii") for k, v in sorted(items.items())}

        document = {
            "peppers": encoded(self._peppers),
            "pepper_current": self._pepper_current,
            "pseudonym_pepper": self._pseudonym_pepper,
            "wrapping_keys": encoded(self._wrapping_keys),
            "wrapping_current": self._wrapping_current,
        }
        return json.dumps(document, indent=2) + "\n"

    def _replace(self, **changes: Any) -> Keyring:
        fields: dict[str, Any] = {
            "peppers": self._peppers,
            "pepper_current": self._pepper_current,
            "wrapping_keys": self._wrapping_keys,
            "wrapping_current": self._wrapping_current,
            "pseudonym_pepper": self._pseudonym_pepper,
        }
        fields.update(changes)
        return Keyring(**fields)

    def __repr__(self) -> str:
        return (
            f"Keyring(peppers={list(self.pepper_versions)}, pepper_current={self._pepper_current!r}, "
            f"pseudonym_pepper={self._pseudonym_pepper!r}, "
            f"wrapping_keys={list(self.wrapping_versions)}, wrapping_current={self._wrapping_current!r})"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy every secret into whatever the pickle is written to (a cache, a
        # queue, a crash dump); processes that need the keyring load it from its source.
        raise TypeError("Keyring cannot be pickled")


class LiveKeyring(Keyring):
    """The keyring of a running server, which can move to a newer edition of itself in place.

    Every component gets this one object at start-up (flows, sealer, indexer, token checks), so
    swapping what it delegates to makes a new wrapping key or pepper readable everywhere at once,
    without a restart. A swap only ever adds versions, removes versions or moves the write
    versions: a version id keeps its secret and the pinned pseudonym pepper stays, otherwise every
    record written so far would be lost, so :meth:`replace` refuses such a keyring.
    """

    __slots__ = ("_live",)

    def __init__(self, keyring: Keyring) -> None:
        # No super().__init__(): this object delegates everything and holds no secret itself.
        self._live = keyring

    @property
    def current(self) -> Keyring:
        """The keyring this one delegates to now."""
        return self._live

    def replace(self, keyring: Keyring) -> bool:
        """Delegate to ``keyring`` from now on; False when it is the same as the current one.

        Raises:
            ConfigError: ``keyring`` changes the secret of a version both hold, or pins another
                pseudonym pepper.
        """
        old = self._live
        if keyring.pseudonym_pepper != old.pseudonym_pepper:
            raise ConfigError("keyring: the new keyring pins another pseudonym pepper")
        # Derived subkeys stand in for the peppers: equal subkeys mean equal peppers.
        for version in set(keyring.pepper_versions) & set(old.pepper_versions):
            if keyring.subkey("_", "_compare", version) != old.subkey("_", "_compare", version):
                raise ConfigError(f"keyring: pepper {version} has another secret in the new keyring")
        for version in set(keyring.wrapping_versions) & set(old.wrapping_versions):
            if not hmac.compare_digest(keyring.wrapping_key(version), old.wrapping_key(version)):
                raise ConfigError(f"keyring: wrapping key {version} has another secret in the new keyring")
        unchanged = (
            keyring.pepper_versions == old.pepper_versions
            and keyring.wrapping_versions == old.wrapping_versions
        )
        self._live = keyring
        return not unchanged

    @property
    def pepper_current(self) -> str:
        """As :attr:`Keyring.pepper_current`."""
        return self._live.pepper_current

    @property
    def wrapping_current(self) -> str:
        """As :attr:`Keyring.wrapping_current`."""
        return self._live.wrapping_current

    @property
    def pseudonym_pepper(self) -> str:
        """As :attr:`Keyring.pseudonym_pepper`."""
        return self._live.pseudonym_pepper

    @property
    def pepper_versions(self) -> tuple[str, ...]:
        """As :attr:`Keyring.pepper_versions`."""
        return self._live.pepper_versions

    @property
    def wrapping_versions(self) -> tuple[str, ...]:
        """As :attr:`Keyring.wrapping_versions`."""
        return self._live.wrapping_versions

    def subkey(self, tenant: str, purpose: str, pepper_version: str | None = None) -> bytes:
        """As :meth:`Keyring.subkey`.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.
        """
        return self._live.subkey(tenant, purpose, pepper_version)

    def mac(self, tenant: str, purpose: str, data: bytes, *, pepper_version: str | None = None) -> bytes:
        """As :meth:`Keyring.mac`.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.
        """
        return self._live.mac(tenant, purpose, data, pepper_version=pepper_version)

    def pseudonym(self, tenant: str, purpose: str, value: str, *, pepper_version: str | None = None) -> str:
        """As :meth:`Keyring.pseudonym`.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.
        """
        return self._live.pseudonym(tenant, purpose, value, pepper_version=pepper_version)

    def pseudonyms(self, tenant: str, purpose: str, values: Sequence[str]) -> list[str]:
        """As :meth:`Keyring.pseudonyms`.

        Raises:
            ValueError: ``tenant`` or ``purpose`` is empty.
        """
        return self._live.pseudonyms(tenant, purpose, values)

    def wrapping_key(self, version: str) -> bytes:
        """As :meth:`Keyring.wrapping_key`.

        Raises:
            UnknownKeyVersion: ``version`` is not in the keyring.
        """
        return self._live.wrapping_key(version)

    def with_new_pepper(self, *, make_current: bool = True) -> Keyring:
        """As :meth:`Keyring.with_new_pepper` (a plain keyring, not a live one)."""
        return self._live.with_new_pepper(make_current=make_current)

    def with_new_wrapping_key(self, *, make_current: bool = True) -> Keyring:
        """As :meth:`Keyring.with_new_wrapping_key` (a plain keyring, not a live one)."""
        return self._live.with_new_wrapping_key(make_current=make_current)

    def with_current(self, *, pepper: str | None = None, wrapping: str | None = None) -> Keyring:
        """As :meth:`Keyring.with_current` (a plain keyring, not a live one).

        Raises:
            ConfigError: a named version is not in the keyring.
        """
        return self._live.with_current(pepper=pepper, wrapping=wrapping)

    def without(self, version: str) -> Keyring:
        """As :meth:`Keyring.without` (a plain keyring, not a live one).

        Raises:
            UnknownKeyVersion: ``version`` is not in the keyring.
            ConfigError: ``version`` is a write version or the pseudonym pepper.
        """
        return self._live.without(version)

    def to_json(self) -> str:
        """As :meth:`Keyring.to_json`."""
        return self._live.to_json()

    def __repr__(self) -> str:
        return f"Live{self._live!r}"

    __str__ = __repr__


def _current_first(items: Mapping[str, bytes], current: str) -> tuple[str, ...]:
    others = sorted((v for v in items if v != current), key=_version_number, reverse=True)
    return (current, *others)


def _validated_secrets(
    items: Mapping[str, bytes], *, kind: str, pattern: re.Pattern[str], min_len: int, max_len: int
) -> dict[str, bytes]:
    if not items:
        raise ConfigError(f"keyring: at least one {kind} is required")
    seen: set[bytes] = set()
    result: dict[str, bytes] = {}
    for version, secret in items.items():
        if not isinstance(version, str) or not pattern.fullmatch(version):
            raise ConfigError(f"keyring: {kind} version ids look like {pattern.pattern!r}")
        if not isinstance(secret, bytes):
            raise ConfigError(f"keyring: {kind} {version} must be bytes")
        if not min_len <= len(secret) <= max_len:
            expected = str(min_len) if min_len == max_len else f"{min_len} to {max_len}"
            raise ConfigError(f"keyring: {kind} {version} must be {expected} bytes, not {len(secret)}")
        if secret in seen:
            raise ConfigError(f"keyring: {kind} {version} repeats the secret of another version")
        seen.add(secret)
        result[version] = secret
    return result


def _decoded_secrets(document: Mapping[str, Any], field: str) -> dict[str, bytes]:
    items = document.get(field)
    if not isinstance(items, dict):
        raise ConfigError(f"keyring: {field!r} must be an object of version id -> base64 secret")
    decoded: dict[str, bytes] = {}
    for version, text in items.items():
        # A malformed id is not echoed: a secret pasted into the wrong place would be printed.
        name = f"{field}.{version}" if _SAFE_ID.fullmatch(version) else f"an entry of {field}"
        if not isinstance(text, str):
            raise ConfigError(f"keyring: {name} must be a base64 string")
        secret: bytes | None
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            secret = None
        if secret is None:
            # Raised outside the handler so that no decoder exception rides along as context.
            raise ConfigError(f"keyring: {name} is not valid base64")
        decoded[version] = secret
    return decoded


def load_keyring(*, path: Path | None = None, text: str | None = None) -> Keyring:
    """Load a keyring from a JSON file or from JSON text (the value of ``IDVERIFY_KEYRING``).

    The format is ``{"peppers": {"p1": "<base64>"}, "pepper_current": "p1",
    "pseudonym_pepper": "p1", "wrapping_keys": {"w1": "<base64>"}, "wrapping_current": "w1"}``
    (``pseudonym_pepper`` is optional and defaults to ``pepper_current``); unknown fields are
    refused so that a typo cannot silently drop a key.

    Args:
        path: a keyring file (a mounted Kubernetes Secret in production).
        text: the JSON itself; exactly one of ``path`` and ``text`` is given.

    Raises:
        ConfigError: both or neither input given, the file is unreadable, or the JSON is not a
            valid keyring. Messages name the field at fault and never contain key material.

    """
    if path is not None and text is None:
        source = f"keyring file {path}"
        text = _read_keyring_file(path)
    elif text is not None and path is None:
        source = "keyring text"
    else:
        raise ConfigError("keyring: give exactly one of a keyring file or keyring JSON text")
    try:
        document = json.loads(text)
    except ValueError:
        document = _UNPARSABLE
    if document is _UNPARSABLE:
        # Raised outside the handler: JSONDecodeError keeps the whole document, secrets included,
        # in `.doc`, and `from None` would only hide it from tracebacks, not from `__context__`.
        raise ConfigError(f"{source} is not valid JSON")
    if not isinstance(document, dict):
        raise ConfigError(f"{source} must be a JSON object")
    unknown = sorted(set(document) - _DOCUMENT_KEYS)
    if unknown:
        shown = [repr(name) for name in unknown if _FIELD_NAME.fullmatch(name)]
        hidden = len(unknown) - len(shown)
        listed = ", ".join([*shown, f"{hidden} other(s)"] if hidden else shown)
        raise ConfigError(f"{source} has unknown fields: {listed}")
    for field in ("pepper_current", "wrapping_current"):
        if not isinstance(document.get(field), str):
            raise ConfigError(f"{source}: {field!r} must be a version id string")
    pinned = document.get("pseudonym_pepper")
    if pinned is not None and not isinstance(pinned, str):
        raise ConfigError(f"{source}: 'pseudonym_pepper' must be a version id string")
    return Keyring(
        peppers=_decoded_secrets(document, "peppers"),
        pepper_current=document["pepper_current"],
        wrapping_keys=_decoded_secrets(document, "wrapping_keys"),
        wrapping_current=document["wrapping_current"],
        pseudonym_pepper=pinned,
    )


def _read_keyring_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read(_MAX_KEYRING_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"keyring file {path} cannot be read: {exc.strerror}") from None
    if len(raw) > _MAX_KEYRING_FILE_BYTES:
        raise ConfigError(f"keyring file {path} is larger than {_MAX_KEYRING_FILE_BYTES} bytes")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # A warning rather than a refusal: Kubernetes mounts Secrets 0644 unless told otherwise.
        _log.warning("keyring file %s is accessible by group or others; make it 0600 (or 0400)", path)
    text: str | None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None  # its `.object` holds the raw bytes: keep it out of the raised error's context
    if text is None:
        raise ConfigError(f"keyring file {path} is not UTF-8 text")
    return text


def save_keyring_file(keyring: Keyring, path: Path) -> None:
    """Write ``keyring`` to ``path`` (mode 0600), atomically replacing any previous keyring.

    Raises:
        OSError: the file cannot be written.

    """
    write_durable_file(path, keyring.to_json().encode("utf-8"), overwrite=True)


def create_keyring_file(path: Path) -> Keyring:
    """Generate a fresh keyring and write it to ``path`` (mode 0600), which must not exist.

    Used on the first start of the embedded default; a production keyring comes from a Secret.

    Raises:
        FileExistsError: ``path`` already exists (it is never overwritten: that would orphan
            every record sealed or indexed under it).
        OSError: the file cannot be written.

    """
    keyring = Keyring.generate()
    write_durable_file(path, keyring.to_json().encode("utf-8"), overwrite=False)
    return keyring


def ensure_keyring_file(path: Path) -> Keyring:
    """Load the keyring at ``path``, creating it first when it does not exist yet.

    When several processes start at once, exactly one creation wins and all load its keyring.

    Raises:
        ConfigError: the existing file is not a valid keyring.
        OSError: the file cannot be created.

    """
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            return create_keyring_file(path)
    return load_keyring(path=path)
