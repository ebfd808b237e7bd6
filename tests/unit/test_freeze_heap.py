"""A serving process moves start-up's objects out of the collector's reach (idverify.server.freeze_heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from idverify.server import freeze_heap


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process's heap as it was: frozen objects would never be collected afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("thawed")
def test_what_is_alive_is_frozen_and_garbage_is_collected_first() -> None:
    """Everything alive leaves the collector's generations; a cycle already unreachable is freed."""

    class Node:
        other: Node | None = None

    alive = Node()
    garbage, partner = Node(), Node()
    garbage.other, partner.other = partner, garbage
    freed = weakref.ref(garbage)
    del garbage, partner
    freeze_heap()
    assert freed() is None
    assert gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects())  # the collector's generations no longer hold it
