"""Which URLs a subscription may name, and where its requests go (no SSRF)."""

from __future__ import annotations

import asyncio

import pytest

from idverify.webhooks.destinations import DestinationRefused, resolve


def refusal(url: str, *, development: bool = False, allow_private: bool = False) -> str:
    try:
        asyncio.run(resolve(url, development=development, allow_private=allow_private))
    except DestinationRefused as refused:
        return refused.code
    return ""


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.8.9.10/",
        "https://10.0.0.1/",
        "https://172.16.5.4/",
        "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/",  # carrier-grade NAT: not public
        "https://0.0.0.0/",
        "https://224.0.0.251/",
        "https://255.255.255.255/",
        "https://[::1]/",
        "https://[::]/",
        "https://[fe80::1]/",
        "https://[fc00::1]/",
        "https://[ff02::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://localhost/",
        "https://LocalHost:8443/",
    ],
)
def test_non_public_destinations_are_refused(url: str) -> None:
    assert refusal(url) == "PRIVATE_DESTINATION"
    assert refusal(url, allow_private=True) == ""


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://8.8.8.8/", "PLAIN_HTTP"),
        ("ftp://8.8.8.8/", "BAD_URL"),
        ("https://user:secret@8.8.8.8/", "BAD_URL"),
        ("https://8.8.8.8/#frag", "BAD_URL"),
        ("https:///nohost", "BAD_URL"),
        ("https://8.8.8.8:99999/", "BAD_URL"),
        ("https://8.8.8.8/ with space", "BAD_URL"),
        ("https://8.8.8.8/\x00", "BAD_URL"),
        ("https://" + "a" * 3000 + ".com/", "BAD_URL"),
        ("https://no-such-host.invalid/", "UNRESOLVABLE"),
    ],
)
def test_malformed_or_plain_urls_are_refused(url: str, code: str) -> None:
    assert refusal(url) == code


def test_plain_http_only_in_development_mode() -> None:
    assert refusal("http://8.8.8.8/", development=True) == ""


def test_a_public_address_is_where_the_request_goes() -> None:
    destination = asyncio.run(resolve("https://8.8.8.8:8443/a/b?c=d", development=False, allow_private=False))
    assert (destination.scheme, destination.address, destination.port, destination.target) == (
        "https",
        "8.8.8.8",
        8443,
        "/a/b?c=d",
    )
