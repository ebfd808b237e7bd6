"""Where the audit log's Ed25519 signing key comes from: a secret, a file, or first start.

In order: the ``IDVERIFY_AUDIT_SIGNING_KEY`` environment variable (the PEM text, e.g. from a
Kubernetes Secret), the ``audit_signing_key_file`` setting, else ``<data_dir>/audit-signing-key.pem``,
generated (mode 0600) on first start. Every replica of a deployment must use the same key, or
auditors would see heads signed by several; the generated default suits one machine only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idverify.audit.checkpoint import (
    KeyFormatError,
    generate_signing_key_file,
    key_id_for,
    load_private_key,
    read_private_key_file,
)
from idverify.domain.errors import ConfigError

__all__ = ["DEFAULT_KEY_FILE", "SIGNING_KEY_ENV", "load_signing_key"]

SIGNING_KEY_ENV = "IDVERIFY_AUDIT_SIGNING_KEY"
DEFAULT_KEY_FILE = "audit-signing-key.pem"

log = logging.getLogger("idverify.audit")


def load_signing_key(
    data_dir: Path, key_file: str = "", environ: Mapping[str, str] | None = None
) -> Ed25519PrivateKey:
    """The log's signing key, generating the default one on first start.

    Args:
        data_dir: where the generated default lives.
        key_file: the ``audit_signing_key_file`` setting (empty: not set).
        environ: the environment (``os.environ`` when None).

    Raises:
        ConfigError: when the configured key cannot be read or is not an Ed25519 private key.
    """
    env = os.environ if environ is None else environ
    try:
        if env.get(SIGNING_KEY_ENV):
            return load_private_key(env[SIGNING_KEY_ENV].encode())
        if key_file:
            return read_private_key_file(key_file)
    except (OSError, KeyFormatError) as error:
        source = SIGNING_KEY_ENV if env.get(SIGNING_KEY_ENV) else f"audit_signing_key_file {key_file}"
        raise ConfigError(f"{source}: {error}") from None
    path = data_dir / DEFAULT_KEY_FILE
    try:
        key = generate_signing_key_file(path)
    except FileExistsError:
        pass  # The usual case, and also a worker that lost the race to create it.
    except OSError as error:
        raise ConfigError(f"cannot create the audit signing key {path}: {error}") from None
    else:
        log.warning(
            "generated audit signing key %s (key id %s); replicas must share one key: "
            "set audit_signing_key_file or %s in production",
            path,
            key_id_for(key.public_key()),
            SIGNING_KEY_ENV,
        )
        return key
    try:
        return read_private_key_file(path)
    except (OSError, KeyFormatError) as error:
        raise ConfigError(f"audit signing key {path}: {error}") from None
