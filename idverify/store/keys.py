"""The Redis key schema, in one place.

Every key starts with the versioned prefix ``iv1:`` and a hash tag: ``{t:<tenant>}`` for
everything a tenant owns (its API clients too), ``{t:<tenant>:<bucket>}`` for what one of its
buckets holds (``BucketKeys``: the audit stage for now, ``audit_stage_buckets``; a bucket may be
named by its label in the tenant's stored layout, ``store.buckets``, which is the tag's text; a
``TenantKeys`` given that layout names each bucketed family in its bucket, which no server does
yet: issue 26's next step), ``{ph:<phone pseudonym>}`` for the counters of
one phone number that all tenants share, ``{global}`` for the few other keys no tenant owns.
All keys an atomic step touches share
the tenant's tag, so each step is one Lua script in one hash slot and the same code runs on
Redis Cluster. Identifiers inside keys are pseudonyms (keyed hashes) or sealed values, never
personal data or raw account ids.

| key | type | what |
|---|---|---|
| ``iv1:{t:T}:vf:<verification id>`` | hash | a verification session (TTL) |
| ``iv1:{t:T}:req:<request pseudonym>`` | string | idempotency: request id -> verification id (TTL) |
| ``iv1:{t:T}:released:<verification id>`` | string | a start attempt that released its request id (TTL) |
| ``iv1:{t:T}:acct:<account pseudonym>`` | hash | an account's binding, derived facts, sealed id for events |
| ``iv1:{t:T}:id:<identity ref>`` | hash | an identity record (sealed name binding; bound accounts' tags) |
| ``iv1:{t:T}:idacc:<identity ref>`` | set | account pseudonyms bound to an identity (kept for 0.1.0) |
| ``iv1:{t:T}:otpfail:<pseudonym>`` | string | wrong codes per account and phone (TTL window) |
| ``iv1:{t:T}:rl:<purpose>:<pseudonym>`` | string | fixed-window rate-limit counter (TTL) |
| ``iv1:{t:T}:rl:claim_refusals_counted:<tag>:<vf>`` | string | a refused claim counted (TTL: the window) |
| ``iv1:{t:T}:chkfail:<scope>:<ps>`` | string | CheckIdentity mismatches per ``acct`` or ``principal`` (TTL) |
| ``iv1:{t:T}:givenback:<token>`` | string | one call's counts given back (TTL: their window) |
| ``iv1:{t:T}:consent:<account ps>`` | hash | per purpose ``<p>:v`` text version, ``:g``/``:w`` ms |
| ``iv1:{t:T}:acctvf:<account pseudonym>`` | zset | the account's live verification ids, by expiry |
| ``iv1:{t:T}:erasure:due`` | zset | pending erasures by due ms: ``a:<account ps>``, ``i:<identity ref>`` |
| ``iv1:{t:T}:intents`` | zset | ``unbind:``/``erase:<ps>``, ``bind:``/``place:<vf>``, ``move:<sha1>`` -> ms |
| ``iv1:{t:T}:intent:<member>`` | hash | its record: kind, subject, what the steps after need, request |
| ``iv1:{t:T}:audit:log`` | hash | audit entries: sequence number -> entry bytes (Merkle leaves) |
| ``iv1:{t:T}:audit:head`` | hash | ``size``, ``last_ms`` of the newest entry, ``trimmed``, ``legacy_moved`` |
| ``iv1:{t:T}:audit:ix:type:<event type>`` | string | the type's entry numbers, 6 bytes each, ascending |
| ``iv1:{t:T}:audit:ix:acct:<audit pseudonym>`` | string | an account's entry numbers, likewise |
| ``iv1:{t:T}:audit:ix:outcome:<outcome>`` | string | the entry numbers of an outcome, likewise |
| ``iv1:{t:T}:audit:ix:method:<method id>`` | string | the entry numbers of a method, likewise |
| ``iv1:{t:T}:audit:tree:<level>:<chunk>`` | string | stored Merkle nodes of one level, 32 bytes each |
| ``iv1:{t:T}:audit:treehead`` | hash | tree ``size``, ``root``, compact ``range``; last signed ``head_*`` |
| ``iv1:{t:T}:audit:integrating`` | string | the token of the worker integrating the log (TTL: its lease) |
| ``iv1:{t:T}:audit:signing-key`` | string | the signing key id the log last recorded a rotation to |
| ``iv1:{t:T:B}:audit:stage`` | stream | bucket B's staged entries: ``b`` body, ``ms``, ``ea``/``ef``/``c`` |
| ``iv1:{t:T}:audit:stage-cursor`` | hash | bucket -> the last staged stream id sequenced into the log |
| ``iv1:{t:T}:audit:receipts:<bucket>`` | stream | staged id -> ``i`` number or ``r``; ``h`` digest (a day) |
| ``iv1:{t:T}:audit:late-receipts:<bucket>`` | hash | id below the cursor -> ``<number> <digest>`` (a day) |
| ``iv1:{t:T}:buckets`` | hash | its bucket layout, written once: ``count``, ``labels`` (packed), ``state`` |
| ``iv1:{t:T}:migrate:legacy`` | hash | ``idverify migrate legacy``'s run: ``phase``, ``cursor``, its counts |
| ``iv1:{t:T}:audit:removal`` | hash | its removal: ``state``, ``due_ms``, final head, erase cursor (kept) |
| ``iv1:{t:T}:reads:<hour>:<client id>:<category>:a`` | HLL | account pseudonyms a client read in an hour |
| ``iv1:{t:T}:reads:<hour>:<client id>:<category>:i`` | HLL | identity refs of the bound accounts it read |
| ``iv1:{t:T}:reads:<hour>:who`` | set | client ids that read the tenant's data in that hour (TTL) |
| ``iv1:{t:T}:orgname`` | hash | verified organization names: a name's keyed hash -> its claim tags |
| ``iv1:{t:T}:orgnames:<claim tag>`` | hash | one organization's names there: hash -> ``v``/``a`` (approved) |
| ``iv1:{t:T}:events:outbox`` | stream | per event: ``s`` its entry's number, ``a`` the sealed account id |
| ``iv1:{t:T}:events:trimmed`` | string | the cursor below which the outbox was trimmed by age |
| ``iv1:{t:T}:events:acct`` | hash | legacy: audit pseudonym -> sealed id, moved into ``acct`` on touch |
| ``iv1:{t:T}:events:streams:<client id>`` | zset | a client's open event streams, by lease end (ms) |
| ``iv1:{t:T}:readmin:<minute>:<client id>:a`` | set | account pseudonyms a client read in a minute |
| ``iv1:{t:T}:readmin:<minute>:<client id>:n`` | hash | its calls and reads per RPC, its principal |
| ``iv1:{t:T}:readmin:open`` | zset | ``<minute>:<client id>`` not yet summarized, by minute |
| ``iv1:{t:T}:readmin:erased`` | zset | step by step: accounts erased in the last minute, by ms (TTL) |
| ``iv1:{t:T}:webhooks`` | set | the tenant's webhook subscription ids |
| ``iv1:{t:T}:webhook:<id>`` | hash | a subscription: url, types, sealed ``secret``, ``cursor``, ``gen`` |
| ``iv1:{t:T}:webhooklease:<id>`` | string | the token of the worker delivering it (TTL: its lease) |
| ``iv1:{t:T}:client:<client id>`` | hash | an API client of the tenant (keyed hash of its token, role) |
| ``iv1:{t:T}:clients`` | set | the tenant's client ids |
| ``iv1:{t:T}:incident:merge:<token>`` | HLL | a partial union of ``reads`` HLLs for a report (TTL) |
| ``iv1:{t:T}:incident:lock`` | string | held while a report of the tenant is made (redis-py lock, TTL) |
| ``iv1:{ph:P}:sends:h`` / ``:sends:d`` | string | codes sent to a phone by all tenants, per hour / day |
| ``iv1:{ph:P}:otpfail`` | string | wrong codes for a phone from all tenants; at the limit, its lock (TTL) |
| ``iv1:{global}:client-tenant`` | hash | client id -> tenant, to list and revoke by id alone |
| ``iv1:{global}:bootstrap`` | string | the bootstrap token's client id, set once it exists |
| ``iv1:{global}:bootstrap-retired`` | string | set once an operator exists: the bootstrap token is retired |
| ``iv1:{global}:clock-floor`` | string | the store time already seen while Redis's clock is behind it |
| ``iv1:{global}:erasure:tenants`` | set | tenants that have had erasures scheduled |
| ``iv1:{global}:tenant-removals`` | zset | tenants whose removal is scheduled or under way, by due ms |
| ``iv1:{global}:keyring:<instance>`` | string | a running server's keyring and schema versions (TTL) |
| ``iv1:{global}:keys:reindex`` | hash | ``idverify keys reindex`` checkpoint: target, phase, cursor |
| ``iv1:{global}:keycheck`` | hash | ``p:<v>`` / ``w:<v>`` -> key-check HMAC per key version; ``pseudonym`` |
| ``iv1:{global}:audit-key`` | string | id of the key that signs every tenant's audit log |
| ``iv1:{global}:schema`` | string | schema version of the data (flows/schema_version.py) |
| ``iv1:{global}:audit-trimmed`` | set | tenants whose audit logs keep older entries in bundles alone |

``<hour>`` is the store clock's epoch ms floor-divided by 3 600 000, in decimal; ``<category>``
is one of ``flows.read_accounting.Category``. A client id may hold a colon (``cert:0``), so a
reader splits a ``reads`` key from the right. Every ``reads`` key has the retention period
(``[reads] retention_days``) as its TTL, and so do the ``readmin`` records of a minute until its
summary entry replaces them (``<minute>``: epoch ms floor-divided by 60 000).

``P`` is the phone's deployment-wide pseudonym (``keyring.DEPLOYMENT_LABEL``): it keys only
these counters and appears in no tenant's record, so it joins nothing across tenants. Each phone
has its own hash slot, so the counters of a busy deployment spread over a Cluster's shards.

An identity record's ``m:<account pseudonym>`` fields hold its bound accounts' claim tags
(``b:<tag>``, ``b:`` for an account bound untagged, under the identity's first name), or the
place a binding in flight took (``p:<tag>:<vf id>``, only where a binding runs step by step:
``store.binding_steps``): the binding limit and a claim are decided from the ``idacc`` set and
these fields alone, a pending place counted while its ``place:`` intent (same slot) lives. The set
stays what 0.1.0 reads and writes, so that 0.1.0 serves beside this release; a member 0.1.0 bound
has no field until the prelude's ``identity_members()`` writes it from the account (the account
key derived from the verification's), and a field whose account left the set is dropped
(``member_fields()``).

The prelude's ``index_org_names()`` (a binding's tenant-wide step, ``bind_names.lua``) and
``drop_org_names()`` (a cancellation's, ``drop_names.lua``) are given ``orgname`` and
``orgnames:<tag>``; on one node, where a binding's steps are one script, ``org_name_keys()``
names them from the account's key, in the same way.

A step sequence's intents (``store.bucket_steps``) live in the slot of its first step: today the
tenant's, under the bucket plan the account's bucket. ``intents()`` and ``intent()`` are the one
place that says so, and the move is theirs alone.

The Lua prelude's ``audit()`` derives the ``audit:head`` and ``audit:ix:*`` keys from the
``audit:log`` key a script is given (same prefix, same hash tag), so callers pass that one key.
Given a bucket's ``audit:stage`` instead (``TenantKeys.audit_entries`` with a layout), it stages
the entry there and derives nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from idverify.domain.buckets import bucket_of
from idverify.domain.tenants import valid_tenant

if TYPE_CHECKING:
    from idverify.store.buckets import BucketLayout

PREFIX = "iv1"
# A bucket's label: the hash tag's text, ``t:<tenant>:<n>`` with n in decimal, no leading zero.
_BUCKET_LABEL: Final = re.compile(r"t:([^:]+):(0|[1-9][0-9]{0,9})")
# A key's prefix up to and with its hash tag: a bucket's own index is named beside a key of it.
_TAGGED: Final = re.compile(r"iv1:\{[^}]*\}")
# Window counters by a person, a name or a phone, and their markers: in their own pseudonym's bucket.
_COUNTERS: Final = ("identity", "claim_refusals", "phone", "phone_all_tenants")
_COUNTER_PURPOSES: Final = frozenset(
    f"{purpose}{mark}" for purpose in _COUNTERS for mark in ("", "_audited", "_counted")
)
# Keyed by an account and a phone: the account's bucket.
_ACCOUNT_PURPOSES: Final = frozenset({"phone_locked_audited"})


class TenantKeys:
    """Key names of one tenant: every one in the tenant's hash slot, or by its bucket's layout.

    Without a ``layout`` (every server today) every key is in ``{t:T}``, and the arguments that
    place a key in a bucket (``account``, ``beside``) are not used. With the tenant's
    ``layout`` (issue 26's buckets, docs/ARCHITECTURE.md "Buckets: the plan", §2; no server
    names keys so yet) each bucketed family is named in its bucket's tag: an account's keys by
    its pseudonym's bucket, an identity's by its ref's, a person's, a name's or a phone's counter
    by its own pseudonym's, a verification's by the bucket its id names
    (``verification_bucket``: ``privacy.verification_ids.verification_id_bucket`` under the
    tenant's keyring). A bucket's own indexes (its intents, erasures due, given-back marks and
    staged entries: :meth:`audit_entries`) are named ``beside`` a key of the bucket, the one
    their step is given. A key whose bucket its arguments do not say is refused
    (``ValueError``), never guessed.
    """

    __slots__ = ("_base", "_labels", "_verification_bucket")

    def __init__(
        self,
        tenant: str,
        layout: BucketLayout | None = None,
        *,
        verification_bucket: Callable[[str], int] | None = None,
    ) -> None:
        if not valid_tenant(tenant):
            msg = f"invalid tenant name {tenant!r}"
            raise ValueError(msg)
        if layout is not None and layout.tenant != tenant:
            msg = f"the bucket layout of tenant {layout.tenant!r} names no key of tenant {tenant!r}"
            raise ValueError(msg)
        self._base = f"{PREFIX}:{{t:{tenant}}}"
        self._labels = layout.labels if layout is not None else None
        self._verification_bucket = verification_bucket

    @property
    def bucketed(self) -> bool:
        """Whether the bucketed families are named in their buckets (a layout was given)."""
        return self._labels is not None

    def bucket_prefixes(self) -> list[str]:
        """Each bucket's key prefix with its tag (``iv1:{t:T:<label>}``), in bucket order.

        A reader of every bucket's own index (its intents, erasures due) names each ``beside``
        one of these. Without a layout, the tenant's one prefix: today's one index.
        """
        if self._labels is None:
            return [self._base]
        return [f"{PREFIX}:{{{label}}}" for label in self._labels]

    def _bucket_base(self, name: str) -> str:
        """The prefix of the bucket of ``name`` (a pseudonym or ref); the tenant's without a layout."""
        if self._labels is None:
            return self._base
        return f"{PREFIX}:{{{self._labels[bucket_of(name)]}}}"

    def _account_base(self, account_pseudonym: str | None, family: str) -> str:
        if self._labels is None:
            return self._base
        if account_pseudonym is None:
            msg = f"a bucketed tenant's {family} key is named with its account's pseudonym"
            raise ValueError(msg)
        return self._bucket_base(account_pseudonym)

    def _verification_base(self, verification_id: str) -> str:
        if self._labels is None:
            return self._base
        if self._verification_bucket is None:
            msg = "a bucketed tenant's verification keys need the decoder of its ids' buckets"
            raise ValueError(msg)
        return f"{PREFIX}:{{{self._labels[self._verification_bucket(verification_id)]}}}"

    def _beside_base(self, beside: str | None, family: str) -> str:
        """The prefix of the bucket ``beside`` (a key of it) is in: a bucket's own index goes there."""
        if self._labels is None:
            return self._base
        tagged = _TAGGED.match(beside or "")
        if tagged is None or not (tagged[0] == self._base or tagged[0].startswith(f"{self._base[:-1]}:")):
            msg = f"a bucketed tenant's {family} is named beside a key of its bucket, not {beside!r}"
            raise ValueError(msg)
        return tagged[0]

    def verification(self, verification_id: str) -> str:
        """A verification session."""
        return f"{self._verification_base(verification_id)}:vf:{verification_id}"

    def request(self, request_pseudonym: str, account: str | None = None) -> str:
        """Idempotency record of a caller's request id (in the bucket of ``account``, its pseudonym)."""
        return f"{self._account_base(account, 'req')}:req:{request_pseudonym}"

    def request_released(self, verification_id: str) -> str:
        """The mark of a start attempt that gave up and released its request id (release_request.lua)."""
        return f"{self._verification_base(verification_id)}:released:{verification_id}"

    def account(self, account_pseudonym: str) -> str:
        """An account's binding."""
        return f"{self._bucket_base(account_pseudonym)}:acct:{account_pseudonym}"

    def accounts(self, account_pseudonyms: Iterable[str]) -> list[str]:
        """:meth:`account` of each (a batch read names up to a thousand)."""
        if self._labels is not None:
            return [self.account(pseudonym) for pseudonym in account_pseudonyms]
        prefix = f"{self._base}:acct:"
        return [prefix + pseudonym for pseudonym in account_pseudonyms]

    def identity(self, identity_ref: str) -> str:
        """An identity record."""
        return f"{self._bucket_base(identity_ref)}:id:{identity_ref}"

    def identity_accounts(self, identity_ref: str) -> str:
        """The accounts bound to an identity (their claim tags: the identity record's ``m:`` fields)."""
        return f"{self._bucket_base(identity_ref)}:idacc:{identity_ref}"

    def otp_failures(self, pseudonym: str, account: str | None = None) -> str:
        """Wrong-code counter for one account and phone (in the bucket of ``account``, its pseudonym)."""
        return f"{self._account_base(account, 'otpfail')}:otpfail:{pseudonym}"

    def rate_limit(self, purpose: str, pseudonym: str, account: str | None = None) -> str:
        """A fixed-window counter.

        A person's, a name's or a phone's (and its markers) in its own pseudonym's bucket; an
        account and phone's lock mark in the bucket of ``account``; a caller's or the tenant's
        in the tenant's slot.
        """
        if purpose in _ACCOUNT_PURPOSES:
            base = self._account_base(account, f"rl:{purpose}")
        elif purpose in _COUNTER_PURPOSES:
            base = self._bucket_base(pseudonym)
        else:
            base = self._base
        return f"{base}:rl:{purpose}:{pseudonym}"

    def claim_refusal_counted(self, claim_tag: str, verification_id: str) -> str:
        """Marks a verification's refused claim counted in ``rate_limit("claim_refusals", tag)``.

        Beside the counter, in its slot (``bind_count.lua``): a repaired binding counts it once.
        """
        return f"{self._bucket_base(claim_tag)}:rl:claim_refusals_counted:{claim_tag}:{verification_id}"

    def given_back(self, token: str, beside: str | None = None) -> str:
        """Marks the give-back of one call's counts (``count_give_back.lua``) done: a retry finds it.

        In the counters' slot: ``beside`` one of the counters it gives back (docs/ARCHITECTURE.md,
        "3.6 Counters in two slots"), the tenant's without a layout.
        """
        return f"{self._beside_base(beside, 'givenback')}:givenback:{token}"

    def check_mismatches(self, scope: str, pseudonym: str) -> str:
        """CheckIdentity's wrong claims against one account (``acct``) or from one caller (``principal``)."""
        base = self._bucket_base(pseudonym) if scope == "acct" else self._base
        return f"{base}:chkfail:{scope}:{pseudonym}"

    def consent(self, account_pseudonym: str) -> str:
        """An account's consent records, per purpose."""
        return f"{self._bucket_base(account_pseudonym)}:consent:{account_pseudonym}"

    def account_verifications(self, account_pseudonym: str) -> str:
        """An account's live verification ids (so erasure and withdrawal find them in O(1))."""
        return f"{self._bucket_base(account_pseudonym)}:acctvf:{account_pseudonym}"

    def intents(self, beside: str | None = None) -> str:
        """The durable intents of step sequences begun in a slot (``beside`` a key of it), by repair ms."""
        return f"{self._beside_base(beside, 'intents')}:intents"

    def intent(self, member: str, beside: str | None = None) -> str:
        """An intent's record (:meth:`intents`: ``unbind:``/``erase:<ps>``, ``bind:``/``place:<vf>``).

        Or a re-indexing's, ``move:<sha1 of the old ref>`` (``store.identity_move_steps``). In
        its index's slot, ``beside`` a key of it.
        """
        return f"{self._beside_base(beside, 'intent')}:intent:{member}"

    def erasure_due(self, beside: str | None = None) -> str:
        """The pending erasures of a slot (``beside`` a key of it; else the tenant's), by due ms."""
        return f"{self._beside_base(beside, 'erasure:due')}:erasure:due"

    def audit_entries(self, beside: str | None = None) -> str:
        """Where a step's audit entry goes: the tenant's log, or with a layout its bucket's stage.

        ``beside`` is a key of the step's slot: a bucket's key stages the entry in that bucket
        (the prelude's ``audit()`` tells a stage from the log by its name, and stages the bytes
        the log would hold); a tenant-wide key keeps the log. Without a layout, the log.
        """
        if self._labels is None:
            return self.audit_log()
        base = self._beside_base(beside, "audit entry")
        return self.audit_log() if base == self._base else f"{base}:audit:stage"

    @property
    def bucket_count(self) -> int | None:
        """How many buckets the layout has; None without one (``audit_stage_buckets`` applies)."""
        return None if self._labels is None else len(self._labels)

    def audit_log(self) -> str:
        """The tenant's audit entries (the key a script passes to the prelude's ``audit()``)."""
        return f"{self._base}:audit:log"

    def audit_stage_cursor(self) -> str:
        """Per bucket, the last staged stream id sequenced into the log."""
        return f"{self._base}:audit:stage-cursor"

    def audit_receipts(self, bucket: int) -> str:
        """Per staged stream id of a bucket, the entry number it was given (or its refusal)."""
        return f"{self._base}:audit:receipts:{bucket}"

    def audit_late_receipts(self, bucket: int) -> str:
        """Receipts of a bucket's records sequenced below its cursor (a failover's rolled-back stream)."""
        return f"{self._base}:audit:late-receipts:{bucket}"

    def buckets(self) -> str:
        """The tenant's bucket layout (``store.buckets``), written once: a later search moves no data."""
        return f"{self._base}:buckets"

    def legacy_move(self) -> str:
        """``idverify migrate legacy``'s run in this tenant: its phase, scan cursor and counts (kept)."""
        return f"{self._base}:migrate:legacy"

    def console_session(self, digest: str) -> str:
        """One signed-in console session, under the SHA-256 of its cookie (never the cookie itself)."""
        return f"{self._base}:console:session:{digest}"

    def audit_head(self) -> str:
        """The audit log's size and newest time."""
        return f"{self._base}:audit:head"

    def audit_index(self, kind: str, value: str) -> str:
        """The entry numbers of one value of a filter: ``type``, ``outcome``, ``method`` or ``acct``."""
        return f"{self._base}:audit:ix:{kind}:{value}"

    def audit_tree(self, level: int | str, chunk: int | str) -> str:
        """One chunk of one level of the Merkle tree's stored nodes."""
        return f"{self._base}:audit:tree:{level}:{chunk}"

    def audit_tree_head(self) -> str:
        """The integrated tree's size, root and compact range, and the last signed head."""
        return f"{self._base}:audit:treehead"

    def audit_integration_lease(self) -> str:
        """The token of the worker that integrates the log's tree, while its lease lasts."""
        return f"{self._base}:audit:integrating"

    def audit_signing_key(self) -> str:
        """The signing key id the log last recorded a rotation to (each rotation is one entry)."""
        return f"{self._base}:audit:signing-key"

    def incident_merge(self, token: str) -> str:
        """A partial union of ``reads`` HyperLogLogs an incident report merges into (short TTL)."""
        return f"{self._base}:incident:merge:{token}"

    def incident_lock(self) -> str:
        """Held while an incident report of the tenant is made: one at a time (it scans the store)."""
        return f"{self._base}:incident:lock"

    def removal(self) -> str:
        """The tenant's removal record, kept with the audit log it closed (``tenants remove``)."""
        return f"{self._base}:audit:removal"

    def reads_accounts(self, hour: int, client_id: str, category: str) -> str:
        """HyperLogLog of the account pseudonyms one client read in one hour, in one category."""
        return f"{self._base}:reads:{hour}:{client_id}:{category}:a"

    def reads_identities(self, hour: int, client_id: str, category: str) -> str:
        """HyperLogLog of the identity refs of the accounts one client read in one hour, in one category."""
        return f"{self._base}:reads:{hour}:{client_id}:{category}:i"

    def reads_who(self, hour: int) -> str:
        """The client ids that read the tenant's data in one hour."""
        return f"{self._base}:reads:{hour}:who"

    def organization_names(self) -> str:
        """The index of verified organization names (keyed hashes) and who owns each."""
        return f"{self._base}:orgname"

    def organization_own_names(self, claim_tag: str) -> str:
        """The names one organization (its claim tag) holds in :meth:`organization_names`."""
        return f"{self._base}:orgnames:{claim_tag}"

    def events_outbox(self) -> str:
        """The outbox stream: one record per event, written with its audit entry."""
        return f"{self._base}:events:outbox"

    def events_accounts(self) -> str:
        """Legacy: audit pseudonym -> a bound account's id, sealed, where older servers kept it.

        This release keeps it in the account (``event_account``); it reads this map as a fallback
        and empties it as accounts are touched (the prelude's ``event_account_of``).
        """
        return f"{self._base}:events:acct"

    def events_trimmed(self) -> str:
        """The cursor below which the outbox was trimmed (its records were older than kept)."""
        return f"{self._base}:events:trimmed"

    def event_streams(self, client_id: str) -> str:
        """The open event streams of one client, by the time their lease ends."""
        return f"{self._base}:events:streams:{client_id}"

    def reads_open(self) -> str:
        """The minutes of reads not yet summarized, ``<minute>:<client id>`` by minute."""
        return f"{self._base}:readmin:open"

    def reads_erased(self) -> str:
        """Account pseudonyms erased in the last minute, by ms, that the reads in flight leave out.

        Written only where a read and its accounting are two steps (docs/ARCHITECTURE.md, "3.5
        The reads followed by one write"), with a TTL of ``store.read_steps.ERASED_KEEP_MS``.
        """
        return f"{self._base}:readmin:erased"

    def reads_minute_accounts(self, open_member: str) -> str:
        """The account pseudonyms one client read in one minute (``<minute>:<client id>``)."""
        return f"{self._base}:readmin:{open_member}:a"

    def reads_minute_counts(self, open_member: str) -> str:
        """Calls and account reads per RPC of one client in one minute, and its principal label."""
        return f"{self._base}:readmin:{open_member}:n"

    def webhooks(self) -> str:
        """The tenant's webhook subscription ids."""
        return f"{self._base}:webhooks"

    def webhook(self, webhook_id: str) -> str:
        """A webhook subscription (its secret sealed) and its delivery cursor."""
        return f"{self._base}:webhook:{webhook_id}"

    def webhook_lease(self, webhook_id: str) -> str:
        """The lease of the one worker delivering a subscription."""
        return f"{self._base}:webhooklease:{webhook_id}"

    def client(self, client_id: str) -> str:
        """An API client of the tenant."""
        return f"{self._base}:client:{client_id}"

    def clients(self) -> str:
        """The tenant's client ids."""
        return f"{self._base}:clients"


class BucketKeys:
    """Key names of one of a tenant's buckets (issue 26): a hash slot of their own, ``{t:T:B}``.

    ``bucket`` is a bucket number (the audit stage's ``audit_stage_buckets``: ``{t:T:<number>}``)
    or a label of the tenant's stored layout (``store.buckets``), whose text ``t:T:<n>`` is the
    tag itself. A tenant's name holds no colon (``domain.tenants``), so ``{t:<tenant>:<n>}`` is
    never another tenant's tag.
    """

    __slots__ = ("_base",)

    def __init__(self, tenant: str, bucket: int | str) -> None:
        if not valid_tenant(tenant):
            msg = f"invalid tenant name {tenant!r}"
            raise ValueError(msg)
        if isinstance(bucket, str):
            label = _BUCKET_LABEL.fullmatch(bucket)
            if label is None or label[1] != tenant:
                msg = f"invalid bucket label {bucket!r} for tenant {tenant!r}"
                raise ValueError(msg)
            self._base = f"{PREFIX}:{{{bucket}}}"
            return
        if bucket < 0:
            msg = f"invalid bucket {bucket!r}"
            raise ValueError(msg)
        self._base = f"{PREFIX}:{{t:{tenant}:{bucket}}}"

    def audit_stage(self) -> str:
        """The bucket's staged audit entries (the prelude's ``audit_stage``), until sequenced."""
        return f"{self._base}:audit:stage"


class PhoneKeys:
    """Key names of one phone's deployment-wide counters; every one shares the phone's hash slot."""

    __slots__ = ("_base",)

    def __init__(self, phone_pseudonym: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{32}", phone_pseudonym):
            msg = "a phone's keys take its 32-hex-digit deployment pseudonym"
            raise ValueError(msg)
        self._base = f"{PREFIX}:{{ph:{phone_pseudonym}}}"

    def sends_this_hour(self) -> str:
        """Codes sent to the phone by every tenant in the current hour window."""
        return f"{self._base}:sends:h"

    def sends_this_day(self) -> str:
        """Codes sent to the phone by every tenant in the current day window."""
        return f"{self._base}:sends:d"

    def otp_failures(self) -> str:
        """Wrong codes for the phone from every tenant and account; its lock once at the limit."""
        return f"{self._base}:otpfail"


class GlobalKeys:
    """Keys not owned by a tenant: constants, but for the one that names a server."""

    BASE: Final = f"{PREFIX}:{{global}}"
    # Client id -> tenant, for every client.
    CLIENT_TENANTS: Final = f"{BASE}:client-tenant"
    # Marker that the bootstrap admin token was created.
    BOOTSTRAP: Final = f"{BASE}:bootstrap"
    # Marker that an operator client was created, which retires the bootstrap token for good.
    BOOTSTRAP_RETIRED: Final = f"{BASE}:bootstrap-retired"
    # The store time already seen while Redis's clock is behind it (store/clock.py).
    CLOCK_FLOOR: Final = f"{BASE}:clock-floor"
    # Tenants whose erasure queues the erasure worker visits.
    ERASURE_TENANTS: Final = f"{BASE}:erasure:tenants"
    # Tenants whose removal is scheduled or under way, by due time (``tenants status``).
    TENANT_REMOVALS: Final = f"{BASE}:tenant-removals"
    # Key-check values of every key version data was written under (a lost keyring is refused).
    KEYCHECK: Final = f"{BASE}:keycheck"
    # The id of the audit log's signing key (another key is an explicit rotation).
    AUDIT_KEY: Final = f"{BASE}:audit-key"
    # The schema version of the data (a newer one than a release knows is refused at start).
    SCHEMA: Final = f"{BASE}:schema"
    # Set once no server of an older release was found serving: new tenants' logs are born walked.
    LOGS_BORN_WALKED: Final = f"{BASE}:logs-born-walked"
    # Where ``idverify keys reindex`` records how far it got.
    REINDEX_CHECKPOINT: Final = f"{BASE}:keys:reindex"
    # Tenants whose audit logs keep their older entries in the entry bundles alone (trimmed).
    TRIMMED_AUDIT_LOGS: Final = f"{BASE}:audit-trimmed"

    @classmethod
    def keyring_instance(cls, instance: str) -> str:
        """A running server's report of the keyring versions it holds."""
        return f"{cls.BASE}:keyring:{instance}"
