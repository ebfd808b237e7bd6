"""Each key's planned family, named from the key alone (docs/ARCHITECTURE.md, "Buckets: the plan", §2)."""

from __future__ import annotations

import pytest

from idverify.store.key_families import (
    Crossing,
    Family,
    accounts_named,
    bucket_crossings,
    bucket_subject,
    crossed_families,
    family_of,
    is_entry_key,
)
from idverify.store.keys import BucketKeys, GlobalKeys, PhoneKeys, TenantKeys

T = TenantKeys("acme")
A, ID, C = Family.ACCOUNT, Family.IDENTITY, Family.COUNTER
# Every key TenantKeys names, with the family §2's table gives it.
EXPECTED = [
    (T.verification("v1"), A),
    (T.request("r1"), A),
    (T.request_released("v1"), A),
    (T.account("a1"), A),
    (T.consent("a1"), A),
    (T.account_verifications("a1"), A),
    (T.otp_failures("a1p1"), A),
    (T.check_mismatches("acct", "a1"), A),
    (T.rate_limit("phone_locked_audited", "a1p1"), A),
    (T.intent("bind:v1"), A),
    (T.intent("unbind:a1"), A),
    (T.intent("erase:a1"), A),
    (T.identity("ref:with:colons"), ID),
    (T.identity_accounts("ref"), ID),
    (T.intent("place:v1"), ID),
    (T.intent("move:0123abcd"), ID),
    (T.rate_limit("identity", "p1"), C),
    (T.rate_limit("identity_audited", "p1"), C),
    (T.rate_limit("claim_refusals", "tag"), C),
    (T.rate_limit("claim_refusals_audited", "tag"), C),
    (T.claim_refusal_counted("tag", "v1"), C),
    (T.rate_limit("phone", "tp1"), C),
    (T.rate_limit("phone_all_tenants_audited", "tp1"), C),
    (T.intents(), Family.LOCAL),
    (T.erasure_due(), Family.LOCAL),
    (BucketKeys("acme", 7).audit_stage(), Family.LOCAL),
    (T.given_back("token"), Family.LOCAL),
    (T.audit_log(), Family.TENANT),
    (T.audit_index("acct", "audit-a1"), Family.TENANT),
    (T.rate_limit("sends-tenant", "minute"), Family.TENANT),
    (T.rate_limit("display_checks", "caller"), Family.TENANT),
    (T.check_mismatches("principal", "p"), Family.TENANT),
    (T.organization_names(), Family.TENANT),
    (T.organization_own_names("tag"), Family.TENANT),
    (T.events_accounts(), Family.TENANT),
    (T.reads_accounts(1, "cert:0", "kyc"), Family.TENANT),
    (T.client("c1"), Family.TENANT),
    (T.buckets(), Family.TENANT),
    (PhoneKeys("0" * 32).otp_failures(), Family.PHONE),
    (GlobalKeys.SCHEMA, Family.GLOBAL),
    (GlobalKeys.keyring_instance("i-1"), Family.GLOBAL),
]


@pytest.mark.parametrize(("key", "family"), EXPECTED)
def test_each_key_has_its_planned_family(key: str, family: Family) -> None:
    assert family_of(key) is family


@pytest.mark.parametrize(
    "key",
    [
        "iv1:{t:acme}:intent:sideways:v1",  # an intent of a kind no sequence writes
        "iv2:{t:acme}:acct:a1",
        "iv1:{x:acme}:acct:a1",
        "iv1:t:acme:acct:a1",
        "acct:a1",
    ],
)
def test_an_unknown_form_is_refused_not_guessed(key: str) -> None:
    with pytest.raises(ValueError, match=r"unknown|not a key"):
        family_of(key)


@pytest.mark.parametrize(
    ("keys", "crossed"),
    [
        # A right answer's judge before this change: the identity beside the account.
        ([T.verification("v"), T.audit_log(), T.account("a"), T.identity("r")], {A, ID, Family.TENANT}),
        # A place's take reading the verification.
        ([T.intents(), T.intent("place:v"), T.verification("v")], {A, ID}),
        ([T.account("a"), T.rate_limit("claim_refusals", "tag")], {A, C}),
        # A give-back of an account's counter: its marker beside it.
        ([T.given_back("tok"), T.check_mismatches("acct", "a")], set()),
        ([PhoneKeys("0" * 32).otp_failures(), T.audit_log()], {Family.PHONE, Family.TENANT}),
        ([GlobalKeys.SCHEMA, T.account("a")], {Family.GLOBAL, A}),
        # One family, with the tenant's entry and the bucket's own indexes beside it.
        ([T.verification("v"), T.audit_log(), T.account("a"), T.intents(), T.intent("bind:v")], set()),
        ([T.identity("r"), T.identity_accounts("r"), T.intents(), T.intent("place:v")], set()),
        ([T.audit_log(), T.organization_names()], set()),
        # A guardian's consent reading the guardian's account beside the minor's: two buckets.
        ([T.verification("v"), T.audit_log(), T.account("minor"), T.account("guardian")], {A, Family.TENANT}),
        ([T.account("a"), T.consent("b")], {A}),
        ([T.intent("unbind:a"), T.account_verifications("b")], {A}),
        ([T.check_mismatches("acct", "a"), T.account("b")], {A}),
        # One account's keys, its verification, its intents and counters named otherwise.
        (
            [
                T.account("a"),
                T.consent("a"),
                T.account_verifications("a"),
                T.check_mismatches("acct", "a"),
                T.intent("erase:a"),
                T.verification("v"),
                T.otp_failures("a+phone"),
            ],
            set(),
        ),
        ([PhoneKeys("0" * 32).otp_failures()], set()),
        ([], set()),
    ],
)
def test_crossed_families_names_what_would_span_slots(keys: list[str], crossed: set[Family]) -> None:
    assert crossed_families(keys) == crossed


