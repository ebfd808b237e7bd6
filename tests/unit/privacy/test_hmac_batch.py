"""hmac_sha256_each: the batch form of HMAC-SHA256 gives the standard library's bytes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.privacy.hmac_batch import hmac_sha256_each

MESSAGES = [b"", b"a", b"acct-1", "账户-七".encode(), b"x" * 55, b"y" * 64, b"z" * 1000]


class TestHmacSha256Each:
    @pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
    def test_equals_hmac_digest(self, key_length: int) -> None:
        """Every key length (shorter than, equal to and longer than a block) gives HMAC's bytes."""
        key = bytes(range(256))[:key_length] if key_length <= 256 else b"k" * key_length
        assert hmac_sha256_each(key, MESSAGES) == [hmac.digest(key, m, hashlib.sha256) for m in MESSAGES]

    @given(key=st.binary(max_size=200), messages=st.lists(st.binary(max_size=300), max_size=20))
    def test_equals_hmac_new(self, key: bytes, messages: list[bytes]) -> None:
        """Any key and batch give what ``hmac.new`` gives for each message."""
        expected = [hmac.new(key, message, hashlib.sha256).digest() for message in messages]
        assert hmac_sha256_each(key, messages) == expected

    def test_messages_do_not_leak_into_each_other(self) -> None:
        """A message's digest does not depend on the messages before it in the batch."""
        key = b"k" * 32
        assert hmac_sha256_each(key, [b"b"]) == hmac_sha256_each(key, [b"a", b"b"])[1:]

    def test_empty_batch(self) -> None:
        """No messages give no digests."""
        assert hmac_sha256_each(b"k" * 32, []) == []
