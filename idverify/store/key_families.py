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
Keys named by something else (a ``vf`` by its id, an ``otpfail`` by account and phone) go to
their account's bucket by a label Python gives them, which the name does not show.

A key of a form this module does not know is refused (``ValueError``), so that a new family is
placed here before a test can pass over it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Final

from idverify.store.keys import PREFIX

__all__ = ["BUCKETED", "Family", "accounts_named", "crossed_families", "family_of"]


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
_LOCAL: Final = frozenset({"intents", "erasure:due", "audit:stage"})
# Account keys whose name ends in the account's pseudonym, and intents whose subject is one.
_BY_ACCOUNT: Final = frozenset({"acct", "consent", "acctvf"})
_ACCOUNT_INTENTS: Final = frozenset({"unbind", "erase"})
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
    counter = purpose.removesuffix("_audited").removesuffix("_counted")
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
    """The account pseudonyms ``keys`` name (see the module's docstring for which keys name one)."""
    named = set()
    for key in keys:
        matched = _KEY.fullmatch(key)
        if matched is None or not matched[1].startswith("t:"):
            continue
        head, _, tail = matched[2].partition(":")
        if head == "intent":
            head, _, tail = tail.partition(":")
            if head not in _ACCOUNT_INTENTS:
                continue
        elif head == "chkfail":
            scope, _, tail = tail.partition(":")
            if scope != "acct":
                continue
        elif head not in _BY_ACCOUNT:
            continue
        named.add(tail)
    return named


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
