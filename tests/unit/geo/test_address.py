"""Parsing the text form of an address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idverify.domain.errors import InvalidArgument
from idverify.geo import BAD_IP, parse_address


class TestParseAddress:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1.2.3.4", (4, 0x01020304)),
            ("255.255.255.255", (4, 0xFFFFFFFF)),
            ("::ffff:1.2.3.4", (4, 0x01020304)),
            ("::FFFF:102:304", (4, 0x01020304)),
            ("0:0:0:0:0:ffff:0102:0304", (4, 0x01020304)),
            ("2001:db8::1", (6, 0x20010DB8000000000000000000000001)),
            ("fe80::1%eth0", (6, 0xFE800000000000000000000000000001)),
            ("::1", (6, 1)),
        ],
    )
    def test_valid(self, text: str, expected: tuple[int, int]) -> None:
        """IPv4, IPv6, IPv4-mapped (as IPv4) and zoned (zone ignored) forms parse."""
        assert parse_address(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "256.0.0.1",
            " 1.2.3.4",
            "1.2.3.4\n",
            "1.2.3.4/24",
            "1.2.3.4%eth0",
            "0x1.2.3.4",
            "::1::",
            "2001:db8::g",
            "fe80::1%",
            "fe80::1%eth 0",
            "::ffff:01.2.3.4",
            "1.2.3.4\x00",
            "١.٢.٣.٤",  # noqa: RUF001 - Arabic-Indic digits must be refused
            "x" * 200,
            "localhost",
        ],
    )
    def test_malformed(self, text: str) -> None:
        """Anything else is BAD_IP, naming the field and not the value."""
        with pytest.raises(InvalidArgument) as raised:
            parse_address(text, "client_ip")
        assert (raised.value.reason, raised.value.field) == (BAD_IP, "client_ip")
        assert text.strip() not in raised.value.message or not text.strip()

    def test_default_field(self) -> None:
        """The field defaults to ip."""
        with pytest.raises(InvalidArgument) as raised:
            parse_address("nope")
        assert raised.value.field == "ip"

    @given(st.one_of(st.ip_addresses().map(str), st.text(alphabet="0123456789abcdef.:", max_size=45)))
    def test_agrees_with_ipaddress(self, text: str) -> None:
        """Accepts exactly what ipaddress accepts, with the same value."""
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is None:
            with pytest.raises(InvalidArgument):
                parse_address(text)
            return
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        assert parse_address(text) == (address.version, int(address))
