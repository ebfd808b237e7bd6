"""Kills a process admitting a start at a boundary of its admission's steps, for the crash tests.

``python -m tests.admission_crash URL TENANT PATH NTH`` admits one start (``ATTEMPT``) through
``RedisVerificationStore``, its steps run one by one as on a Cluster (the test-only
``StepRunner(step_by_step=True)``), and stops for good once its NTH step answered, after printing
``paused`` (``tests.cancel_crash.Stopping``). PATH is the admission's path
(``store.admission_steps``): ``read`` (the reads found the claims below their limit: the
reservation and consents as one chain, then the window), ``limit`` (found at their limit, and gone
since: the reservation, the check, the consents, the window) or ``readmit`` (the consents, then
the window). ``killed_after`` runs it and SIGKILLs it there.
"""

from __future__ import annotations

import asyncio
import json
import sys

from idverify.flows.consent import ConsentAdmission
from idverify.flows.context import RequestInfo
from idverify.flows.verification import port
from idverify.store.bucket_steps import StepRunner
from idverify.store.code_sends import CodeSendChains
from idverify.store.connection import RedisClient, connect
from idverify.store.scripts import Scripts
from idverify.store.verifications import RedisVerificationStore
from idverify.testing.memory_code_sends import send_limits
from tests.cancel_crash import Stopping, pseudonym
from tests.sequencer_crash import paused_module

ACCOUNT = pseudonym("admitted-account")
IDENTITY = pseudonym("admitted-identity")
NAME_TAG = "tag-admitted"
CLAIMS_LIMIT = 3
WINDOW_LIMIT = 2
RESERVATION_MS = 400  # short, so that the tests wait it out
AUDIT = RequestInfo(principal="t/registrar/c1", request_id="admit-1").audit_fields()
REQUEST_JSON = json.dumps(AUDIT)
PATHS = {"read": 2, "limit": 4, "readmit": 2}  # each path's steps, so its boundaries


def request_of(label: str) -> port.RequestRef:
    """The request id ``label`` of ``ACCOUNT``, under its account's key and its legacy one."""
    return port.RequestRef(ACCOUNT, pseudonym(label), pseudonym(f"{label}-legacy"))


REQUEST = request_of("admitted-request")


def store_of(
    redis: RedisClient,
    scripts: Scripts | None = None,
    runner: StepRunner | None = None,
    *,
    chained: bool = False,
) -> RedisVerificationStore:
    """A verification store over ``redis``: step by step, in ``runner`` (of ``scripts``) when given.

    ``chained``: as one node runs it (the admission one script).
    """
    scripts = scripts or Scripts(redis)
    steps = runner or StepRunner(scripts, step_by_step=not chained)
    return RedisVerificationStore(redis, scripts, CodeSendChains(scripts, send_limits()), steps=steps)


def consents(verification_id: str, revision: str = "") -> ConsentAdmission:
    """The start's consents as judged on a record of ``revision``, with no grant given."""
    return ConsentAdmission(
        ACCOUNT, "audit-admitted", verification_id, 60_000, revision, (), REQUEST_JSON, "sms"
    )


def window() -> port.WindowCount:
    return port.WindowCount(IDENTITY, WINDOW_LIMIT, 3600, AUDIT)


def attempt(
    tenant: str, verification_id: str, refusals_read: int | None, request: port.RequestRef = REQUEST
) -> port.Admission:
    """A start of ``ACCOUNT`` under ``request``, its claims read as ``refusals_read``."""
    claims = port.ClaimsCheck(NAME_TAG, CLAIMS_LIMIT, AUDIT, refusals_read=refusals_read)
    return port.Admission(
        tenant, request, verification_id, RESERVATION_MS, claims, consents(verification_id), window()
    )


def killed_after(url: str, tenant: str, path: str, nth: int) -> None:
    """Runs one admission on ``path`` in a process and SIGKILLs it once its ``nth`` step answered.

    Raises:
        AssertionError: the process ended before that boundary.
    """
    with paused_module(["tests.admission_crash", url, tenant, path, str(nth)], f"step {nth} of {path}"):
        pass


async def _main(url: str, tenant: str, path: str, nth: str) -> None:
    redis = connect(url)
    scripts = Scripts(redis)
    store = store_of(redis, scripts, Stopping(scripts, int(nth)))
    if path == "readmit":
        await store.readmit(tenant, consents("vf-killed"), window())
    else:
        await store.admit(attempt(tenant, "vf-killed", 0 if path == "read" else CLAIMS_LIMIT))


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:5]))
