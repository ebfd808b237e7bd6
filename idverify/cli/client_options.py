"""The options of every command that talks to a running server, and the client they open.

Where the server is (``--server``, ``IDVERIFY_SERVER``) and how to reach it: plaintext, or TLS
verified with ``--tls-ca`` (a client certificate with ``--tls-cert``/``--tls-key`` for mutual
TLS), as ``idverify health`` does. A token is never sent in the clear to a host other than this
one unless ``--plaintext`` says the network between is trusted (a pod's sidecar, a private
link): a bearer token read off the wire is a leaked token. Commands add them with
``add_client_options`` and connect with ``open_client``; which token a command sends is the
command's own choice (``admin_token`` for the admin commands).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from idverify.config import DEFAULT_DATA_DIR, DEFAULT_LISTEN
from idverify.domain.errors import ConfigError
from idverify.security.loopback import is_loopback_host

if TYPE_CHECKING:
    from idverify.client import Client

__all__ = ["BOOTSTRAP_TOKEN_FILE", "add_client_options", "admin_token", "is_loopback", "open_client"]

BOOTSTRAP_TOKEN_FILE = "bootstrap-token"  # noqa: S105 - a file name (idverify.server's)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """Adds ``--server`` and the TLS options to ``parser``."""
    parser.add_argument(
        "--server",
        default=os.environ.get("IDVERIFY_SERVER", DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"the server's gRPC address (IDVERIFY_SERVER; default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--tls-ca", default="", metavar="PEM", help="CA bundle: connect with TLS and verify with it"
    )
    parser.add_argument(
        "--tls-server-name",
        default="",
        metavar="NAME",
        help="name the server certificate must carry (default: the host of --server)",
    )
    parser.add_argument("--tls-cert", default="", metavar="PEM", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="client certificate's private key")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="send the token without TLS to a host other than this one (a trusted network only)",
    )


def is_loopback(server: str) -> bool:
    """Whether the gRPC target ``server`` (``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH``) is this host.

    A Unix socket, ``localhost`` and the loopback addresses; names are not resolved
    (idverify.security.loopback says why).
    """
    if server.startswith(("unix:", "unix-abstract:")):
        return True
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 or server.startswith("[") else server
    return is_loopback_host(host)


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{option}: cannot read {path}: {error.strerror or error}") from error


def open_client(args: argparse.Namespace, token: str) -> Client:
    """A client of the server ``args`` name, over TLS when ``--tls-ca`` is given.

    Raises:
        ConfigError: a certificate file cannot be read, the TLS options do not go together, or
            a token would cross the network in the clear without ``--plaintext``.
    """
    import grpc  # noqa: PLC0415 - keeps commands that never connect fast

    from idverify.client import Client  # noqa: PLC0415

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key: give both (mutual TLS) or neither")
    if not args.tls_ca:
        if args.tls_cert or args.tls_server_name:
            raise ConfigError("--tls-cert and --tls-server-name need --tls-ca (TLS)")
        if token and not args.plaintext and not is_loopback(args.server):
            raise ConfigError(
                f"--server {args.server}: the token would cross the network in the clear; "
                "give --tls-ca, or --plaintext if the network between is trusted"
            )
        return Client(args.server, token)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read("--tls-ca", args.tls_ca),
        private_key=_read("--tls-key", args.tls_key) if args.tls_key else None,
        certificate_chain=_read("--tls-cert", args.tls_cert) if args.tls_cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return Client(args.server, token, credentials=credentials, options=options)


def admin_token(args: argparse.Namespace) -> str:
    """``--token``, else ``IDVERIFY_TOKEN``, else the bootstrap token file of the data directory.

    The data directory is ``--data-dir``, else ``IDVERIFY_DATA_DIR``, else ``./idverify-data``.
    With a client certificate (``--tls-cert``) and none of these, no token: the server may map
    the certificate to an admin.

    Raises:
        ConfigError: no token anywhere; the message names the file it looked for.
    """
    token = str(args.token or os.environ.get("IDVERIFY_TOKEN", ""))
    if token:
        return token
    data_dir = args.data_dir or os.environ.get("IDVERIFY_DATA_DIR") or str(DEFAULT_DATA_DIR)
    path = Path(data_dir).absolute() / BOOTSTRAP_TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if args.tls_cert:
            return ""
        raise ConfigError(
            f"no admin token: give --token or IDVERIFY_TOKEN, or run on the server's host with "
            f"--data-dir or IDVERIFY_DATA_DIR naming its data directory (no {path})"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read the bootstrap token {path}: {error.strerror or error}") from error
    if not token:
        raise ConfigError(f"the bootstrap token file {path} is empty")
    return token
