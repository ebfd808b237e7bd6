# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""TC3-HMAC-SHA256 against Tencent Cloud's published worked example, and its properties."""

# The keys here are the vendors' published example keys, or throwaway ones: not secrets.
# ruff: noqa: S105, S106

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.vendors import tc3

# The worked example of Tencent Cloud's "Signature v3" page (CVM DescribeInstances), as
# published at https://www.tencentcloud.com/document/api/266/34114 and its sibling pages.
DOC_SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
DOC_SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
DOC_TIMESTAMP = 1551113065
DOC_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
DOC_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Host": "cvm.tencentcloudapi.com"}
DOC_CANONICAL_REQUEST = (
    "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
    "content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
)
DOC_STRING_TO_SIGN = (
    "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
    "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
)
DOC_SIGNATURE = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
DOC_AUTHORIZATION = (
    "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
    "SignedHeaders=content-type;host, Signature=" + DOC_SIGNATURE
)


def doc_signature() -> tc3.Tc3Signature:
    return tc3.sign(
        secret_id=DOC_SECRET_ID,
        secret_key=DOC_SECRET_KEY,
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        headers=DOC_HEADERS,
        payload=DOC_PAYLOAD,
    )


class TestWorkedExample:
    def test_hashed_payload(self) -> None:
        """The payload hash is the page's HashedRequestPayload."""
        assert hashlib.sha256(DOC_PAYLOAD).hexdigest() == DOC_CANONICAL_REQUEST.rsplit("\n", 1)[1]

    def test_canonical_request(self) -> None:
        """Step 1 reproduces the page's CanonicalRequest byte for byte."""
        assert doc_signature().canonical_request == DOC_CANONICAL_REQUEST

    def test_string_to_sign(self) -> None:
        """Step 2 reproduces the page's StringToSign byte for byte."""
        assert doc_signature().string_to_sign == DOC_STRING_TO_SIGN

    def test_signature_and_authorization(self) -> None:
        """Steps 3 and 4 give the page's Signature and Authorization."""
        signed = doc_signature()
        assert signed.signature == DOC_SIGNATURE
        assert signed.authorization == DOC_AUTHORIZATION

    def test_credential_scope_uses_the_utc_date(self) -> None:
        """1551113065 is 2019-02-26 00:44 in Beijing but 2019-02-25 in UTC, as the page warns."""
        assert tc3.credential_scope(DOC_TIMESTAMP, "cvm") == "2019-02-25/cvm/tc3_request"

    def test_parse_authorization(self) -> None:
        """A verifying server splits the header back into its parts."""
        parsed = tc3.parse_authorization(DOC_AUTHORIZATION)
        assert parsed is not None
        assert (parsed.secret_id, parsed.scope, parsed.signed_headers, parsed.signature) == (
            DOC_SECRET_ID,
            "2019-02-25/cvm/tc3_request",
            ("content-type", "host"),
            DOC_SIGNATURE,
        )

    def test_junk_authorization_is_not_parsed(self) -> None:
        """Truncated or foreign headers are refused, not half-read."""
        assert tc3.parse_authorization(DOC_AUTHORIZATION[:-1]) is None
        assert tc3.parse_authorization("Bearer x") is None
        assert tc3.parse_authorization("") is None


headers = st.dictionaries(
    st.from_regex(r"x-tc-[a-z]{1,8}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True),
    max_size=4,
)


class TestProperties:
    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(extra=headers, payload=st.binary(max_size=256), timestamp=st.integers(0, 4_000_000_000))
    def test_header_order_and_case_do_not_matter(
        self, extra: dict[str, str], payload: bytes, timestamp: int
    ) -> None:
        """Headers are canonicalized: reordering or re-casing them signs the same."""
        base = {**DOC_HEADERS, **extra}
        shuffled = {name.upper(): value for name, value in reversed(list(base.items()))}
        one = tc3.sign(
            secret_id="id",
            secret_key="k",
            service="faceid",
            timestamp=timestamp,
            headers=base,
            payload=payload,
        )
        two = tc3.sign(
            secret_id="id",
            secret_key="k",
            service="faceid",
            timestamp=timestamp,
            headers=shuffled,
            payload=payload,
        )
        assert one == two

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(payload=st.binary(min_size=1, max_size=256), index=st.integers(0, 255), bit=st.integers(0, 7))
    def test_one_flipped_bit_changes_the_signature(self, payload: bytes, index: int, bit: int) -> None:
        """Any change to the body makes another signature."""
        index %= len(payload)
        flipped = bytearray(payload)
        flipped[index] ^= 1 << bit

        def signature(body: bytes) -> str:
            return tc3.sign(
                secret_id="id",
                secret_key="k",
                service="faceid",
                timestamp=1,
                headers=DOC_HEADERS,
                payload=body,
            ).signature

        assert signature(payload) != signature(bytes(flipped))

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(secret=st.text(min_size=1, max_size=40), timestamp=st.integers(0, 4_000_000_000))
    def test_signature_is_lowercase_hex_and_parses_back(self, secret: str, timestamp: int) -> None:
        """Whatever the key, the header is well-formed and round-trips through the parser."""
        signed = tc3.sign(
            secret_id="AKIDx",
            secret_key=secret,
            service="faceid",
            timestamp=timestamp,
            headers=DOC_HEADERS,
            payload=b"{}",
        )
        parsed = tc3.parse_authorization(signed.authorization)
        assert parsed is not None
        assert parsed.signature == signed.signature
        assert parsed.scope == tc3.credential_scope(timestamp, "faceid")

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(key=st.text(min_size=1, max_size=20), other=st.text(min_size=1, max_size=20))
    def test_different_keys_sign_differently(self, key: str, other: str) -> None:
        """The signature depends on the secret key."""
        if key == other:
            return
        one, two = (
            tc3.sign(
                secret_id="i", secret_key=k, service="faceid", timestamp=9, headers=DOC_HEADERS, payload=b""
            )
            for k in (key, other)
        )
        assert one.signature != two.signature
