"""Standard Webhooks signatures: ``whsec_`` secrets and ``v1,<base64 HMAC-SHA256>`` signatures.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` (standardwebhooks.com), so a
receiver checks a delivery with the stock library of its language; the e2e tests check every
delivery with the ``standardwebhooks`` package, not with this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

__all__ = ["SECRET_PREFIX", "Signer", "new_secret", "signature"]

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the form's prefix, not a secret
# 32 random bytes: the spec asks for 24 to 64.
_SECRET_BYTES: Final = 32


def new_secret() -> str:
    """A fresh secret in its shareable form, ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one delivery."""
    return Signer(secret)(message_id, timestamp, body)


class Signer:
    """Signs deliveries with one secret, decoded and keyed once (a copy of the keyed HMAC per message)."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str) -> None:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, message_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header value of one delivery."""
        mac = self._keyed.copy()
        mac.update(f"{message_id}.{timestamp}.".encode())
        mac.update(body)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")
