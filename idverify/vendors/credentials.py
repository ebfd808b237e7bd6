# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Vendor credentials, read once at start-up from the places the configuration names.

The configuration holds only references (an environment variable or a file, as a Kubernetes
Secret mounts it), never the secret itself, so that the settings object stays printable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idverify.domain.errors import ConfigError

__all__ = ["CREDENTIAL_OPTIONS", "Credentials", "read_credentials", "read_secret"]

CREDENTIAL_OPTIONS = frozenset({"secret_id_env", "secret_id_file", "secret_key_env", "secret_key_file"})


@dataclass(frozen=True, slots=True)
class Credentials:
    """A key id and its secret (Tencent's SecretId/SecretKey, Alibaba's AccessKey ID/secret).

    ``repr`` shows a prefix of the key id only, so a logged object leaks nothing usable.
    """

    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id[:4]}..., secret=<hidden>)"

    __str__ = __repr__


def read_secret(where: str, options: Mapping[str, Any], stem: str, *, min_length: int = 1) -> str:
    """Read the value that exactly one of ``<stem>_env`` and ``<stem>_file`` points to.

    Args:
        where: the configuration table, for messages (``vendors.tencent``).
        options: the table.
        stem: ``secret_id``, ``secret_key`` or ``secret``.
        min_length: the shortest acceptable value.

    Returns:
        The value, without a trailing newline.

    Raises:
        ConfigError: neither or both are set, the variable is unset or empty, the file cannot be
            read, or the value is too short. The message names the place, never the value.

    """
    env_name = options.get(f"{stem}_env")
    file_name = options.get(f"{stem}_file")
    if (env_name is None) == (file_name is None):
        raise ConfigError(f"{where}: set exactly one of {stem}_env and {stem}_file")
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise ConfigError(f"{where}.{stem}_env: must name an environment variable")
        value = os.environ.get(env_name, "")
        source = f"environment variable {env_name}"
    else:
        if not isinstance(file_name, str) or not file_name:
            raise ConfigError(f"{where}.{stem}_file: must be a path")
        try:
            # Editors and `echo` add a final newline that is not part of the secret.
            value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read {stem} file {file_name}: {type(exc).__name__}") from exc
        source = f"file {file_name}"
    if len(value) < min_length:
        raise ConfigError(f"{where}: {source} must hold at least {min_length} characters")
    return value


def read_credentials(where: str, options: Mapping[str, Any]) -> Credentials:
    """Read a key id and secret from their references in a vendor's table.

    Raises:
        ConfigError: as :func:`read_secret`.

    """
    return Credentials(
        key_id=read_secret(where, options, "secret_id"), secret=read_secret(where, options, "secret_key")
    )
