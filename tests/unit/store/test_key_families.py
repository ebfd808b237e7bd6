"""Each key's planned family, named from the key alone (docs/ARCHITECTURE.md, "Buckets: the plan", §2)."""

from __future__ import annotations

import pytest

from idverify.store.key_families import Family, accounts_named, crossed_families, family_of
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
