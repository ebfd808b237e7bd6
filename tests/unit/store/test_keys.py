"""Key names of one tenant: the batch form names the same keys as the single one."""

from __future__ import annotations

import pytest

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
