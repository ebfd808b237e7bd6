"""The identity index: an argon2id hash of a document, deterministic within a tenant and pepper version.

It is the lookup and dedup key of an identity, so a lookup costs one hash, while guessing a document
from a stolen database costs a full argon2id per guess even with the pepper in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Self

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

from idverify.domain.errors import ConfigError
from idverify.domain.subjects import DocumentType
from idverify.priority import LOWEST, run_in_background
from idverify.privacy.hash_backlog import HashBacklog, Promise

if TYPE_CHECKING:
    from idverify.privacy.keyring import Keyring

__all__ = [
    "DEFAULT",
    "HASH_THREAD_NAME",
    "INDEX_BYTES",
    "INDEX_PURPOSE",
    "TEST_ONLY_FAST",
    "Argon2Params",
    "IdentityIndexer",
    "IndexValue",
    "parse_index_params",
]

INDEX_PURPOSE: Final = "index"
"""Keyring purpose whose subkey yields the argon2id salt."""

INDEX_BYTES: Final = 32
SALT_BYTES: Final = 16

_SALT_LABEL: Final = b"idverify/identity-index/argon2id-salt/v1"
_PHC: Final = re.compile(
    rf"\$argon2id\$v={ARGON2_VERSION}\$m=([1-9][0-9]*),t=([1-9][0-9]*),p=([1-9][0-9]*)\$(p[1-9][0-9]*)"
)
# Beyond these, a value is far more likely a unit mistake (bytes for KiB) than an intent.
_MAX_MEMORY_KIB: Final = 4 * 1024 * 1024
_MAX_TIME_COST: Final = 64
_MAX_PARALLELISM: Final = 64
# OWASP's argon2id minimums trade memory against passes (46 MiB x1, 19 MiB x2, 12 MiB x3,
# 9 MiB x4, 7 MiB x5); every one of them clears this product and memory floor.
_MIN_MEMORY_KIB: Final = 7 * 1024
_MIN_MEMORY_TIME_PRODUCT: Final = 7 * 1024 * 5

HASH_THREAD_NAME: Final = "idverify-argon2"
"""The hashing threads' name, in Python and to the OS (``top -H``, ``/proc/<pid>/task/*/comm``)."""


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """A named argon2id cost profile.

    Attributes:
        memory_kib: memory per hash in KiB; bounds how many hashes fit in RAM at once.
        time_cost: passes over that memory.
        parallelism: lanes per hash; 1 leaves the other cores to other requests.
        hash_len: index length in bytes; fixed at 32 because it is part of the key schema, and kept
            as a field so a profile reads like argon2-cffi's.

    """

    memory_kib: int
    time_cost: int
    parallelism: int
    hash_len: int = INDEX_BYTES

    def __post_init__(self) -> None:
        """Check what argon2 itself would refuse, so a bad profile fails at start-up, not per call.

        Raises:
            TypeError: a parameter is not an int.
            ValueError: the parameters are outside what argon2id accepts here.

        """
        for name in ("memory_kib", "time_cost", "parallelism", "hash_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Argon2Params.{name} must be an int")
        if not 1 <= self.parallelism <= _MAX_PARALLELISM:
            raise ValueError(f"parallelism must be 1 to {_MAX_PARALLELISM}")
        if not 8 * self.parallelism <= self.memory_kib <= _MAX_MEMORY_KIB:
            raise ValueError(f"memory_kib must be 8 x parallelism to {_MAX_MEMORY_KIB}")
        if not 1 <= self.time_cost <= _MAX_TIME_COST:
            raise ValueError(f"time_cost must be 1 to {_MAX_TIME_COST}")
        if self.hash_len != INDEX_BYTES:
            raise ValueError(f"hash_len must be {INDEX_BYTES}")

    @classmethod
    def from_config(
        cls, *, memory_kib: int, time_cost: int, parallelism: int, allow_weak: bool = False
    ) -> Argon2Params:
        """Build a profile from configuration values, refusing costs below OWASP's minimums.

        Args:
            memory_kib: memory per hash in KiB (19456 = 19 MiB).
            time_cost: passes over the memory.
            parallelism: lanes per hash.
            allow_weak: accept costs below the floor; for test configurations only.

        Raises:
            ConfigError: a value is not an int, out of argon2's range, implausibly large, or (unless
                ``allow_weak``) cheaper than OWASP's argon2id recommendations.

        """
        try:
            params = cls(memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"argon2 parameters: {exc}") from None
        too_cheap = (
            params.memory_kib < _MIN_MEMORY_KIB
            or params.memory_kib * params.time_cost < _MIN_MEMORY_TIME_PRODUCT
        )
        if too_cheap and not allow_weak:
            raise ConfigError(
                f"argon2 parameters {params.encode()} are below OWASP's argon2id minimum "
                f"(for example m={DEFAULT.memory_kib},t={DEFAULT.time_cost})"
            )
        return params

    def encode(self) -> str:
        """Return the PHC parameter segment, ``m=19456,t=2,p=1``."""
        return f"m={self.memory_kib},t={self.time_cost},p={self.parallelism}"


