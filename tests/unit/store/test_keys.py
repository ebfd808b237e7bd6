"""Key names of one tenant: the batch form names the same keys as the single one."""

from __future__ import annotations

from idverify.store.keys import TenantKeys


def test_account_keys_of_a_batch_are_each_account_key() -> None:
    keys = TenantKeys("tenant-a")
    pseudonyms = ["0" * 32, "f" * 32, "0123456789abcdef" * 2]

    assert keys.accounts(pseudonyms) == [keys.account(pseudonym) for pseudonym in pseudonyms]
    assert keys.accounts([]) == []
