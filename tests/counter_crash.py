"""Kills a process between a count in two slots and its give-back, for the crash tests.

``python -m tests.counter_crash URL KIND TENANT SUBJECT`` counts one call in two slots with its
steps run at once as on a Cluster (``StepRunner(step_by_step=True)``), and stops for good once
both answered, before any give-back, after printing ``paused``; ``killed_between`` runs it and
SIGKILLs it there. KIND ``send`` counts a code send to the phone SUBJECT (``store.code_sends``,
under ``LIMITS``); ``check`` counts a wrong identity claim against the account SUBJECT
(``store.identity_checks``, under ``CHECK_LIMITS``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time

from idverify.flows.identity_check import CheckStep, CheckTally
from idverify.security.code_sends import SendPseudonyms, SendToCount
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import RedisCodeSends
from idverify.store.connection import connect
from idverify.store.identity_checks import RedisIdentityChecks
from idverify.store.scripts import Scripts
from idverify.testing.memory_code_sends import send_limits
from tests.sequencer_crash import paused_module

PRINCIPAL = "registrar01"
REQUEST = {"principal": PRINCIPAL, "request_id": "r1", "trace_id": ""}
LIMITS = send_limits(per_phone_per_hour=2, per_principal_per_minute=4)
CHECK_LIMITS = (2, 4)  # wrong claims a day per account, per principal


def send_to(tenant: str, phone: str) -> SendToCount:
    """A send of a code to ``phone`` for one account of ``tenant``, by ``PRINCIPAL``."""
    deployment = hashlib.md5(phone.encode(), usedforsecurity=False).hexdigest()
    names = SendPseudonyms(f"acct:{phone}", f"{tenant}:{phone}", deployment)
    return SendToCount(tenant, names, PRINCIPAL, 3, REQUEST)


def check_of(tenant: str, account: str) -> CheckTally:
    """A check of a claim against ``account`` of ``tenant``, by ``PRINCIPAL``."""
    per_account, per_principal = CHECK_LIMITS
    audit = {**REQUEST, "account": account}
    return CheckTally(tenant, account, PRINCIPAL, per_account, per_principal, 86_400_000, audit)


class StoppingRunner(StepRunner):
    """Stops the process dead once the counts answered, before the caller could give one back."""

    async def _reached(self, sequence: str, done: int) -> None:
        del sequence, done
        print("paused", flush=True)  # noqa: T201 - the line the killing test waits for
        # Blocks the loop: nothing else of this process runs again.
        time.sleep(3600)  # noqa: ASYNC251


def killed_between(url: str, kind: str, tenant: str, subject: str) -> None:
    """Runs one count in a process and SIGKILLs it between its two slots' counts and the give-back.

    Raises:
        AssertionError: the process ended before the counts answered.
    """
    with paused_module(["tests.counter_crash", url, kind, tenant, subject], f"the {kind}'s counts"):
        pass


async def _main(url: str, kind: str, tenant: str, subject: str) -> None:
    redis = connect(url)
    scripts = Scripts(redis)
    runner = StoppingRunner(scripts, step_by_step=True)
    if kind == "send":
        await RedisCodeSends(scripts, LIMITS, steps=runner).count_send(send_to(tenant, subject))
    else:
        await RedisIdentityChecks(redis, scripts, steps=runner).tally(
            check_of(tenant, subject), CheckStep.MISMATCH
        )


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:5]))