DEFAULT: Final = Argon2Params(memory_kib=19456, time_cost=2, parallelism=1)
"""OWASP's recommended argon2id minimum: 19 MiB, 2 passes, 1 lane (most of a signup's CPU)."""

TEST_ONLY_FAST: Final = Argon2Params(memory_kib=8, time_cost=1, parallelism=1)
"""The cheapest profile argon2 accepts. For tests only: it protects nothing."""


def parse_index_params(text: str) -> tuple[Argon2Params, str]:
    """Parse ``$argon2id$v=19$m=19456,t=2,p=1$p1`` into its profile and pepper version.

    Raises:
        ValueError: ``text`` is not in that form or names parameters argon2 would refuse.

    """
    match = _PHC.fullmatch(text)
    if match is None:
        raise ValueError("identity index parameters are not in the $argon2id$v=19$m=,t=,p=$<pepper> form")
    memory, time_cost, parallelism, pepper_version = match.groups()
    params = Argon2Params(memory_kib=int(memory), time_cost=int(time_cost), parallelism=int(parallelism))
    return params, pepper_version


@dataclass(frozen=True, slots=True)
class IndexValue:
    """One identity index and what produced it.

    Attributes:
        digest: the 32-byte index; store it sealed, never in the clear.
        pepper_version: the pepper whose subkey salted the hash.
        params: the argon2id profile of the hash.

    """

    digest: bytes = field(repr=False)
    pepper_version: str
    params: Argon2Params

    @property
    def phc(self) -> str:
        """The parameters in PHC form, ``$argon2id$v=19$m=19456,t=2,p=1$p1``, stored beside the index."""
        return f"$argon2id$v={ARGON2_VERSION}${self.params.encode()}${self.pepper_version}"

    def __repr__(self) -> str:
        return f"IndexValue(<{len(self.digest)} bytes hidden>, {self.phc})"


def _encode_secret(document_type: str, number: str) -> bytes:
    # Length-prefixed fields: no (type, number) pair can collide with another by shifting a
    # character across the boundary, whatever characters a future document type allows.
    parts = (document_type.encode("utf-8"), number.encode("utf-8"))
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


