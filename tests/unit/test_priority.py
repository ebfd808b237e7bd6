"""Tests of idverify.priority: a background thread is named for the OS and runs at the lowest priority."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from idverify import priority
from idverify.priority import LOWEST, run_in_background


def thread_stat(tid: int) -> tuple[str, int]:
    """A thread of this process: its OS name and nice value, from /proc (Linux's stat field 19)."""
    text = Path(f"/proc/self/task/{tid}/stat").read_text(encoding="ascii")
    return text[text.index("(") + 1 : text.rindex(")")], int(text.rsplit(")", 1)[1].split()[16])


def in_a_thread(name: str, niceness: int | None = LOWEST) -> tuple[str, int]:
    """What the OS says of a thread that called run_in_background, read while it still runs."""
    seen: list[tuple[str, int]] = []

    def body() -> None:
        run_in_background(name, niceness)
        seen.append(thread_stat(threading.get_native_id()))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0]


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_background_thread_runs_at_nice_19_under_its_name() -> None:
    """The thread is renamed and niced; the caller's thread keeps its priority."""
    before = own_nice()
    assert in_a_thread("idverify-test") == ("idverify-test", max(LOWEST, before))
    assert own_nice() == before
    assert thread_stat(threading.get_native_id())[1] == before


def test_niceness_zero_only_names_the_thread() -> None:
    assert in_a_thread("idverify-named", 0) == ("idverify-named", own_nice())


def test_a_name_the_os_would_cut_is_refused() -> None:
    """Linux keeps 15 bytes: a longer name would show cut in top -H, so it is a programming error."""
    with pytest.raises(ValueError, match="15 bytes"):
        run_in_background("idverify-geo-load")


@pytest.mark.parametrize("niceness", [-1, 20])
def test_a_nice_value_linux_would_not_take_is_refused(niceness: int) -> None:
    """Negative values need privileges (and would raise the priority); 19 is the lowest."""
    with pytest.raises(ValueError, match="niceness"):
        run_in_background("idverify-x", niceness)


def test_the_process_value_applies_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads started without a value take the server's setting: 0 until it is set."""
    monkeypatch.setattr(priority, "_background_niceness", 0)
    assert in_a_thread("idverify-dflt", None) == ("idverify-dflt", own_nice())
    priority.set_background_niceness(LOWEST)
    assert in_a_thread("idverify-dflt", None) == ("idverify-dflt", max(LOWEST, own_nice()))
    with pytest.raises(ValueError, match="niceness"):
        priority.set_background_niceness(20)
