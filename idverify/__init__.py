"""idverify: real-name identity verification as a gRPC service.

The names below are what a program using idverify needs: the client and the version of a consent
text (README, "A signup in five lines"), and the verifier plugin API (README, "Verifiers are
plugins"). Everything else is the server's own and may move between releases.

Each name is imported on first use, not with the package: every ``idverify`` command, the
container's health probe run every ten seconds among them, imports this package first, and the
client alone would add gRPC and every service's stubs to a command that needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Type checkers cannot read an ``__all__`` computed from the table below: ``import X as X`` tells
# them each name is re-exported.
if TYPE_CHECKING:
    from idverify.client import Client as Client
    from idverify.domain.consent import text_version_of as text_version_of
    from idverify.domain.errors import ConfigError as ConfigError
    from idverify.domain.errors import IdverifyError as IdverifyError
    from idverify.verifiers.base import Challenge as Challenge
    from idverify.verifiers.base import ChallengeVerifier as ChallengeVerifier
    from idverify.verifiers.base import JudgedChallengeVerifier as JudgedChallengeVerifier
    from idverify.verifiers.base import Outcome as Outcome
    from idverify.verifiers.base import SendFailed as SendFailed
    from idverify.verifiers.base import SmsSender as SmsSender
    from idverify.verifiers.base import StepContext as StepContext
    from idverify.verifiers.base import StepResult as StepResult
    from idverify.verifiers.base import Verifier as Verifier
    from idverify.verifiers.base import VerifierDeps as VerifierDeps
    from idverify.verifiers.base import VerifierFactory as VerifierFactory

# Where each public name lives.
_HOMES = {
    "Client": "idverify.client",
    "text_version_of": "idverify.domain.consent",
    "ConfigError": "idverify.domain.errors",
    "IdverifyError": "idverify.domain.errors",
    **dict.fromkeys(
        [
            "Challenge",
            "ChallengeVerifier",
            "JudgedChallengeVerifier",
            "Outcome",
            "SendFailed",
            "SmsSender",
            "StepContext",
            "StepResult",
            "Verifier",
            "VerifierDeps",
            "VerifierFactory",
        ],
        "idverify.verifiers.base",
    ),
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> object:
    """Imports a public name from its home module on first use, and keeps it here."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'idverify' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
