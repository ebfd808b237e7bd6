"""Where each key goes under the bucket plan (docs/ARCHITECTURE.md, "Buckets: the plan", §2).

Today every tenant key is in ``{t:T}``, so a script may read two families in one call without
Redis noticing; once the families move to their buckets that call is a ``CROSSSLOT`` error. This
module names each key's planned family from its name alone, so that tests (and the migration
after them) can check that a step's keys would still share one slot: at most one bucketed family
(:data:`BUCKETED`), plus the tenant's own slot, where every step's audit entry goes today.

A bucket's own indexes (its ``intents``, its ``erasure:due``, its ``audit:stage``) have no family
of their own: each bucket holds one, so they go wherever the step that names them runs
(:attr:`Family.LOCAL`), and so does a give-back's marker (``givenback:<token>``), kept in the
slot of the counters it gives back. An intent's record goes with the first step of its sequence: a
binding's ``bind:``, a cancellation's ``unbind:`` and an erasure's ``erase:`` with the account, a
binding's ``place:`` and a re-indexing's ``move:`` with the identity.

Two accounts are two buckets too: keys that name an account pseudonym (its ``acct``,
``consent``, ``acctvf``, ``chkfail:acct:``, its ``unbind:``/``erase:`` intent) must name one
(:func:`accounts_named`), or a step would reach another account's bucket beside its own.
Keys named by something else (a ``vf`` by its id, a ``req`` by a pseudonym keyed over account
and request id, an ``otpfail`` by account and phone) go to their account's bucket by a label
Python gives them, which the name does not show: Python holds the account's pseudonym wherever
it names such a key (for ``req``, ``RequestRef.account_pseudonym``), and nothing needs the
account back from the name.

A key of a form this module does not know is refused (``ValueError``), so that a new family is
placed here before a test can pass over it.

:func:`bucket_crossings` is the finer check of one call's keys, those it is given and those its
Lua derives: one bucket, not one family (another account's, identity's or counter's key is
another bucket, ``A'``), and of the tenant's own keys only those its audit entry writes
(:func:`is_entry_key`), which the plan stages in the step's own bucket instead.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from idverify.store.keys import PREFIX

__all__ = [
    "BUCKETED",
    "Crossing",
    "Family",
    "accounts_named",
    "bucket_crossings",
    "bucket_subject",
    "crossed_families",
    "family_of",
    "is_entry_key",
]


class Family(enum.Enum):
    """A key's place under the plan."""

    ACCOUNT = "A"
    IDENTITY = "I"
    COUNTER = "C"
    TENANT = "T"
    PHONE = "P"
    GLOBAL = "global"
    LOCAL = "local"
    """A bucket's own index: in the bucket of the step that names it."""


BUCKETED: Final = frozenset({Family.ACCOUNT, Family.IDENTITY, Family.COUNTER})
"""The families spread over a tenant's buckets."""

_KEY: Final = re.compile(rf"{PREFIX}:\{{([^}}]*)\}}:(.+)", re.DOTALL)
_ACCOUNT: Final = frozenset({"acct", "consent", "acctvf", "vf", "req", "released", "otpfail"})
_IDENTITY: Final = frozenset({"id", "idacc"})
# Counters by a person, a name or a phone (their own pseudonym's bucket), with their markers.
_COUNTER_PURPOSES: Final = frozenset({"identity", "claim_refusals", "phone", "phone_all_tenants"})
_INTENT_FAMILY: Final = {
    "bind": Family.ACCOUNT,
    "unbind": Family.ACCOUNT,
    "erase": Family.ACCOUNT,
    "place": Family.IDENTITY,
    "move": Family.IDENTITY,
}
# Account keys whose name ends in the account's pseudonym, and intents whose subject is one.
_BY_ACCOUNT: Final = frozenset({"acct", "consent", "acctvf"})
_ACCOUNT_INTENTS: Final = frozenset({"unbind", "erase"})
_LOCAL: Final = frozenset({"intents", "erasure:due", "audit:stage"})
# The tenant's keys an audit entry writes (the prelude's audit(): the log, its head and postings,
# the outbox's record): the plan stages the entry in the step's own bucket instead (§2's record()).
_ENTRY_KEYS: Final = frozenset({"audit:log", "audit:head", "events:outbox"})
_ENTRY_PREFIX: Final = "audit:ix:"
# A counter's markers, beside it: its refusals audited, a verification's count done.
_AUDITED: Final = "_audited"
_COUNTED: Final = "_counted"
# Marks beside what they mark: a give-back's in the slot of the counters it gives back.
_LOCAL_HEADS: Final = frozenset({"givenback"})


