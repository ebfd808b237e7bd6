"""Key names of one tenant: the batch form names the same keys as the single one; a bucketed tenant's."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from redis.crc import key_slot

from idverify.domain.buckets import BUCKETS, bucket_of
from idverify.privacy.keyring import Keyring
from idverify.privacy.verification_ids import new_verification_id, verification_id_bucket
from idverify.store.audit_stages import stage_streams
from idverify.store.buckets import BucketLayout, bucket_slot, search_layout
from idverify.store.key_families import Family, family_of
from idverify.store.keys import BucketKeys, TenantKeys


def test_account_keys_of_a_batch_are_each_account_key() -> None:
    keys = TenantKeys("tenant-a")
    pseudonyms = ["0" * 32, "f" * 32, "0123456789abcdef" * 2]

    assert keys.accounts(pseudonyms) == [keys.account(pseudonym) for pseudonym in pseudonyms]
    assert keys.accounts([]) == []


def test_a_bucket_is_named_by_its_number_or_by_its_label() -> None:
    """The audit stage's numbered buckets keep their keys; a layout's label is the tag itself."""
    assert BucketKeys("acme", 7).audit_stage() == "iv1:{t:acme:7}:audit:stage"
    assert BucketKeys("acme", "t:acme:98304").audit_stage() == "iv1:{t:acme:98304}:audit:stage"
    assert TenantKeys("acme").buckets() == "iv1:{t:acme}:buckets"


@pytest.mark.parametrize(
    "label",
    [
        "t:other:5",
        "t:acme:05",
        "t:acme:-1",
        "t:acme:x",
        "t:acme:5:6",
        "acme:5",
        "t:acme:",
        "t:acme:٣",
        "{t:acme:5}",
    ],
)
def test_a_label_of_another_tenant_or_of_another_form_is_refused(label: str) -> None:
    """A label names its tenant: one of another tenant's buckets can never pass for this tenant's."""
    with pytest.raises(ValueError, match="invalid bucket label"):
        BucketKeys("acme", label)


TENANT = "acme"
ACCOUNT = "0123456789abcdef" * 2
OTHER_ACCOUNT = "fedcba9876543210" * 2
REF = "AbCdEf0123-_" * 4
COUNTER = "c0ffee" * 5 + "aa"
TAG = "tag-of-an-org"


@pytest.fixture(scope="module")
def layout() -> BucketLayout:
    return search_layout(TENANT)


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring.generate()


def _namers(layout: BucketLayout | None, keyring: Keyring) -> TenantKeys:
    return TenantKeys(
        TENANT, layout, verification_bucket=functools.partial(verification_id_bucket, keyring, TENANT)
    )


def _slot_of(key: str) -> int:
    return key_slot(key.encode())


class TestWithoutALayout:
    """Every server today: the names are the ones the data holds, whatever places a key in a bucket."""

    def test_the_tenant_has_one_index_of_intents_and_of_erasures(self, keyring: Keyring) -> None:
        """A reader of every bucket's index reads today's one key of each."""
        keys = _namers(None, keyring)
        [prefix] = keys.bucket_prefixes()
        assert keys.intents(beside=prefix) == keys.intents() == f"iv1:{{t:{TENANT}}}:intents"
        assert keys.erasure_due(beside=prefix) == f"iv1:{{t:{TENANT}}}:erasure:due"

    def test_every_bucketed_family_keeps_its_name_byte_for_byte(self, keyring: Keyring) -> None:
        """The names are pinned as text, so a namer that moved any of them fails here."""
        keys = _namers(None, keyring)
        vid = "ab" * 16
        beside = keys.account(ACCOUNT)
        assert [
            keys.verification(vid),
            keys.request("rq", ACCOUNT),
            keys.request("rq"),
            keys.request_released(vid),
            keys.account(ACCOUNT),
            *keys.accounts([ACCOUNT, OTHER_ACCOUNT]),
            keys.identity(REF),
            keys.identity_accounts(REF),
            keys.otp_failures("op", ACCOUNT),
            keys.otp_failures("op"),
            keys.rate_limit("identity", COUNTER),
            keys.rate_limit("phone_locked_audited", "op", ACCOUNT),
            keys.rate_limit("sends-tenant", "day"),
            keys.claim_refusal_counted(TAG, vid),
            keys.given_back("tok", beside),
            keys.given_back("tok"),
            keys.check_mismatches("acct", ACCOUNT),
            keys.check_mismatches("principal", "p1"),
            keys.consent(ACCOUNT),
            keys.account_verifications(ACCOUNT),
            keys.intents(beside),
            keys.intents(),
            keys.intent("unbind:x", beside),
            keys.intent("unbind:x"),
            keys.erasure_due(beside),
            keys.erasure_due(),
            keys.audit_entries(beside),
        ] == [
            f"iv1:{{t:acme}}:vf:{vid}",
            "iv1:{t:acme}:req:rq",
            "iv1:{t:acme}:req:rq",
            f"iv1:{{t:acme}}:released:{vid}",
            f"iv1:{{t:acme}}:acct:{ACCOUNT}",
            f"iv1:{{t:acme}}:acct:{ACCOUNT}",
            f"iv1:{{t:acme}}:acct:{OTHER_ACCOUNT}",
            f"iv1:{{t:acme}}:id:{REF}",
            f"iv1:{{t:acme}}:idacc:{REF}",
            "iv1:{t:acme}:otpfail:op",
            "iv1:{t:acme}:otpfail:op",
            f"iv1:{{t:acme}}:rl:identity:{COUNTER}",
            "iv1:{t:acme}:rl:phone_locked_audited:op",
            "iv1:{t:acme}:rl:sends-tenant:day",
            f"iv1:{{t:acme}}:rl:claim_refusals_counted:{TAG}:{vid}",
            "iv1:{t:acme}:givenback:tok",
            "iv1:{t:acme}:givenback:tok",
            f"iv1:{{t:acme}}:chkfail:acct:{ACCOUNT}",
            "iv1:{t:acme}:chkfail:principal:p1",
            f"iv1:{{t:acme}}:consent:{ACCOUNT}",
            f"iv1:{{t:acme}}:acctvf:{ACCOUNT}",
            "iv1:{t:acme}:intents",
            "iv1:{t:acme}:intents",
            "iv1:{t:acme}:intent:unbind:x",
            "iv1:{t:acme}:intent:unbind:x",
            "iv1:{t:acme}:erasure:due",
            "iv1:{t:acme}:erasure:due",
            "iv1:{t:acme}:audit:log",
        ]
        assert not keys.bucketed


class TestWithALayout:
    """A bucketed tenant: each family of §2's table in its bucket's slot, the tenant-wide ones in T's."""

    def test_each_buckets_index_is_named_beside_its_prefix_in_its_slot(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        """A reader of every bucket's intents and erasures due names 1,024 keys, bucket b's in b's slot."""
        keys = _namers(layout, keyring)
        prefixes = keys.bucket_prefixes()
        assert len(prefixes) == BUCKETS
        for bucket, prefix in enumerate(prefixes):
            assert {_slot_of(keys.intents(beside=prefix)), _slot_of(keys.erasure_due(beside=prefix))} == {
                bucket_slot(TENANT, bucket)
            }
        # An account's index is the one of its bucket's prefix.
        assert keys.intents(beside=keys.account(ACCOUNT)) == keys.intents(beside=prefixes[bucket_of(ACCOUNT)])

    def test_an_accounts_families_are_in_its_pseudonyms_bucket(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        keys = _namers(layout, keyring)
        slot = bucket_slot(TENANT, bucket_of(ACCOUNT))
        named = [
            keys.account(ACCOUNT),
            *keys.accounts([ACCOUNT]),
            keys.consent(ACCOUNT),
            keys.account_verifications(ACCOUNT),
            keys.check_mismatches("acct", ACCOUNT),
            keys.request("rq", ACCOUNT),
            keys.otp_failures("op", ACCOUNT),
            keys.rate_limit("phone_locked_audited", "op", ACCOUNT),
        ]
        assert {_slot_of(key) for key in named} == {slot}
        assert {family_of(key) for key in named} == {Family.ACCOUNT}
        assert _slot_of(keys.account(OTHER_ACCOUNT)) == bucket_slot(TENANT, bucket_of(OTHER_ACCOUNT)) != slot

    def test_an_identitys_keys_are_in_its_refs_bucket(self, layout: BucketLayout, keyring: Keyring) -> None:
        keys = _namers(layout, keyring)
        named = [keys.identity(REF), keys.identity_accounts(REF)]
        assert {_slot_of(key) for key in named} == {bucket_slot(TENANT, bucket_of(REF))}
        assert {family_of(key) for key in named} == {Family.IDENTITY}

    @pytest.mark.parametrize(
        "purpose",
        [
            "identity",
            "claim_refusals",
            "phone",
            "phone_all_tenants",
            "identity_audited",
            "phone_all_tenants_audited",
        ],
    )
    def test_a_counter_and_its_marks_are_in_its_own_pseudonyms_bucket(
        self, layout: BucketLayout, keyring: Keyring, purpose: str
    ) -> None:
        key = _namers(layout, keyring).rate_limit(purpose, COUNTER)
        assert _slot_of(key) == bucket_slot(TENANT, bucket_of(COUNTER))
        assert family_of(key) is Family.COUNTER

    def test_a_refused_claims_count_mark_is_beside_its_counter(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        keys = _namers(layout, keyring)
        counter = keys.rate_limit("claim_refusals", TAG)
        assert _slot_of(keys.claim_refusal_counted(TAG, "ab" * 16)) == _slot_of(counter)
        assert _slot_of(counter) == bucket_slot(TENANT, bucket_of(TAG))

    def test_a_verification_is_in_the_bucket_its_id_names(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        """New ids name their account's bucket, so a verification sits beside its account."""
        keys = _namers(layout, keyring)
        account_bucket = bucket_of(ACCOUNT)
        vid = new_verification_id(keyring, TENANT, account_bucket)
        assert _slot_of(keys.verification(vid)) == _slot_of(keys.account(ACCOUNT))
        assert _slot_of(keys.request_released(vid)) == _slot_of(keys.account(ACCOUNT))
        other = new_verification_id(keyring, TENANT, (account_bucket + 1) % BUCKETS)
        assert _slot_of(keys.verification(other)) == bucket_slot(TENANT, (account_bucket + 1) % BUCKETS)

    def test_a_buckets_own_indexes_are_beside_the_key_their_step_is_given(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        keys = _namers(layout, keyring)
        for beside in (keys.account(ACCOUNT), keys.identity(REF), keys.rate_limit("phone", COUNTER)):
            named = [
                keys.intents(beside),
                keys.intent("place:x", beside),
                keys.erasure_due(beside),
                keys.given_back("tok", beside),
            ]
            assert {_slot_of(key) for key in named} == {_slot_of(beside)}
            # An intent's record goes with its kind's family (key_families); the indexes with any.
            assert {family_of(key) for key in named if ":intent:" not in key} == {Family.LOCAL}
            label = beside[len("iv1:{") :].partition("}")[0]
            assert keys.audit_entries(beside) == BucketKeys(TENANT, label).audit_stage()
        assert keys.intents(keys.organization_names()) == "iv1:{t:acme}:intents"
        assert keys.audit_entries(keys.organization_names()) == keys.audit_log()

    def test_a_buckets_stage_is_read_where_its_steps_stage_entries(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        """Bucket b's stage is its label's, where ``audit_entries`` stages; else the numbered one."""
        keys = _namers(layout, keyring)
        assert keys.bucket_count == layout.count
        stage = stage_streams(TENANT, keys)
        assert stage(bucket_of(ACCOUNT)) == keys.audit_entries(keys.account(ACCOUNT))
        assert [stage(b) for b in range(layout.count)] == [
            BucketKeys(TENANT, label).audit_stage() for label in layout.labels
        ]
        flat = TenantKeys(TENANT)
        assert flat.bucket_count is None
        assert (
            stage_streams(TENANT, flat)(3)
            == BucketKeys(TENANT, 3).audit_stage()
            == "iv1:{t:acme:3}:audit:stage"
        )

    def test_the_tenant_wide_families_keep_their_names(self, layout: BucketLayout, keyring: Keyring) -> None:
        bucketed, flat = _namers(layout, keyring), TenantKeys(TENANT)
        assert [
            bucketed.audit_log(),
            bucketed.organization_names(),
            bucketed.organization_own_names(TAG),
            bucketed.events_outbox(),
            bucketed.reads_open(),
            bucketed.rate_limit("sends-tenant", "day"),
            bucketed.check_mismatches("principal", "p1"),
            bucketed.buckets(),
        ] == [
            flat.audit_log(),
            flat.organization_names(),
            flat.organization_own_names(TAG),
            flat.events_outbox(),
            flat.reads_open(),
            flat.rate_limit("sends-tenant", "day"),
            flat.check_mismatches("principal", "p1"),
            flat.buckets(),
        ]
        assert bucketed.bucketed

    def test_a_key_whose_bucket_its_arguments_do_not_say_is_refused(
        self, layout: BucketLayout, keyring: Keyring
    ) -> None:
        """Never guessed into the tenant's slot, where a step would find another record than its own."""
        keys = _namers(layout, keyring)
        calls: tuple[Callable[[], object], ...] = (
            lambda: keys.request("rq"),
            lambda: keys.otp_failures("op"),
            lambda: keys.rate_limit("phone_locked_audited", "op"),
            keys.intents,
            lambda: keys.intent("unbind:x"),
            keys.erasure_due,
            keys.audit_entries,
            lambda: keys.given_back("tok"),
            lambda: keys.intents("iv1:{t:acmex:5}:acct:x"),  # another tenant whose name starts alike
            lambda: keys.intents("iv1:{global}:schema"),
            lambda: TenantKeys(TENANT, layout).verification("ab" * 16),
        )
        for call in calls:
            with pytest.raises(ValueError, match="bucketed tenant"):
                call()

    def test_another_tenants_layout_is_refused(self, layout: BucketLayout) -> None:
        with pytest.raises(ValueError, match="names no key of tenant"):
            TenantKeys("other", layout)
