"""Parses the text form of an IP address from a request into its version and integer value.

IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) come back as the IPv4 address they carry, so
both spellings get one answer. An IPv6 zone (``fe80::1%eth0``) is accepted and ignored: it
names a local interface, not a place. Messages name the field, never the value, since an
address is personal data.
"""

from __future__ import annotations

import re
import socket

from idverify.domain.errors import InvalidArgument

__all__ = ["BAD_IP", "parse_address"]

BAD_IP = "BAD_IP"

_MAPPED_PREFIX = 0xFFFF
# RFC 6874 allows unreserved characters in a zone; interface names and indexes fit this.
_ZONE = re.compile(r"[0-9A-Za-z._~-]{1,64}")
# The longest IPv6 text form (with an embedded IPv4 address) plus a zone.
_MAX_LENGTH = 45 + 1 + 64


def parse_address(text: str, field: str = "ip") -> tuple[int, int]:
    """The IP version and integer value of an address in text form.

    Only the standard forms are accepted: dotted quad without leading zeros for IPv4, RFC 4291
    text for IPv6 (as ``ipaddress`` accepts them).

    Args:
        text: the address, as a client sent it.
        field: the request field it came from, named in the error.

    Returns:
        (4, value) for IPv4 and IPv4-mapped IPv6 addresses, (6, value) for other IPv6 ones.

    Raises:
        InvalidArgument: the text is not an IP address (reason ``BAD_IP``).
    """
    try:
        # inet_pton is strict (no leading zeros, no short forms) and much faster than ipaddress.
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, TypeError, UnicodeError):
        pass
    if isinstance(text, str) and ":" in text and len(text) <= _MAX_LENGTH:
        address, percent, zone = text.partition("%")
        if not percent or _ZONE.fullmatch(zone):
            try:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
            except (OSError, ValueError, UnicodeError):
                pass
            else:
                if value >> 32 == _MAPPED_PREFIX:
                    return 4, value & 0xFFFFFFFF
                return 6, value
    raise InvalidArgument(f"{field} is not an IPv4 or IPv6 address", reason=BAD_IP, field=field)