def family_of(key: str) -> Family:
    """The family of ``key`` under the plan, from its name.

    Raises:
        ValueError: not a key of this release's schema, or of a form not placed here yet.
    """
    matched = _KEY.fullmatch(key)
    tag, rest = (matched[1], matched[2]) if matched is not None else ("", "")
    if tag != "global" and not tag.startswith(("t:", "ph:")):
        msg = f"not a key of this schema: {key!r}"
        raise ValueError(msg)
    if not tag.startswith("t:"):
        return Family.GLOBAL if tag == "global" else Family.PHONE
    head, _, tail = rest.partition(":")
    if rest in _LOCAL or head in _LOCAL_HEADS:
        return Family.LOCAL
    if head in _BY_HEAD:
        return _BY_HEAD[head]
    by_tail = _BY_TAIL.get(head)
    return by_tail(tail, key) if by_tail is not None else Family.TENANT


def _intent_family(member: str, key: str) -> Family:
    """An intent's record goes with its sequence's first step, named by its kind."""
    kind = member.partition(":")[0]
    if kind not in _INTENT_FAMILY:
        msg = f"an intent of an unknown kind: {key!r}"
        raise ValueError(msg)
    return _INTENT_FAMILY[kind]


def _mismatch_family(scope: str, key: str) -> Family:
    """CheckIdentity's wrong claims: against an account with it, from a caller tenant-wide."""
    del key
    return Family.ACCOUNT if scope.startswith("acct:") else Family.TENANT


def _window_family(purpose: str, key: str) -> Family:
    """A window counter: a person's, a name's or a phone's in its own bucket; a caller's tenant-wide."""
    del key
    purpose = purpose.partition(":")[0]
    if purpose == "phone_locked_audited":
        return Family.ACCOUNT  # keyed by the account and phone: the account's bucket
    # A counter's markers (its refusals audited, a verification's count done) go with it.
    counter = purpose.removesuffix(_AUDITED).removesuffix(_COUNTED)
    return Family.COUNTER if counter in _COUNTER_PURPOSES else Family.TENANT


_BY_HEAD: Final[dict[str, Family]] = {
    **dict.fromkeys(_ACCOUNT, Family.ACCOUNT),
    **dict.fromkeys(_IDENTITY, Family.IDENTITY),
}
_BY_TAIL: Final[dict[str, Callable[[str, str], Family]]] = {
    "intent": _intent_family,
    "chkfail": _mismatch_family,
    "rl": _window_family,
}


def accounts_named(keys: Iterable[str]) -> set[str]:
    """The account pseudonyms ``keys`` name (see the module's docstring for which keys name one).

    Raises:
        ValueError: as :func:`family_of`.
    """
    return {
        subject
        for key in keys
        if family_of(key) is Family.ACCOUNT and (subject := bucket_subject(key)) is not None
    }


def crossed_families(keys: Iterable[str]) -> set[Family]:
    """The families ``keys`` span that would not share one slot under the plan; empty when one would.

    One slot is one family of :data:`BUCKETED` with the tenant's keys beside it (a step's audit
    entry, its staging in the bucket later), or the tenant's keys alone, or one phone's, or the
    global ones: :attr:`Family.LOCAL` goes with any. Keys of two accounts are two buckets of
    :attr:`Family.ACCOUNT` (:func:`accounts_named`), and cross as two families do.
    """
    keys = list(keys)
    families = {family_of(key) for key in keys} - {Family.LOCAL}
    bucketed = families & BUCKETED
    if len(bucketed) > 1 or (families - BUCKETED - {Family.TENANT} and len(families) > 1):
        return families
    if len(accounts_named(keys)) > 1:
        return families
    return set()


def _parts(key: str) -> tuple[str, str]:
    """A known key's hash tag and what follows it (``family_of`` has checked its form)."""
    matched = _KEY.fullmatch(key)
    return (matched[1], matched[2]) if matched is not None else ("", "")