class IdentityIndexer:
    """Computes identity indexes under a keyring and an argon2id profile.

    The indexer owns a bounded thread pool: argon2-cffi releases the GIL while hashing, so
    :meth:`compute_async` keeps the event loop responsive and uses the other cores. The pool's
    threads run at nice ``niceness`` (see :mod:`idverify.priority`), so the event loop's short
    calls preempt a hash on a shared core. Memory in use peaks at ``max_workers x params.memory_kib``.
    Its hashes are counted in a :class:`HashBacklog`, which a start asks first (:meth:`promise`).
    Call :meth:`close` (or use ``with``) on shutdown.
    """

    def __init__(
        self,
        keyring: Keyring,
        params: Argon2Params = DEFAULT,
        *,
        max_workers: int | None = None,
        niceness: int = 0,
    ) -> None:
        """Create the indexer and its thread pool, and time one hash there (the backlog's first estimate).

        Args:
            keyring: the peppers whose index subkeys salt the hashes.
            params: the argon2id profile new indexes are computed under.
            max_workers: hashing threads; the number of CPUs when None.
            niceness: the hashing threads' nice value (0 to 19) unless the process is nicer already;
                19 lets the event loop preempt a hash (the server's ``[argon2] niceness``).

        Raises:
            ValueError: ``max_workers`` is less than 1, or ``niceness`` outside 0 to 19.

        """
        workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError("max_workers must be at least 1")
        if not 0 <= niceness <= LOWEST:
            raise ValueError("niceness must be between 0 and 19")
        self._keyring = keyring
        self._params = params
        self._max_workers = workers
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=HASH_THREAD_NAME,
            initializer=run_in_background,
            initargs=(HASH_THREAD_NAME, niceness),
        )
        # One throwaway hash on the pool, at its priority: the backlog's estimate before any call
        # hashed (a burst at start-up would otherwise all be let in), and a warm thread.
        self._backlog = HashBacklog(workers, 0.0)
        self._backlog.calibrate(self._executor, self._throwaway_hash)

    @property
    def params(self) -> Argon2Params:
        """The profile new indexes are computed under."""
        return self._params

    @property
    def max_workers(self) -> int:
        """The number of hashing threads."""
        return self._max_workers

    @property
    def backlog(self) -> HashBacklog:
        """The hashes queued or running, and how long one takes."""
        return self._backlog

    @contextlib.contextmanager
    def promise(self, seconds_left: float) -> Iterator[Promise]:
        """Counts the hashes a start will ask for (one per readable pepper) before it reserves anything.

        Raises:
            RateLimited: ``HASH_QUEUE_FULL``: they would not be done within half of ``seconds_left``
                (:meth:`HashBacklog.promise`).
        """
        with self._backlog.promise(len(self._keyring.pepper_versions), seconds_left) as promised:
            yield promised

    def _throwaway_hash(self) -> None:
        self._argon2(b"idverify/identity-index/calibration", bytes(SALT_BYTES))

    def _argon2(self, secret: bytes, salt: bytes) -> bytes:
        """One argon2id hash with the configured profile.

        An index value and the calibration both call it, so the calibration measures exactly
        an index value's work.
        """
        return hash_secret_raw(
            secret=secret,
            salt=salt,
            time_cost=self._params.time_cost,
            memory_cost=self._params.memory_kib,
            parallelism=self._params.parallelism,
            hash_len=self._params.hash_len,
            type=Type.ID,
            version=ARGON2_VERSION,
        )

    def compute(
        self,
        tenant: str,
        document_type: DocumentType | str,
        normalized_number: str,
        *,
        pepper_version: str | None = None,
    ) -> IndexValue:
        """Hash one document into its index; blocks for the whole argon2id run.

        Args:
            tenant: the tenant id, from the authenticated principal.
            document_type: the document type (enum or its string value).
            normalized_number: the number upper-case without spaces, as domain normalization gives it.
            pepper_version: the pepper to salt with; the keyring's current one when None.

        Raises:
            ValueError: the tenant or number is empty, or the number is not normalized (an
                unnormalized number would silently index to a different identity).
            UnknownKeyVersion: ``pepper_version`` is not in the keyring.

        """
        kind = document_type.value if isinstance(document_type, DocumentType) else document_type
        if not kind:
            raise ValueError("document_type must not be empty")
        if not normalized_number:
            raise ValueError("normalized_number must not be empty")
        if normalized_number != normalized_number.upper() or any(c.isspace() for c in normalized_number):
            raise ValueError("normalized_number must be upper-case without whitespace")
        version = self._keyring.pepper_current if pepper_version is None else pepper_version
        salt = self._keyring.mac(tenant, INDEX_PURPOSE, _SALT_LABEL, pepper_version=version)[:SALT_BYTES]
        digest = self._argon2(_encode_secret(kind, normalized_number), salt)
        return IndexValue(digest=digest, pepper_version=version, params=self._params)

    async def compute_async(
        self,
        tenant: str,
        document_type: DocumentType | str,
        normalized_number: str,
        *,
        pepper_version: str | None = None,
    ) -> IndexValue:
        """Like :meth:`compute`, run on the indexer's thread pool so the event loop keeps serving.

        Raises:
            ValueError: as :meth:`compute`.
            UnknownKeyVersion: as :meth:`compute`.
            RuntimeError: the indexer is closed.

        """
        call = functools.partial(
            self.compute, tenant, document_type, normalized_number, pepper_version=pepper_version
        )
        return await asyncio.wrap_future(self._backlog.submit(self._executor, call))

    def candidates(
        self, tenant: str, document_type: DocumentType | str, normalized_number: str
    ) -> list[IndexValue]:
        """Return the index under every readable pepper, current first, for lookups during rotation.

        Each extra pepper version costs one more argon2id: keep the rotation window short.

        Raises:
            ValueError: as :meth:`compute`.

        """
        return [
            self.compute(tenant, document_type, normalized_number, pepper_version=version)
            for version in self._keyring.pepper_versions
        ]

    async def candidates_async(
        self, tenant: str, document_type: DocumentType | str, normalized_number: str
    ) -> list[IndexValue]:
        """Like :meth:`candidates`, hashing the versions in parallel on the thread pool.

        Raises:
            ValueError: as :meth:`compute`.
            RuntimeError: the indexer is closed.

        """
        return list(
            await asyncio.gather(
                *(
                    self.compute_async(tenant, document_type, normalized_number, pepper_version=version)
                    for version in self._keyring.pepper_versions
                )
            )
        )

    def needs_rehash(self, record_params: str) -> bool:
        """Tell whether a stored index should be recomputed the next time its identity is presented.

        True when the record's profile differs from this indexer's (raised, or deliberately lowered)
        or its pepper is not the current one.

        Args:
            record_params: the record's :attr:`IndexValue.phc` text.

        Raises:
            ValueError: ``record_params`` is malformed.

        """
        params, pepper_version = parse_index_params(record_params)
        return params != self._params or pepper_version != self._keyring.pepper_current

    def close(self) -> None:
        """Stop the thread pool after the hashes already running; queued ones are dropped."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IdentityIndexer(params={self._params.encode()}, max_workers={self._max_workers})"
