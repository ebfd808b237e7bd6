"""The keys each script call really touches: those it is given and those its Lua derives.

A script may build a key from another inside Lua (an account's ``rl:claim_refusals:<tag>`` from
its ``acct`` key, the tenant's ``events:acct`` from its log's). Such a key is not among the
call's KEYS, so a check of the given keys alone cannot see it, and on a Cluster it is exactly
what breaks once the families move to buckets. :class:`ScriptMonitor` watches a real
redis-server with ``MONITOR``, which shows every command a script runs (its source ``lua``), and
asks the server itself which arguments of each are keys (``COMMAND GETKEYS``): no table of
commands here.

MONITOR's lines arrive on their own connection, after the replies of the commands they show. So
that nothing waits on a guessed delay, each call is bracketed by two ``ECHO`` markers sent on the
caller's client, one before the call is sent and one after its reply came: the server ran the
call between them, and the second marker's line says that every line between them has arrived.
Calls running at once (a step's two counters) share their brackets: each finds its own
``EVALSHA`` line there by its exact arguments, and its script's commands beside it (a script runs
alone, so its commands are one run of ``lua`` lines). Whether those lines come before or after
the ``EVALSHA`` line is the server's version's choice: :meth:`ScriptMonitor.open` runs a probe
script to learn it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from redis.commands.core import AsyncScript

from idverify.store.connection import RedisClient
from idverify.store.scripts import Scripts

__all__ = ["Call", "RecordingScripts", "ScriptMonitor"]

T = TypeVar("T")

_MARKER_TIMEOUT_SECONDS: Final = 10.0  # only a broken monitor waits this long: lines come in ms
_LINE_LIMIT: Final = 1 << 24  # a SCRIPT LOAD's line holds a whole script's source, escaped
_MARKER: Final = b"touched-keys-marker-"
# A marker's line: a client's ECHO of a marker (not a script's: their source is "lua").
_MARKER_LINE: Final = re.compile(
    rb'^\+[0-9.]+ \[[0-9]+ (?!lua\])[^\]]*\] "(?i:echo)" "(' + re.escape(_MARKER) + rb'[0-9a-f]+)"\r\n$'
)
_ARGUMENT: Final = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPED: Final = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_ESCAPES: Final = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b"}
_NO_KEYS: Final = b"has no key arguments"


@dataclass(frozen=True, slots=True)
class _Line:
    """One command MONITOR showed: who sent it (``lua`` for a script's command) and its arguments."""

    source: str
    argv: tuple[bytes, ...]


def _parse(line: bytes) -> _Line:
    r"""A MONITOR line: ``<time> [<db> <source>] "arg" "arg"...``, each argument quoted and escaped.

    Redis escapes an argument as ``sdscatrepr`` does: ``\\`` and ``\"``, five control
    characters by their letters (``\n``), any other unprintable byte as ``\xHH``.
    """
    head, _, rest = line.partition(b"] ")
    source = head.rpartition(b" ")[2].decode()
    return _Line(source, tuple(_ESCAPED.sub(_unescaped, arg) for arg in _ARGUMENT.findall(rest)))


def _unescaped(escape: re.Match[bytes]) -> bytes:
    code = escape[1]
    if code[0] == ord("x"):
        return bytes([int(code[1:], 16)])
    return _ESCAPES.get(code[0], code)


def _encoded(arg: str | int | bytes) -> bytes:
    """An argument as redis-py sends it, so as MONITOR shows it."""
    if isinstance(arg, bytes):
        return arg
    return (arg if isinstance(arg, str) else str(arg)).encode()


def _the_call(lines: list[_Line], call: tuple[bytes, ...]) -> int:
    """Where among ``lines`` a client sent ``call``: exactly once, or no run can be said to be its."""
    found = [
        i
        for i, line in enumerate(lines)
        if line.source != "lua" and (line.argv[0].lower(), *line.argv[1:]) == call
    ]
    if len(found) != 1:
        msg = f"{call[:3]!r}... was sent {len(found)} times between its markers"
        raise AssertionError(msg)
    return found[0]


class _KeyQuestions:
    """A connection of its own asking ``COMMAND GETKEYS``, its replies read as bytes, exactly.

    (redis-py decodes that reply's keys as UTF-8, replacing what is not.)
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()  # one question and its reply at a time on the connection

    async def keys_of(self, commands: list[tuple[bytes, ...]]) -> list[list[bytes]]:
        """The keys of each command, in order (none for a command that names none).

        Raises:
            AssertionError: the server could not say (a command it does not know).
        """
        # A command without arguments (TIME) names no key, and GETKEYS refuses to be asked.
        asked = [argv for argv in commands if len(argv) > 1]
        async with self._lock:
            self._writer.write(b"".join(_request(b"COMMAND", b"GETKEYS", *argv) for argv in asked))
            await self._writer.drain()
            replies = {argv: await self._reply(argv) for argv in asked}
        return [replies.get(argv, []) for argv in commands]

    async def _reply(self, argv: tuple[bytes, ...]) -> list[bytes]:
        head = await self._reader.readline()
        if head.startswith(b"-"):
            if _NO_KEYS in head:
                return []
            msg = f"COMMAND GETKEYS refused {argv!r}: {head!r}"
            raise AssertionError(msg)
        keys = []
        for _ in range(int(head.removeprefix(b"*"))):
            size = int((await self._reader.readline()).removeprefix(b"$"))
            keys.append((await self._reader.readexactly(size + 2))[:-2])
        return keys

    async def aclose(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def _request(*argv: bytes) -> bytes:
    """A command in Redis's protocol."""
    return b"".join([b"*%d\r\n" % len(argv), *(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in argv)])


class ScriptMonitor:
    """A ``MONITOR`` connection to one redis-server, and the keys each bracketed script call touched."""

    def __init__(
        self,
        client: RedisClient,
        monitor: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        questions: _KeyQuestions,
    ) -> None:
        self._client = client
        self._reader, self._writer = monitor
        self._questions = questions
        self._lines: list[bytes] = []  # MONITOR's lines while a bracket is open, unparsed
        self._marks: dict[bytes, int] = {}  # a marker's token -> its line's index in _lines
        self._awaited: dict[bytes, asyncio.Event] = {}
        self._open_brackets = 0
        self._loaded: set[str] = set()
        self._lua_after_call = True
        self._failure: Exception | None = None
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, client: RedisClient) -> ScriptMonitor:
        """Monitors the server ``client`` talks to (a standalone one: MONITOR sees one node)."""
        settings = client.connection_pool.connection_kwargs
        address = (settings.get("host", "127.0.0.1"), settings.get("port", 6379))
        reader, writer = await asyncio.open_connection(*address, limit=_LINE_LIMIT)
        writer.write(_request(b"MONITOR"))
        await writer.drain()
        if await reader.readline() != b"+OK\r\n":
            msg = "MONITOR refused"
            raise AssertionError(msg)
        monitor = cls(client, (reader, writer), _KeyQuestions(*await asyncio.open_connection(*address)))
        await monitor._learn_order()
        return monitor

    async def aclose(self) -> None:
        """Ends the monitor's connections and its reader."""
        self._reading.cancel()
        self._writer.close()
        await asyncio.gather(
            self._reading, self._writer.wait_closed(), self._questions.aclose(), return_exceptions=True
        )

    async def touched(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes], run: Awaitable[T]
    ) -> tuple[T, list[str]]:
        """Awaits ``run``, and names the keys that its script's commands named, once each, in order.

        ``run`` sends one ``EVALSHA`` of ``script`` with ``keys`` and ``args``, by which its line
        is found among those between its markers.

        Raises:
            AssertionError: the call's ``EVALSHA`` was not seen once between its markers, or the
                monitor's connection failed.
        """
        if script.sha not in self._loaded:
            # Loaded before the bracket: redis-py answers NOSCRIPT with a load and a second
            # EVALSHA of the same arguments, which would make the call's line ambiguous.
            await self._client.script_load(script.script)
            self._loaded.add(script.sha)
        call = (b"evalsha", script.sha.encode(), b"%d" % len(keys), *map(_encoded, [*keys, *args]))
        result, lines = await self._bracketed(run)
        at = _the_call(lines, call)
        step = 1 if self._lua_after_call else -1
        i, commands = at + step, []
        while 0 <= i < len(lines) and lines[i].source == "lua":
            commands.append(lines[i].argv)
            i += step
        named = await self._questions.keys_of(commands[::step])
        return result, list(dict.fromkeys(key.decode() for keys_of_one in named for key in keys_of_one))

    async def keys_of(self, commands: Sequence[Sequence[str | int | bytes]]) -> list[list[str]]:
        """The keys each of ``commands`` names, as the server says (``COMMAND GETKEYS``)."""
        named = await self._questions.keys_of([tuple(map(_encoded, command)) for command in commands])
        return [[key.decode() for key in keys] for keys in named]

    async def _bracketed(self, run: Awaitable[T]) -> tuple[T, list[_Line]]:
        """``run`` between two markers: its result and the lines MONITOR showed between them."""
        start, end = (_MARKER + secrets.token_hex(8).encode() for _ in range(2))
        self._open_brackets += 1
        self._awaited[end] = done = asyncio.Event()
        if self._failure is not None:
            done.set()
        try:
            await self._client.echo(start)
            result = await run
            await self._client.echo(end)
            async with asyncio.timeout(_MARKER_TIMEOUT_SECONDS):
                await done.wait()
            if self._failure is not None:
                msg = "the MONITOR connection failed"
                raise AssertionError(msg) from self._failure
            return result, [_parse(line) for line in self._lines[self._marks[start] + 1 : self._marks[end]]]
        finally:
            del self._awaited[end]
            self._open_brackets -= 1
            if self._open_brackets == 0:
                self._lines.clear()
                self._marks.clear()

    async def _learn_order(self) -> None:
        """Runs a probe script to see whether a script's commands show after its ``EVALSHA`` line."""
        probe = secrets.token_hex(8).encode()
        script = self._client.register_script("return redis.call('ECHO', ARGV[1])")
        await self._client.script_load(script.script)
        _, lines = await self._bracketed(script(args=[probe]))
        at = _the_call(lines, (b"evalsha", script.sha.encode(), b"0", probe))
        echoed = _Line("lua", (b"ECHO", probe))
        if lines[at + 1 : at + 2] == [echoed]:
            self._lua_after_call = True
        elif at > 0 and lines[at - 1] == echoed:
            self._lua_after_call = False
        else:
            msg = f"MONITOR showed the probe script's command nowhere beside its EVALSHA: {lines!r}"
            raise AssertionError(msg)

    async def _read(self) -> None:
        """Follows MONITOR; a failure wakes every bracket waiting, which then fails with it."""
        try:
            await self._follow()
        except Exception as failure:  # noqa: BLE001 - kept for the brackets, which raise it
            self._failure = failure
            for event in self._awaited.values():
                event.set()

    async def _follow(self) -> None:
        """Keeps MONITOR's lines while a bracket is open, and notes each marker's place among them.

        A line is parsed only once a bracket asks for it: a process starting up loads every
        script, and MONITOR shows each load with the script's whole source.
        """
        while line := await self._reader.readline():
            if not line.startswith(b"+"):
                msg = f"not a MONITOR line: {line!r}"
                raise ConnectionError(msg)
            if not self._open_brackets:
                continue
            self._lines.append(line[1:].rstrip(b"\r\n"))
            if (marker := _MARKER_LINE.match(line)) is not None:
                self._marks[marker[1]] = len(self._lines) - 1
                if (event := self._awaited.get(marker[1])) is not None:
                    event.set()
        msg = "the server closed the MONITOR connection"
        raise ConnectionError(msg)