def is_entry_key(key: str) -> bool:
    """Whether ``key`` is one of the tenant's keys a step's audit entry writes.

    The log, its head and its postings (``audit:ix:*``), the outbox. A step of a bucketed family
    writes them today beside its bucket's keys; the plan stages the entry in that bucket
    instead, so they are the one tenant-wide thing such a step may touch.
    """
    tag, rest = _parts(key)
    return tag.startswith("t:") and (rest in _ENTRY_KEYS or rest.startswith(_ENTRY_PREFIX))


def bucket_subject(key: str) -> str | None:
    """What the bucket of ``key`` is computed from, when its name says: None when it does not.

    An account's pseudonym for its ``acct``, ``consent``, ``acctvf``, ``chkfail:acct`` and its
    ``unbind:``/``erase:`` intents; an identity's ref for ``id`` and ``idacc``; a counter's
    purpose and pseudonym for its ``rl`` keys and their markers; a phone's pseudonym for its keys.
    A verification's id, a request's (keyed over its account) or an account and phone's
    pseudonym, and a binding's or a move's intent do not name their account or identity: such a
    key passes as the bucket's own.

    Raises:
        ValueError: as :func:`family_of`.
    """
    family = family_of(key)
    tag, rest = _parts(key)
    if family is Family.PHONE:
        return tag
    head, _, tail = rest.partition(":")
    if head in _BY_ACCOUNT or head in _IDENTITY:
        return tail
    if head == "chkfail" and family is Family.ACCOUNT:
        return tail.partition(":")[2]
    if head == "intent":
        kind, _, subject = tail.partition(":")
        return subject if kind in _ACCOUNT_INTENTS else None
    if head == "rl" and family is Family.COUNTER:
        purpose, _, pseudonym = tail.partition(":")
        if purpose.endswith(_COUNTED):  # a verification's count done: "<pseudonym>:<vf id>"
            pseudonym = pseudonym.rpartition(":")[0]
        return f"{purpose.removesuffix(_AUDITED).removesuffix(_COUNTED)}:{pseudonym}"
    return None


@dataclass(frozen=True, slots=True)
class Crossing:
    """A key a call touches outside its bucket, and where that key is.

    ``family`` is a family's value (``A``, ``I``, ``C``, ``T``, ``P``, ``global``), with an
    apostrophe for another bucket of the call's own family (``A'``: another account's, which §1
    marks with a prime).
    """

    family: str
    key: str


def _home(given: Sequence[str]) -> tuple[Family | None, str | None]:
    """The family and subject of the bucket a call given ``given`` runs in.

    Its first bucketed key that names its subject, else its first bucketed key, else its first
    key of any other family (the tenant's, a phone's, the global keys); none when it is given
    only a bucket's own indexes.
    """
    families = [(key, family_of(key)) for key in given]
    bucketed = [(key, family) for key, family in families if family in BUCKETED]
    for key, family in bucketed:
        if (subject := bucket_subject(key)) is not None:
            return family, subject
    if bucketed:
        return bucketed[0][1], None
    for key, family in families:
        if family is not Family.LOCAL:
            return family, bucket_subject(key)
    return None, None


def bucket_crossings(given: Sequence[str], touched: Iterable[str]) -> list[Crossing]:
    """The keys of ``touched`` outside the one slot that a call given ``given`` has under the plan.

    The call's bucket is that of its given keys (:func:`_home`). A key is outside it when it is
    of another family, or of the same bucketed family under another subject
    (:func:`bucket_subject`), or of the tenant's and not its audit entry's (:func:`is_entry_key`)
    beside a bucketed family. A bucket's own indexes go with any call.

    Raises:
        ValueError: as :func:`family_of`.
    """
    home, subject = _home(given)
    crossings: list[Crossing] = []
    for key in dict.fromkeys(touched):
        family = family_of(key)
        if family is Family.LOCAL or (family is Family.TENANT and home is Family.TENANT):
            continue
        if family is Family.TENANT and home in BUCKETED and is_entry_key(key):
            continue
        if family is not home:
            crossings.append(Crossing(family.value, key))
        elif (other := bucket_subject(key)) is not None and subject is not None and other != subject:
            crossings.append(Crossing(f"{family.value}'", key))
    return crossings
