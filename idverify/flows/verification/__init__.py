"""The signup flow: start a verification, answer its challenge, read it.

This is where the parts meet for one request: domain validation, the verifier steps, the
privacy primitives (one argon2id per verification, sealing, keyed pseudonyms) and the atomic
store scripts. Personal data lives only in the local variables and the start's plan, never in
what is stored. ``VerificationFlow`` (flow.py) is what the servicers use; the modules beside it
hold one concern each.
"""

from idverify.flows.verification.flow import VerificationFlow
from idverify.flows.verification.guardian import GuardianConsent, GuardianConsents
from idverify.flows.verification.plan import StartPlan, StartRequest
from idverify.flows.verification.views import VerificationView

__all__ = [
    "GuardianConsent",
    "GuardianConsents",
    "StartPlan",
    "StartRequest",
    "VerificationFlow",
    "VerificationView",
]
