"""Where a webhook may be sent: no SSRF through a subscription.

A subscription's URL is https (plain http only in development mode), names no credentials, and
its host resolves only to public addresses: loopback, private, link-local (cloud metadata at
169.254.169.254), multicast, unspecified and reserved ranges are refused unless
``webhooks.allow_private_destinations`` allows them. The host is resolved again at every
delivery and the request goes to the address that was checked (the name stays the TLS server
name and Host header), so a name that resolves elsewhere later (DNS rebinding) is caught.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from idverify.domain.errors import InvalidArgument

__all__ = ["Destination", "DestinationRefused", "check_url", "resolve"]

MAX_URL_LENGTH: Final = 2048
_RESOLVE_TIMEOUT_SECONDS: Final = 5.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """A URL that may not be delivered to; ``code`` is short and safe to log and store."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the address its request goes to."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    address: str


@functools.lru_cache(maxsize=256)
def check_url(url: str, *, development: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of an acceptable URL, before resolving it.

    Kept per URL (a pure function of it): a delivery checks its subscription's URL each time,
    and parsing it was about a twentieth of the delivery task's samples. A refusal is not kept.

    Raises:
        DestinationRefused: not an http(s) URL this mode allows, or one with credentials.
    """
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise DestinationRefused(f"a URL of at most {MAX_URL_LENGTH} printable characters", "BAD_URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise DestinationRefused("not a URL", "BAD_URL") from error
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise DestinationRefused("an https:// URL with a host", "BAD_URL")
    if parts.scheme == "http" and not development:
        raise DestinationRefused("https only (plain http is for development mode)", "PLAIN_HTTP")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("no credentials in the URL: receivers check the signature", "BAD_URL")
    if parts.fragment:
        raise DestinationRefused("no #fragment", "BAD_URL")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target


def _refusal(address: IpAddress) -> str:
    """Why an address is not a public destination, or empty when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, refused in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved or not address.is_global),
    ):
        if refused:
            return kind
    return ""


async def resolve(url: str, *, development: bool, allow_private: bool) -> Destination:
    """The checked destination of ``url``: every address its host resolves to must be allowed.

    Raises:
        DestinationRefused: the URL is not acceptable, its host does not resolve, or one of its
            addresses is not public (and private ones are not allowed).
    """
    scheme, host, port, target = check_url(url, development=development)
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as error:
            raise DestinationRefused(f"the host {host[:80]!r} does not resolve", "UNRESOLVABLE") from error
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise DestinationRefused(f"the host {host[:80]!r} does not resolve", "UNRESOLVABLE")
    if not allow_private:
        for address in addresses:
            kind = _refusal(address)
            if kind:
                raise DestinationRefused(
                    f"the host resolves to a {kind} address ({address}); not a public destination",
                    "PRIVATE_DESTINATION",
                )
    return Destination(url, scheme, host, port, target, str(addresses[0]))


async def check_destination(url: str, *, development: bool, allow_private: bool) -> Destination:
    """:func:`resolve` for a request: a refusal is INVALID_ARGUMENT naming ``url``.

    Raises:
        InvalidArgument: naming ``url``, with the refusal's reason code.
    """
    try:
        return await resolve(url, development=development, allow_private=allow_private)
    except DestinationRefused as refused:
        # Each reason spelled out, so that docs/REASON_CODES.md finds it.
        match refused.code:
            case "PRIVATE_DESTINATION":
                raise InvalidArgument(refused.message, reason="PRIVATE_DESTINATION", field="url") from refused
            case "PLAIN_HTTP":
                raise InvalidArgument(refused.message, reason="PLAIN_HTTP", field="url") from refused
            case "UNRESOLVABLE":
                raise InvalidArgument(refused.message, reason="UNRESOLVABLE", field="url") from refused
            case _:
                raise InvalidArgument(refused.message, reason="BAD_URL", field="url") from refused
