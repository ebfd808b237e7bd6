# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``authority`` verifier: checks that the claimed name belongs to the claimed ID number.

It asks a configured vendor (Tencent Cloud FaceID's IdCardVerification, Alibaba Cloud's
Id2MetaVerify, or an operator's gateway) to compare them with the authority's records. Only the
name and the number are sent; nothing the vendor answers besides its verdict is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.vendors.api import Check
from idverify.vendors.steps import ClaimStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import VerifierDeps

__all__ = ["AuthorityVerifier"]


class AuthorityVerifier(ClaimStep):
    """Name + ID number against the authority, through ``vendor`` (the only option).

    Its step answers PASS on a match; FAIL with ``AUTHORITY_MISMATCH``, ``NO_RECORD``,
    ``INVALID_NAME``, ``INVALID_DOCUMENT``, ``DOCUMENT_TYPE_UNSUPPORTED`` or ``NAME_REQUIRED``;
    UNAVAILABLE with a ``VENDOR_*`` reason when the vendor cannot decide (down, timed out, busy,
    daily limit). The vendor's code rides along.

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or another option is given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        super().__init__("authority", options, deps, check=Check.NAME_ID)
