# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The callback address and token a vendor is given for one verification, and their check.

The token is an HMAC of the tenant and verification id under a keyring subkey: nobody without
the keyring can make one, a Redis dump holds none, and a token is good for its own verification
only. Vendors' own tokens (Alibaba's CallbackToken) are whatever the caller chose, so this one
is both: the token handed to the vendor and the token checked when the vendor calls back.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

if TYPE_CHECKING:
    from idverify.verifiers.base import Keyed

__all__ = ["EXTRAS_KEY", "PURPOSE", "CallbackLinks"]

# Where build_verifiers puts the links in VerifierDeps.extras (absent: callbacks are off).
EXTRAS_KEY: Final = "callback_links"
PURPOSE: Final = "vendor-callback"


@dataclass(frozen=True, slots=True)
class CallbackLinks:
    """Makes and checks the per-verification callback address and token."""

    public_url: str
    keyed: Keyed

    def url(self, vendor: str, tenant: str, verification_id: str) -> str:
        """The address the vendor calls: ``<public_url>/<vendor>/<tenant>/<verification id>``."""
        base = self.public_url.rstrip("/")
        return f"{base}/{quote(vendor, safe='')}/{quote(tenant, safe='')}/{verification_id}"

    def token(self, tenant: str, verification_id: str) -> str:
        """The verification's callback token (43 URL-safe characters)."""
        digest = self.keyed.mac(tenant, PURPOSE, verification_id.encode("ascii"))
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def genuine(self, tenant: str, verification_id: str, token: str) -> bool:
        """Whether ``token`` is this verification's, compared in constant time."""
        expected = self.token(tenant, verification_id)
        return hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace"))
