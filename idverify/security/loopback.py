"""Whether an address stays on this machine: where plaintext is acceptable and where it is not.

Only what cannot leave the machine counts: ``localhost`` and the loopback addresses
(127.0.0.0/8, ::1). Other names are not resolved: what a name resolves to can change under DNS
an attacker controls, so a name is treated as another host.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
