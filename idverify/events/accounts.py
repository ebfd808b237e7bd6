"""The platform's account id an event names, sealed in the store, opened when the event is read.

No audit entry holds an account id (only its audit pseudonym), yet a platform needs its own id
on each event. A step that knows the id passes it sealed, with the pseudonym it belongs to; the
prelude's ``outbox()`` puts it in the event's outbox record, and keeps it in the account's own
hash (``event_account``) once the account is bound, for the steps that do not know it, until
erasure deletes it with the account.
"""

from __future__ import annotations

import json
from typing import Final

from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer, SealError, associated_data, sealed_from_text, sealed_to_text

__all__ = ["EVENT_ACCOUNT", "event_account_fields", "open_event_account", "request_naming_account"]

EVENT_ACCOUNT: Final = "event-account"
"""The sealing purpose of the account id kept for events."""


def event_account_fields(keyring: Keyring, sealer: Sealer, tenant: str, account_id: str) -> dict[str, str]:
    """The audit request fields that name an account and give its events the account's id.

    ``account`` is the audit pseudonym every entry carries; ``event_account`` (sealed) and
    ``event_account_for`` (whose it is) never reach the entry (the prelude's ``outbox()``).
    """
    audit_ps = keyring.pseudonym(tenant, "audit", account_id)
    sealed = sealer.seal(account_id.encode(), associated=associated_data(tenant, EVENT_ACCOUNT, audit_ps))
    return {"account": audit_ps, "event_account": sealed_to_text(sealed), "event_account_for": audit_ps}


def request_naming_account(
    audit_fields: dict[str, str], keyring: Keyring, sealer: Sealer, tenant: str, account_id: str
) -> str:
    """The JSON audit request of a change to an account, with the account's id sealed for its events."""
    return json.dumps({**audit_fields, **event_account_fields(keyring, sealer, tenant, account_id)})


def open_event_account(sealer: Sealer, tenant: str, audit_ps: str, sealed_text: str) -> str:
    """The account id sealed for ``audit_ps``; empty when there is none or it does not open."""
    if not sealed_text:
        return ""
    try:
        sealed = sealed_from_text(sealed_text)
        return sealer.unseal(sealed, associated=associated_data(tenant, EVENT_ACCOUNT, audit_ps)).decode()
    except (SealError, UnicodeDecodeError):
        # A value that does not open names no account: the event still says what happened.
        return ""
