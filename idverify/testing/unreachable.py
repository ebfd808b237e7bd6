"""What every in-memory store answers while a test has it down: what an unreachable Redis does."""

from __future__ import annotations

from idverify.domain.errors import StoreUnavailable

__all__ = ["refuse_if_down"]


def refuse_if_down(down: bool) -> None:
    """Raises what ``store.connection.translate_errors`` raises for a refused connection.

    Raises:
        StoreUnavailable: when ``down`` is set.
    """
    if down:
        raise StoreUnavailable("redis unavailable: ConnectionError")
