"""The flows' dependencies for tests, as the server builds them but with the fastest indexing.

Identity indexing runs with ``TEST_ONLY_FAST``, and the verifiers are the default configuration's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

from idverify.config import Settings, load_settings
from idverify.domain.age import today_in_shanghai
from idverify.flows.context import FlowDeps
from idverify.privacy.identity_index import TEST_ONLY_FAST, IdentityIndexer
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.security.rate_limits import WindowLimiter
from idverify.server import build_verifiers
from idverify.verifiers.base import Verifier

__all__ = ["flow_deps_for_tests"]


def flow_deps_for_tests(
    settings: Settings,
    keyring: Keyring,
    window_limiter: WindowLimiter,
    *,
    stand_ins: Mapping[str, Verifier] | None = None,
    today: Callable[[], date] = today_in_shanghai,
) -> FlowDeps:
    """FlowDeps over ``settings`` and ``keyring``; ``stand_ins`` are verifiers added by name.

    The built-in verifiers are the default configuration's (a test's own configuration may name
    methods over stand-ins the server could not build).
    """
    built = build_verifiers(load_settings(None, environ={}), keyring)
    return FlowDeps(
        settings=settings,
        keyring=keyring,
        sealer=Sealer(keyring),
        indexer=IdentityIndexer(keyring, TEST_ONLY_FAST),
        verifiers={**built, **(stand_ins or {})},
        window_limiter=window_limiter,
        today=today,
    )
