"""The test harness's servers on ports chosen while other processes take ports too.

``free_port`` picks a port that is free when it looks; the suite runs on two processes and the
kernel gives the same range to outgoing connections, so the port may be taken by the time the
server binds it. ``ServerProcess.start`` then starts again on new ports; a port the caller gave
is a port the test means, and a taken one still fails at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from idverify import testing
from idverify.testing import ServerProcess


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_chosen_port_taken_before_the_bind_is_chosen_again(
    tmp_path: Path, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = iter([taken])
    real = testing.free_port
    monkeypatch.setattr(testing, "free_port", lambda: next(first, 0) or real())
    server = ServerProcess(tmp_path / "server")
    try:
        server.start()
        assert server.port not in {0, taken}
        assert "another process listens there" in server.log_path.read_text(encoding="utf-8")
    finally:
        server.stop()


def test_a_port_the_caller_gave_is_never_changed(tmp_path: Path, taken: int) -> None:
    server = ServerProcess(tmp_path / "server", port=taken)
    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{taken}: another process listens"):
        server.start()
    assert server.port == taken
    assert server.log_path.read_text(encoding="utf-8").count("another process listens there") == 1
