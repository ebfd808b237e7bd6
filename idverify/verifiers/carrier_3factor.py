# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``carrier_3factor`` verifier: checks that the mobile number is registered to the claimed identity.

Carriers register every mainland number to an identity; a vendor (FaceID's PhoneVerification in
detailed mode, Alibaba's Mobile3MetaDetailVerify) compares the three. It proves registration,
not possession: methods follow it with ``sms_otp``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.vendors.api import Check
from idverify.vendors.steps import ClaimStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import VerifierDeps

__all__ = ["Carrier3FactorVerifier"]


class Carrier3FactorVerifier(ClaimStep):
    """Name + ID number + mainland mobile number against the carrier, through ``vendor``.

    Its step answers PASS on a match; FAIL with ``CARRIER_NAME_MISMATCH``, ``CARRIER_ID_MISMATCH``,
    ``CARRIER_NAME_ID_MISMATCH``, ``CARRIER_MISMATCH``, ``NO_RECORD``, an ``INVALID_*`` reason,
    ``PHONE_REQUIRED`` or ``PHONE_NOT_SUPPORTED`` (not a mainland mobile); UNAVAILABLE with a
    ``VENDOR_*`` reason (``VENDOR_UNSUPPORTED`` for a number range the carrier check does not
    cover).

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or another option is given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        super().__init__("carrier_3factor", options, deps, check=Check.CARRIER)
