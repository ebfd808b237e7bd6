"""Signing: what the keyed signer makes, the stock ``standardwebhooks`` library accepts."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from idverify.webhooks.signing import Signer, new_secret, signature


def headers(message_id: str, stamp: int, signed: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(stamp), "webhook-signature": signed}


def test_each_message_signed_by_one_keyed_signer_verifies_alone() -> None:
    """The keyed HMAC is copied per message: no message's bytes leak into the next signature."""
    secret = new_secret()
    sign = Signer(secret)
    verifier = Webhook(secret)
    stamp = int(time.time())
    for n, body in enumerate((b'{"a":1}', b'{"b":2}', b"{}")):
        signed = sign(f"msg_{n}", stamp, body)
        assert signed == signature(secret, f"msg_{n}", stamp, body)
        verifier.verify(body, headers(f"msg_{n}", stamp, signed))
    with pytest.raises(WebhookVerificationError):
        verifier.verify(b'{"a":2}', headers("msg_0", stamp, sign("msg_0", stamp, b'{"a":1}')))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b"{}", headers("msg_2", stamp, sign("msg_2", stamp, b"{}")))
