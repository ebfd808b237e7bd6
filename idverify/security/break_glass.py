"""Break-glass: an operator client created on the server's host, without any token.

The bootstrap token stops working once an operator exists, and operators create no operators;
when every operator token is lost, whoever holds the data directory (or the configuration and
keyring of an external Redis) creates one with ``idverify clients create --role operator
--break-glass``. The command line reaches the store the way ``idverify keys`` does (the running
server's socket, or the embedded Redis started under the data-directory lock when no server
runs) and hands this module a client registry over it. The creation is audited in the
operator's tenant like any other, naming the local user and host.
"""

from __future__ import annotations

import getpass
import os
import socket

from idverify.security.clients import ClientRecord, ClientRegistry
from idverify.security.principals import Role


def break_glass_principal() -> str:
    """How the audit entry names who did it: the local user and host (no token is behind it)."""
    return host_principal("break-glass")


def host_principal(command: str) -> str:
    """``<command>/<user>@<host>``: who ran a command on the server's host, for its audit entry."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container: the uid still says who
        user = f"uid {os.getuid()}"
    return f"{command}/{user}@{socket.gethostname()}"


async def create_operator(clients: ClientRegistry, tenant: str, description: str) -> tuple[ClientRecord, str]:
    """Creates an operator client, audited as break-glass; returns its record and its token.

    ``clients`` must digest tokens with the server's keyring, checked against the store, so that
    the token authenticates there.

    Raises:
        InvalidArgument: a bad tenant name or description.
        StoreUnavailable: Redis cannot be reached.
    """
    request = {"principal": break_glass_principal(), "request_id": "", "trace_id": ""}
    return await clients.create(tenant, Role.OPERATOR, description or "break-glass operator", request)