@dataclass(frozen=True, slots=True)
class Call:
    """One script call (a chain's steps as one): its name, the keys it was given, those it touched."""

    name: str
    given: tuple[str, ...]
    touched: tuple[str, ...]


class RecordingScripts(Scripts):
    """Scripts that note each call with the keys it was given and those it touched, and answer as usual.

    Plain commands sent together (:meth:`Scripts.commands`) are noted too, one call each, named
    after the command in lower case (``hmget``), given and touching the keys it names.
    """

    def __init__(self, redis: RedisClient, monitor: ScriptMonitor, *, new_logs_walked: bool = False) -> None:
        super().__init__(redis, new_logs_walked=new_logs_walked)
        self.calls: list[Call] = []
        self._monitor = monitor

    async def _run_script(
        self,
        name: str,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        *,
        acknowledged: bool,
    ) -> Any:
        # Below run() and run_chain(), the arguments are those sent (the clock floor added):
        # what tells this call's EVALSHA from another's. A chain's label joins its steps by "/".
        run = super()._run_script(name, script, keys, args, acknowledged=acknowledged)
        result, touched = await self._monitor.touched(script, keys, args, run)
        self.calls.append(Call(name.replace("/", "+"), tuple(keys), tuple(dict.fromkeys([*keys, *touched]))))
        return result

    async def commands(self, *commands: Sequence[str | int | bytes]) -> list[Any]:
        replies = await super().commands(*commands)
        for command, keys in zip(commands, await self._monitor.keys_of(commands), strict=True):
            self.calls.append(Call(_encoded(command[0]).decode().lower(), tuple(keys), tuple(keys)))
        return replies
