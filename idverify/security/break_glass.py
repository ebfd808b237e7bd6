"""Break-glass: an operator client created on the server's host, without any token.

The bootstrap token stops working once an operator exists, and operators create no operators;
when every operator token is lost, whoever holds the data directory (or the configuration and
keyring of an external Redis) creates one with ``idverify clients create --role operator
--break-glass``. It reaches Redis the way ``idverify keys`` does: the running server's socket,
or the embedded Redis started under the data-directory lock when no server runs. The creation
is audited in the operator's tenant like any other, naming the local user and host.
"""

from __future__ import annotations

import getpass
import os
import socket

from idverify.config import Settings
from idverify.security.clients import ClientRecord, ClientRegistry
from idverify.security.principals import Role
from idverify.store.clients import RedisClientStore
from idverify.store.key_checks import RedisKeyChecks


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


async def create_operator(settings: Settings, tenant: str, description: str) -> tuple[ClientRecord, str]:
    """Creates an operator client straight in the store; returns its record and its token.

    The keyring is the server's, checked against the store, so the token authenticates there.

    Raises:
        ConfigError: no idverify data in the data directory, or a keyring that does not open it.
        RuntimeError: a server holds the data directory and its Redis does not answer.
        InvalidArgument: a bad tenant name or description.
        StoreUnavailable: Redis cannot be reached.
    """
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415
    from idverify.flows.key_check import open_keyring  # noqa: PLC0415 - keeps `idverify --help` fast

    async with open_store(settings) as redis:
        keyring = await open_keyring(settings, RedisKeyChecks(redis))
        registry = ClientRegistry(RedisClientStore(redis), keyring)
        request = {"principal": break_glass_principal(), "request_id": "", "trace_id": ""}
        return await registry.create(tenant, Role.OPERATOR, description or "break-glass operator", request)
