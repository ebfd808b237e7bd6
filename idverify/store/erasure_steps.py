"""An account's erasure as a step sequence (docs/ARCHITECTURE.md, "3.3 Erasure"), and its repair.

The account's step (``erase_account.lua``: its records deleted, ``account.erased`` written, its
queue member removed) and the tenant's (``erase_minutes.lua``: the account leaves the open
minutes of reads). The account is deleted before it leaves the minutes, so a later read, which
records only accounts that exist, cannot put it back. Step by step, the account's step writes the
intent ``erase:<account pseudonym>``, removed last (``store.bucket_steps``); the repairer resumes
from it with the minutes' step, which is idempotent, and never re-creates anything: the account's
step is done (the account is gone) and its entry already written, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from idverify.store.bucket_steps import Intent, StepRunner
from idverify.store.connection import as_text
from idverify.store.keys import TenantKeys
from idverify.store.read_steps import ERASED_KEEP_MS
from idverify.store.scripts import ChainStep

__all__ = ["INTENT_KIND", "ErasureSteps", "intent_member"]

INTENT_KIND = "erase"


def intent_member(account_ps: str) -> str:
    """The intent an account's erasure writes: ``erase:<account pseudonym>``."""
    return f"{INTENT_KIND}:{account_ps}"


class ErasureSteps:
    """Builds and runs an account's erasure's steps on a :class:`StepRunner`.

    ``keys`` names a tenant's keys (today's by default; a bucketed tenant's puts the account's
    step, its queue, intent and entry in the account's bucket).
    """

    def __init__(self, runner: StepRunner, *, keys: Callable[[str], TenantKeys] = TenantKeys) -> None:
        self._runner = runner
        self._keys = keys

    async def erase(
        self, tenant: str, account_ps: str, request_json: str, ids: Sequence[str], extra: Sequence[str]
    ) -> str:
        """Erases the account as read (``ids``: its verifications, ``extra``: their keys and counters).

        Its first step's reply: ``OK`` erased now, ``GONE`` not queued or not due (or its
        cancellation not finished yet), ``RETRY`` its verifications changed since they were read.
        """
        keys = self._keys(tenant)
        account = keys.account(account_ps)
        member = intent_member(account_ps)
        delay = "" if self._runner.chained else self._runner.intent_delay_ms(2)
        first = ChainStep(
            "erase_account",
            [
                keys.erasure_due(beside=account),
                keys.audit_entries(account),
                account,
                keys.consent(account_ps),
                keys.account_verifications(account_ps),
                keys.intents(beside=account),
                keys.intent(member, beside=account),
                *extra,
            ],
            [account_ps, request_json, json.dumps(list(ids)), delay],
            proceed_on=("OK",),
        )
        intent = self._intent(keys, account_ps)
        # Step by step, a read of the account in flight records after its own read: the erased
        # account is named for it a while (store.read_steps).
        keep = "" if self._runner.chained else str(ERASED_KEEP_MS)
        minutes = self._minutes(keys, account_ps, keep)
        replies = await self._runner.run("erase", [first, minutes], intent=intent)
        return as_text(replies[0][0])

    async def resume(self, tenant: str, account_ps: str) -> None:
        """Runs the minutes' step from the intent, then removes the intent."""
        keys = self._keys(tenant)
        intent = self._intent(keys, account_ps)
        minutes = self._minutes(keys, account_ps, str(ERASED_KEEP_MS))
        await self._runner.run("erase-repair", [minutes], intent=intent, chain=False)

    @staticmethod
    def _intent(keys: TenantKeys, account_ps: str) -> Intent:
        """The intent ``erase:<ps>``, in the account's bucket: removed once the minutes' step is done."""
        account, member = keys.account(account_ps), intent_member(account_ps)
        return Intent(
            keys.intents(beside=account), keys.intent(member, beside=account), member, removed_after=("OK",)
        )

    @staticmethod
    def _minutes(keys: TenantKeys, account_ps: str, keep: str) -> ChainStep:
        return ChainStep("erase_minutes", [keys.reads_open(), keys.reads_erased()], [account_ps, keep])
