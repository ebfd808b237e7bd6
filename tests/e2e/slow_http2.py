"""A slow sender on raw HTTP/2: gRPC streams that send their headers and never their message.

No HTTP/2 library is among the locked dev requirements, and a gRPC client always sends the
message it is given, so the frames are written by hand: the client preface, an empty SETTINGS,
then one HEADERS frame per stream (HPACK literals without Huffman coding, RFC 7541 6.2.2).
The connections behave well otherwise (they acknowledge SETTINGS and answer PINGs), so only
the missing messages can explain what the server does to them. A thread reads every
connection and records how each stream ended: reset, answered with trailers, or closed with
its connection.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Self

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
FRAME_HEADER_BYTES = 9
_SHORT_STRING = 127  # longer strings need a multi-byte HPACK length


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(text: str) -> bytes:
    raw = text.encode("ascii")
    assert len(raw) < _SHORT_STRING
    return bytes([len(raw)]) + raw


def request_headers(path: str, authority: str) -> bytes:
    """The HPACK block of a gRPC request's headers."""
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return b"".join(b"\x00" + _literal(name) + _literal(value) for name, value in fields)


@dataclass
class SlowConnection:
    """One connection, its streams still open, and how the others ended."""

    sock: socket.socket
    open_streams: set[int] = field(default_factory=set)
    ended: dict[int, str] = field(default_factory=dict)
    closed: bool = False
    _buffer: bytes = b""

    @classmethod
    def headers_only(cls, target: str, path: str, streams: int) -> SlowConnection:
        """Connects and opens ``streams`` calls of ``path`` without their message."""
        host, port = target.rsplit(":", 1)
        connection = cls(socket.create_connection((host, int(port)), timeout=5))
        block = request_headers(path, target)
        out = PREFACE + frame(SETTINGS, 0, 0)
        for number in range(streams):
            stream = 1 + 2 * number  # client streams are odd
            connection.open_streams.add(stream)
            out += frame(HEADERS, END_HEADERS, stream, block)
        connection.sock.sendall(out)
        return connection

    def read(self) -> None:
        """Reads what the server sent and answers what needs an answer."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close("connection closed")
            return
        self._buffer += data
        while len(self._buffer) >= FRAME_HEADER_BYTES:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < FRAME_HEADER_BYTES + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            payload = self._buffer[FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + length]
            self._buffer = self._buffer[FRAME_HEADER_BYTES + length :]
            self._on_frame(kind, flags, stream, payload)

    def _on_frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            self._send(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self._send(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            self._end(stream, "reset")
        elif kind == HEADERS and flags & END_STREAM:
            self._end(stream, "trailers")

    def _send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            self._close("connection closed")

    def _end(self, stream: int, how: str) -> None:
        if stream in self.open_streams:
            self.open_streams.discard(stream)
            self.ended[stream] = how

    def _close(self, how: str) -> None:
        for stream in list(self.open_streams):
            self._end(stream, how)
        self.closed = True


class SlowSenders:
    """Connections that each open streams with headers only, read by a thread of their own.

    ``idle`` more connections send nothing at all, not even the HTTP/2 preface.
    """

    def __init__(self, target: str, path: str, *, connections: int, streams: int, idle: int = 0) -> None:
        self.connections = [SlowConnection.headers_only(target, path, streams) for _ in range(connections)]
        host, port = target.rsplit(":", 1)
        self.idle = [
            SlowConnection(socket.create_connection((host, int(port)), timeout=5)) for _ in range(idle)
        ]
        self._selector = selectors.DefaultSelector()
        for connection in (*self.connections, *self.idle):
            connection.sock.setblocking(False)  # noqa: FBT003 - the socket API's own flag
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for connection in (*self.connections, *self.idle):
            connection.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                connection: SlowConnection = key.data
                with self._lock:
                    connection.read()
                if connection.closed:
                    self._selector.unregister(connection.sock)

    def open_per_connection(self) -> list[int]:
        """Streams still open (neither reset, answered nor closed) on each connection."""
        with self._lock:
            return [len(connection.open_streams) for connection in self.connections]

    def endings(self) -> dict[str, int]:
        """How many streams ended which way."""
        with self._lock:
            counts: dict[str, int] = {}
            for connection in self.connections:
                for how in connection.ended.values():
                    counts[how] = counts.get(how, 0) + 1
            return counts

    def idle_closed(self) -> int:
        """How many of the connections that sent nothing the server has closed."""
        with self._lock:
            return sum(connection.closed for connection in self.idle)