def test_accounts_named_reads_the_pseudonym_from_each_account_key() -> None:
    keys = [
        T.account("a1"),
        T.consent("a2"),
        T.account_verifications("a3"),
        T.check_mismatches("acct", "a4"),
        T.intent("unbind:a5"),
        T.intent("erase:a6"),
        T.check_mismatches("principal", "p"),
        T.intent("bind:v1"),
        T.verification("v1"),
        T.audit_log(),
        PhoneKeys("0" * 32).otp_failures(),
        GlobalKeys.SCHEMA,
    ]
    assert accounts_named(keys) == {"a1", "a2", "a3", "a4", "a5", "a6"}


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        (T.audit_log(), True),
        (T.audit_head(), True),
        (T.audit_index("type", "account.bound"), True),
        (T.events_outbox(), True),
        (T.events_accounts(), False),  # the legacy map: not the entry's, though audit() reads it
        (T.organization_names(), False),
        (T.audit_tree_head(), False),
        (BucketKeys("acme", 7).audit_stage(), False),
    ],
)
def test_the_entry_keys_are_the_log_and_its_outbox(key: str, entry: bool) -> None:
    assert is_entry_key(key) is entry


@pytest.mark.parametrize(
    ("key", "subject"),
    [
        (T.account("a1"), "a1"),
        (T.consent("a1"), "a1"),
        (T.account_verifications("a1"), "a1"),
        (T.check_mismatches("acct", "a1"), "a1"),
        (T.intent("unbind:a1"), "a1"),
        (T.identity("ref:with:colons"), "ref:with:colons"),
        (T.identity_accounts("r1"), "r1"),
        (T.rate_limit("claim_refusals", "tag"), "claim_refusals:tag"),
        (T.rate_limit("claim_refusals_audited", "tag"), "claim_refusals:tag"),
        (T.claim_refusal_counted("tag", "v1"), "claim_refusals:tag"),
        (PhoneKeys("0" * 32).otp_failures(), "ph:" + "0" * 32),
        # Names that do not say whose bucket they are in.
        (T.verification("v1"), None),
        (T.otp_failures("a1p1"), None),
        (T.rate_limit("phone_locked_audited", "a1p1"), None),
        (T.intent("bind:v1"), None),
        (T.intent("move:0123abcd"), None),
        (T.audit_log(), None),
    ],
)
def test_a_bucketed_key_names_its_subject_where_it_can(key: str, subject: str | None) -> None:
    assert bucket_subject(key) == subject


@pytest.mark.parametrize(
    ("given", "touched", "crossings"),
    [
        # A commit: its account's keys and its entry's, nothing outside.
        (
            [T.verification("v"), T.audit_log(), T.account("a"), T.intents()],
            [
                T.verification("v"),
                T.account("a"),
                T.audit_head(),
                T.audit_index("acct", "x"),
                T.events_outbox(),
            ],
            [],
        ),
        # The commit as it is: a refusal's counter and the legacy map, built inside Lua.
        (
            [T.verification("v"), T.audit_log(), T.account("a")],
            [T.account("a"), T.rate_limit("claim_refusals", "tag"), T.events_accounts()],
            [Crossing("C", T.rate_limit("claim_refusals", "tag")), Crossing("T", T.events_accounts())],
        ),
        # A guardian's account beside the minor's: one family, two buckets.
        (
            [T.verification("v"), T.audit_log(), T.account("minor"), T.account("guardian")],
            [T.account("minor"), T.account("guardian")],
            [Crossing("A'", T.account("guardian"))],
        ),
        # The place reading a member's account.
        ([T.identity("r"), T.identity_accounts("r")], [T.account("m")], [Crossing("A", T.account("m"))]),
        # Two identities (a move's old and new refs) are two buckets.
        (
            [T.identity("old"), T.identity_accounts("old")],
            [T.identity("new")],
            [Crossing("I'", T.identity("new"))],
        ),
        # A tenant-wide step may touch any of the tenant's keys, and no bucket's.
        ([T.organization_names()], [T.organization_own_names("t"), T.audit_head()], []),
        ([T.reads_open()], [T.account("a")], [Crossing("A", T.account("a"))]),
        # A phone's counters reach neither the tenant's log nor another phone.
        (
            [PhoneKeys("0" * 32).otp_failures()],
            [T.audit_head(), PhoneKeys("1" * 32).otp_failures()],
            [Crossing("T", T.audit_head()), Crossing("P'", PhoneKeys("1" * 32).otp_failures())],
        ),
        # A bucket's own indexes go with any call.
        ([T.intents(), T.intent("place:v")], [T.erasure_due(), T.given_back("tok")], []),
    ],
)
def test_bucket_crossings_names_each_key_outside_the_calls_bucket(
    given: list[str], touched: list[str], crossings: list[Crossing]
) -> None:
    assert bucket_crossings(given, touched) == crossings
