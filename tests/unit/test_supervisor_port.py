"""The supervisor's hold on its port: its own workers may join, no other process may."""

from __future__ import annotations

import contextlib
import socket

import pytest

from idverify.domain.errors import ConfigError
from idverify.supervisor import _hold_port


def reuseport_socket() -> socket.socket:
    """A socket as a worker (gRPC with ``grpc.so_reuseport``) or a second server makes it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


class TestHoldPort:
    def test_workers_join_the_held_port(self) -> None:
        """A SO_REUSEPORT socket of the server's own (a worker) binds and listens on the held port."""
        with contextlib.closing(_hold_port("127.0.0.1", 0)) as hold, reuseport_socket() as worker:
            worker.bind(("127.0.0.1", hold.getsockname()[1]))
            worker.listen()

    def test_a_second_server_is_refused_while_one_holds_the_port(self) -> None:
        """A second server's hold fails even though the first one's workers use SO_REUSEPORT."""
        with contextlib.closing(_hold_port("127.0.0.1", 0)) as hold, reuseport_socket() as worker:
            port = hold.getsockname()[1]
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with pytest.raises(RuntimeError, match="another process listens there"):
                _hold_port("127.0.0.1", port)

    def test_a_listener_with_reuseport_of_any_process_is_refused(self) -> None:
        """Any process listening with SO_REUSEPORT set keeps the server from starting."""
        with reuseport_socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            with pytest.raises(RuntimeError, match="another process listens there"):
                _hold_port("127.0.0.1", other.getsockname()[1])

    @pytest.mark.parametrize("host", ["256.1.1.1", "nohost.invalid"])
    def test_a_host_that_does_not_resolve_names_listen(self, host: str) -> None:
        """Neither an IP address nor a name that resolves: a configuration error naming listen."""
        with pytest.raises(ConfigError, match=f"^listen: {host} is not an IP address"):
            _hold_port(host, 0)

    def test_an_address_of_another_machine_names_listen(self) -> None:
        """An address this machine does not have: a configuration error naming listen."""
        with pytest.raises(ConfigError, match="is not an address of this machine"):
            _hold_port("192.0.2.1", 0)
