# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""ACS3-HMAC-SHA256 against Alibaba Cloud's published worked example, and its properties."""

# The keys here are the vendors' published example keys, or throwaway ones: not secrets.
# ruff: noqa: S106

from __future__ import annotations

import hashlib
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idverify.vendors import acs3

# The worked example of Alibaba Cloud's "V3 request structure and signature" page (ECS
# RunInstances): https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DOC_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-content-sha256": EMPTY_SHA256,
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-version": "2014-05-26",
}
DOC_QUERY = [
    ("RegionId", "cn-shanghai"),
    ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
]
DOC_SIGNED_HEADERS = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
DOC_CANONICAL_REQUEST = (
    "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
    "host:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\n"
    f"x-acs-content-sha256:{EMPTY_SHA256}\nx-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\n"
    f"{DOC_SIGNED_HEADERS}\n{EMPTY_SHA256}"
)
DOC_STRING_TO_SIGN = "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
DOC_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
DOC_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
    f"SignedHeaders={DOC_SIGNED_HEADERS},Signature={DOC_SIGNATURE}"
)


def doc_signature() -> acs3.Acs3Signature:
    return acs3.sign(
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
        headers=DOC_HEADERS,
        query=DOC_QUERY,
    )


class TestWorkedExample:
    def test_empty_body_hash(self) -> None:
        """The page's x-acs-content-sha256 for an empty body."""
        assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256

    def test_canonical_request(self) -> None:
        """Step 1 reproduces the page's canonical request byte for byte (query sorted by name)."""
        assert doc_signature().canonical_request == DOC_CANONICAL_REQUEST

    def test_string_to_sign(self) -> None:
        """Step 2 reproduces the page's string to sign."""
        assert doc_signature().string_to_sign == DOC_STRING_TO_SIGN

    def test_signature_and_authorization(self) -> None:
        """Steps 3 and 4 give the page's signature and Authorization value."""
        signed = doc_signature()
        assert signed.signature == DOC_SIGNATURE
        assert signed.authorization == DOC_AUTHORIZATION

    def test_parse_authorization(self) -> None:
        """A verifying server splits the header back into its parts."""
        parsed = acs3.parse_authorization(DOC_AUTHORIZATION)
        assert parsed is not None
        assert parsed.access_key_id == "YourAccessKeyId"
        assert ";".join(parsed.signed_headers) == DOC_SIGNED_HEADERS
        assert parsed.signature == DOC_SIGNATURE
        assert acs3.parse_authorization(DOC_AUTHORIZATION.replace("ACS3", "ACS2")) is None

    def test_signing_needs_the_body_hash(self) -> None:
        """A request without x-acs-content-sha256 is refused rather than signed wrongly."""
        headers = {k: v for k, v in DOC_HEADERS.items() if k != "x-acs-content-sha256"}
        with pytest.raises(ValueError, match="x-acs-content-sha256"):
            acs3.sign(access_key_id="a", access_key_secret="b", headers=headers)


class TestEncoding:
    @pytest.mark.parametrize(
        ("raw", "encoded"),
        [
            (" ", "%20"),
            ("*", "%2A"),
            ("~", "~"),
            ("+", "%2B"),
            ("/", "%2F"),
            ("张", "%E5%BC%A0"),
            ("a-_.", "a-_."),
        ],
    )
    def test_the_pages_special_cases(self, raw: str, encoded: str) -> None:
        """Space is %20, * is %2A and ~ stays, as the page requires."""
        assert acs3.percent_encode(raw) == encoded

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(st.text(max_size=60))
    def test_encoding_round_trips_and_leaves_only_unreserved(self, value: str) -> None:
        """Encoded text holds only unreserved characters and %XX, and decodes to the input."""
        encoded = acs3.percent_encode(value)
        assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%")
        assert unquote(encoded, errors="surrogatepass") == value or not value.isprintable()

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=6))
    def test_canonical_query_ignores_parameter_order(self, params: dict[str, str]) -> None:
        """The query is sorted, so any parameter order signs the same."""
        items = list(params.items())
        assert acs3.canonical_query(items) == acs3.canonical_query(list(reversed(items)))

    def test_header_values_keep_their_case(self) -> None:
        """Unlike TC3, ACS3 trims but does not lower-case header values; unsigned headers stay out."""
        canonical, signed = acs3.canonical_headers({"X-Acs-Action": " Id2MetaVerify ", "Accept": "x"})
        assert canonical == "x-acs-action:Id2MetaVerify\n"
        assert signed == "x-acs-action"

    @settings(deadline=None)  # timing varies on a loaded machine; the property does not
    @given(body=st.binary(min_size=1, max_size=128), index=st.integers(0, 127))
    def test_a_changed_body_changes_the_signature(self, body: bytes, index: int) -> None:
        """The body is signed through its hash: one changed byte makes another signature."""
        index %= len(body)
        changed = bytearray(body)
        changed[index] ^= 0x01

        def signature(payload: bytes) -> str:
            headers = {**DOC_HEADERS, "x-acs-content-sha256": hashlib.sha256(payload).hexdigest()}
            return acs3.sign(access_key_id="a", access_key_secret="b", headers=headers).signature

        assert signature(body) != signature(bytes(changed))
