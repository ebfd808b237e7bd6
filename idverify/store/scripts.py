"""Loads the Lua scripts of ``store/lua`` (each prefixed with the shared prelude) and runs them.

Scripts run by SHA (EVALSHA) and are reloaded transparently after a Redis restart (NOSCRIPT
is answered with the script's source). The steps in ``ACKNOWLEDGED_SCRIPTS`` are reported
done only once the configured number of replicas hold their writes (``store.replication``).

A server's scripts share one pipelined connection (``store.shared_connection``) on a standalone
or Sentinel-managed Redis; acknowledged steps keep pooled connections, because their WAIT
blocks the connection it runs on, and Cluster keeps redis-py's client, which routes by slot.
Every script is given the process's clock floor (``store.clock``) as its last argument, and, in a
process whose new logs are born walked (``flows.born_walked``), :data:`NEW_LOGS_WALKED_ARG` before it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

from opentelemetry.trace import SpanKind
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from idverify.observability import telemetry
from idverify.store.clock import StoreClock
from idverify.store.connection import RedisClient, as_text, translate_errors
from idverify.store.keys import GlobalKeys
from idverify.store.replication import command_acknowledged, run_acknowledged
from idverify.store.shared_connection import SharedConnection
from idverify.store.topology import COMMAND_TIMEOUT_SECONDS, ReplicaAck, is_cluster

BINDING_STEPS = (
    "bind_judge",
    "bind_place",
    "bind_supersede",
    "bind_count",
    "bind_commit",
    "bind_names",
    "bind_confirm",
)
"""A right answer's steps (docs/ARCHITECTURE.md, "3.1 Binding"), in order; some run only on some paths."""

# Scripts whose body calls other scripts' bodies, each defined before it as a local function of
# its own KEYS and ARGV, and the function running a binding's steps after the account's
# (_bind_after.lua): on one node an answer, a start in bind mode and a guardian's consent run a
# binding's steps in one script, under the names (and in the chains) they had before them.
NEW_LOGS_WALKED_ARG = "new_logs_walked=1"
"""The argument (before the clock floor) that has a log the call creates born walked (``_prelude.lua``)."""

_COMPOSED = {"submit": BINDING_STEPS, "start": BINDING_STEPS[1:], "guardian": BINDING_STEPS[1:]}
# A count in two slots (docs/ARCHITECTURE.md, "3.6 Counters in two slots"): on one node its steps,
# and the give-back of a count the other step refused, run in one script under the name it had.
_COUNTERS_COMPOSED = {
    "send_budget": ("send_phone_window", "send_windows", "count_give_back"),
    "identity_check": ("check_count", "count_give_back"),
}
# A read followed by one write (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"): on
# one node the script reads and runs the tenant's step on what it read, under the name it had:
# CheckDisplayName and an approval read the account; GetVerification reads its verification
# (get_verification.lua, which expires it when due) and records the read with record_reads, as
# reads.lua and ip_labels.lua do in their own bodies. Step by step the read runs first (the
# account's, GetVerification's in its bucket, the others' as plain reads) and the tenant's step
# (reads_record.lua for the three reads) is given what it found.
_READS_COMPOSED = {
    "display_name": ("display_name_index",),
    "approved_names": ("approved_names_index",),
    "get": ("get_verification",),
}

SCRIPT_NAMES = (
    "start",
    # Holds a request id for the attempt that starts its verification.
    "reserve_request",
    # Frees a failed start's request id, unless the start ran although its reply was lost.
    "release_request",
    # Answers a repeated request id only once its verification is on the replicas.
    "confirm_request",
    "submit",
    # A binding's steps (store.binding_steps), run one by one on a Cluster; on one node submit's
    # body runs them in one script.
    *BINDING_STEPS,
    # A binding whose identity moved before its place: the verification in flight pointed anew.
    "bind_repoint",
    # How a binding's verification ended, read in the account's bucket before the repairer's take
    # of its place (in the identity's).
    "bind_outcome",
    # Whether an identity moved under a verification, read before a guardian's consent step by step.
    "identity_rests",
    # GetVerification: on one node its read and accounting in one script; step by step the read
    # in the verification's bucket, then the accounting in the tenant's slot.
    "get",
    "get_verification",
    "guardian",
    "rate_limit",
    # Refuses at a counter's limit that another step counts (a name and document's refused claims).
    "refuse_counted",
    # A code send is counted in the tenant's slot, then in the phone's (deployment-wide) slot:
    # on one node in one script; on a Cluster as two counter steps at once, the phone window's and
    # the tenant's budgets', and a refusal by one gives the other's count back.
    "send_budget",
    "send_phone_window",
    "send_windows",
    "count_give_back",
    "phone_send",
    # Reads a field of several hashes: a chain's read before its writes.
    "hget_each",
    # Checks that a verification still holds what a worker remembers of it, before an answer
    # judged from that memory is counted.
    "fields_unchanged",
    "phone_guess",
    # CheckIdentity's mismatches per account and principal, and its audit entry: on one node in
    # one script; on a Cluster as each counter's step at once, then the entry.
    "identity_check",
    "check_count",
    "check_entry",
    "client",
    # The auditor's console: a session opened or closed, with its audit entry.
    "console_session",
    "login_ip",
    # CheckDisplayName's lookups in the index of verified organization names, and the
    # approval of an organization's short names and brands: on one node in one script; step by
    # step the account read in its bucket, then the tenant's step given what was read.
    "display_name",
    "approved_names",
    "account_facts",
    "display_name_index",
    "approved_names_index",
    "ip_labels",
    # Who read which accounts: a read recorded apart from the script that read, and a minute's
    # summary entry; step by step, a read's accounting given what the read found.
    "reads",
    "reads_record",
    "reads_close",
    # A person's copy of their account's data: the export's own audit entry.
    "account_export",
    # An incident report: what a page of the tenant's records holds, and the report's own entry.
    "incident_holdings",
    "incident_report",
    "audit_integrate",
    # The lease that lets one worker integrate a tenant's log while the others skip it.
    "audit_integration_lease",
    # Appends a bucket's staged audit entries to the tenant's log, behind the bucket's cursor.
    "audit_sequence",
    # Reads a bucket's staged entries as the sequencer would judge them: QueryEvents' pending ones.
    "audit_stage_read",
    # Deletes a sequenced batch from its stage stream by range, where the stream shows it may.
    "audit_stage_trim",
    "audit_head",
    "audit_seek",
    # Drops entries the entry bundles hold from Redis, a bounded batch a call.
    "audit_trim",
    "audit_key",
    # The personal-data lifecycle: consent, cancellation and erasure, key rotation.
    "consent_start",
    "consent_grant",
    "consent_withdraw",
    # A cancellation's steps (store.cancellation_steps): the account's, the identity's, the
    # organization's names; a step sequence's intent removed, and taken by the repairer.
    "cancel_account",
    "cancel_identity",
    "drop_names",
    "intent_done",
    "intent_take",
    # An account's erasure as steps (store.erasure_steps): the account's, then the open minutes
    # of reads it leaves; an identity's erasure is one script.
    "erase_account",
    "erase_minutes",
    "erase_identity",
    # An identity's re-indexing as steps (store.identity_move_steps): out of the old ref, into the
    # new, each member's account pointed anew, the arrival's mark cleared, the old ref finished.
    "move_out",
    "move_in",
    "move_member",
    "move_settle",
    "move_finish",
    "reseal_verification",
    # A tenant's removal: scheduled (its clients revoked), cancelled, its log closed.
    "tenant_removal",
    # Samples the store's time for the clock floor.
    "clock",
    # `idverify migrate legacy`: a page of identity records' members given their fields, a page of
    # accounts given their ids from the legacy events map, the map deleted and the head marked.
    "legacy_members",
    "legacy_event_ids",
    "legacy_done",
    # Events: a client's lease on one more open stream; trimming the outbox by age.
    "event_stream_lease",
    "events_trim",
    # Webhooks: a subscription's changes with their audit entries; its lease and cursor.
    "webhook_manage",
    "webhook_delivery",
)
# Steps whose loss in a failover would take back an answer the caller was given: a start (it
# binds at once for methods without a challenge), an answer and a guardian's consent, each with
# its audit entries. Reads and rate-limit counters do not wait.
# A client's creation too: its token is shown once; and its revocation must not come undone
# (a tenant's removal revokes them all).
# Consent, cancellation and erasure too: a withdrawal or an erasure that a failover took back
# would be a promise broken to the person concerned.
ACKNOWLEDGED_SCRIPTS = frozenset(
    {"start", "confirm_request", "submit", "guardian", "client", "consent_grant", "consent_withdraw"}
    # Every step of a cancellation before its reply (store.bucket_steps requires it): a later
    # step relies on the one before it being kept. Both of an account's erasure: the intent's
    # removal, after the minutes' step, must not outlive a failover that lost that step.
    | {"cancel_account", "cancel_identity", "drop_names"}
    # A binding's steps before its confirm: the commit is the step the caller is answered after,
    # and the confirm's loss only makes the repairer run it again (the names' step before it too:
    # the confirm removes the intent that would repair it).
    | {"bind_judge", "bind_repoint", "bind_place", "bind_supersede", "bind_count", "bind_commit"}
    | {"bind_names"}
    | {"erase_account", "erase_minutes", "erase_identity"}
    # Every step of a re-indexing before its last (which removes the intent): a later step carries
    # what the one before it marked.
    | {"move_out", "move_in", "move_member", "move_settle"}
    | {"tenant_removal"}
    # An approval the admin was told of, with its audit entry.
    | {"approved_names", "approved_names_index"}
    # A console sign-in or sign-out, whose audit entry the auditor was shown.
    | {"console_session"}
    # A subscription the admin was shown a secret for, a replay it was told of.
    | {"webhook_manage"}
    # Staged audit entries appended: their stage is trimmed once the step is reported done, so
    # a failover that lost the step would lose the entries too.
    | {"audit_sequence"}
)


@cache
def _lua(name: str) -> str:
    return (resources.files("idverify.store") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def _body(name: str) -> str:
    """A script's body, after the functions of the scripts it is composed of (``_COMPOSED``)."""
    parts = _COMPOSED.get(name) or _COUNTERS_COMPOSED.get(name) or _READS_COMPOSED.get(name, ())
    if not parts:
        return _lua(name)
    steps = "".join(f"local function {part}(KEYS, ARGV)\n{_lua(part)}\nend\n" for part in parts)
    after = _lua("_bind_after") if name in _COMPOSED else ""
    return f"{steps}{after}\n{_lua(name)}"


@cache
def script_source(name: str) -> str:
    """The full source of a script: prelude + body."""
    return f"{_lua('_prelude')}\n{_body(name)}"


@dataclass(frozen=True, slots=True)
class ChainStep:
    """One script of a chain: its keys and arguments, and the replies after which the next runs."""

    name: str
    keys: Sequence[str]
    args: Sequence[str | int | bytes]
    # The first element of this step's reply that lets the chain go on (none: the last step).
    proceed_on: tuple[str, ...] = ()


@cache
def chain_source(names: tuple[str, ...]) -> str:
    """One script running the named scripts' bodies in turn (``store/lua/_chain.lua``).

    Each body becomes a function of its own KEYS and ARGV, so the scripts stay as they are
    written and tested alone; the prelude (and the clock floor it takes off ARGV) runs once.
    """
    steps = "".join(
        f"CHAIN_STEPS[{i}] = function(KEYS, ARGV)\n{_body(name)}\nend\n" for i, name in enumerate(names, 1)
    )
    return f"{_lua('_prelude')}\nlocal CHAIN_STEPS = {{}}\n{steps}{_lua('_chain')}"


class Scripts:
    """The registered scripts of one Redis client.

    Args:
        client: the client whose pool (or Cluster nodes) the scripts run on.
        ack: replica acknowledgement of the steps in ``ACKNOWLEDGED_SCRIPTS``.
        share_connection: run the other steps on one pipelined connection (not on Cluster);
            its owner calls :meth:`aclose`.
        monotonic: the clock floor's monotonic clock (injected by tests).
        new_logs_walked: a tenant's log the scripts create is born with ``migrate legacy``'s
            mark, for a process that found no server of an older release reporting in
            (``flows.born_walked``); without it, a new log waits for the walk as an old one does.

    Attributes:
        clock: the store's time, for Python code that compares with stored times.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        ack: ReplicaAck | None = None,
        share_connection: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        new_logs_walked: bool = False,
    ) -> None:
        self._client = client
        self._process_args: tuple[str, ...] = (NEW_LOGS_WALKED_ARG,) if new_logs_walked else ()
        self._ack = ack or ReplicaAck()
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        self._chains: dict[tuple[str, ...], AsyncScript] = {}
        self._shared = (
            SharedConnection(client.connection_pool, command_timeout=COMMAND_TIMEOUT_SECONDS)
            if share_connection and not is_cluster(client)
            else None
        )
        self.clock = StoreClock(self._sample_clock, monotonic=monotonic)

    @property
    def acknowledges(self) -> bool:
        """True when acknowledged steps wait for replicas (a Sentinel or configured URL)."""
        return self._ack.replicas > 0

    @property
    def one_node(self) -> bool:
        """True when every key lives on one server (not Cluster): a chain may join any slots."""
        return not is_cluster(self._client)

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        """Runs one script atomically.

        Raises:
            StoreUnavailable: when Redis cannot be reached, or an acknowledged step's writes did
                not reach enough replicas in time.
        """
        floor = await self.clock.script_floor_ms()
        return await self._run(name, keys, [*args, *self._process_args, f"floor_ms={floor}"])

    async def run_chain(self, steps: Sequence[ChainStep]) -> list[Any]:
        """Runs scripts one after the other as one atomic script: one round trip for them all.

        A step runs only when the one before answered one of its ``proceed_on`` replies, so a
        refusal stops the chain where the separate calls would have stopped. The replies are
        those of the steps that ran, in order. The keys of all the steps must share a hash slot
        on Cluster (see :attr:`one_node`). The chain waits for replicas when any step would.

        Raises:
            StoreUnavailable: as :meth:`run`.
        """
        names = tuple(step.name for step in steps)
        script = self._chains.get(names)
        if script is None:
            script = self._chains[names] = self._client.register_script(chain_source(names))
        layout = [[len(step.keys), len(step.args), list(step.proceed_on)] for step in steps]
        keys = [key for step in steps for key in step.keys]
        floor = await self.clock.script_floor_ms()
        args = [
            json.dumps(layout),
            *(arg for step in steps for arg in step.args),
            *self._process_args,
            f"floor_ms={floor}",
        ]
        # The span is named after the scripts: "/" is exported as it is, "+" would be redacted.
        label = "/".join(names)
        acknowledged = any(name in ACKNOWLEDGED_SCRIPTS for name in names)
        return list(await self._run_script(label, script, keys, args, acknowledged=acknowledged))

    async def command(self, *args: str | int | bytes) -> Any:
        """One plain read command, on the shared connection when there is one.

        For a read repeated many times a second (the outbox tail's poll, an answer's record):
        through redis-py's
        pool a command costs the worker a checkout, a timer and its stream reader, several times
        what the read itself costs (docs/PERFORMANCE.md). No span, no clock floor: not a script.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            if self._shared is not None:
                return await self._shared.execute(*args)
            return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def command_acknowledged(self, key: str, *args: str | int | bytes) -> Any:
        """One plain write on ``key``, reported done once the replicas hold it, as an acknowledged step.

        For a write that a step in another slot relies on after it, as a step does on the one
        before it (``ACKNOWLEDGED_SCRIPTS``): a failover must not lose it while that step stays.

        Raises:
            StoreUnavailable: when Redis cannot be reached, or the write did not reach enough
                replicas in time.
        """
        if not self._ack.replicas:
            return await self.command(*args)
        async with translate_errors():
            return await command_acknowledged(self._client, key, args, self._ack)

    async def commands(self, *commands: Sequence[str | int | bytes]) -> list[Any]:
        """Plain commands sent together, one round trip, on the shared connection when there is one.

        For the hot paths' reads (a start's request id and consent record, an answer's record):
        as for :meth:`command`, redis-py's pipeline costs the worker several times what the
        shared connection does. Replies come as Redis sends them on the shared connection and as
        redis-py parses them on its pipeline (Cluster): an HGETALL's is a flat list or a dict,
        which :func:`hash_fields` reads alike.

        Raises:
            StoreUnavailable: when Redis cannot be reached.
        """
        async with translate_errors():
            if self._shared is not None:
                return await self._shared.execute_many(commands)
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        return await self._run_script(
            name, self._scripts[name], keys, args, acknowledged=name in ACKNOWLEDGED_SCRIPTS
        )

    async def _run_script(
        self,
        name: str,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        *,
        acknowledged: bool,
    ) -> Any:
        with telemetry.leaf_span(f"redis.{name}", kind=SpanKind.CLIENT, script=name):
            async with translate_errors():
                if self._ack.replicas and acknowledged:
                    return await run_acknowledged(self._client, script, keys, args, self._ack)
                if self._shared is not None:
                    return await self._run_shared(self._shared, script, keys, args)
                return await script(keys=list(keys), args=list(args))

    async def _sample_clock(self, floor_ms: int) -> tuple[int, int]:
        store_ms, redis_ms = await self._run("clock", [GlobalKeys.CLOCK_FLOOR], [f"floor_ms={floor_ms}"])
        return int(store_ms), int(redis_ms)

    async def aclose(self) -> None:
        """Closes the shared connection, if there is one."""
        if self._shared is not None:
            await self._shared.aclose()

    @staticmethod
    async def _run_shared(
        shared: SharedConnection, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        try:
            return await shared.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or promoted server has an empty script cache, and NOSCRIPT means the
            # step did not run: EVAL runs it and caches it for the next EVALSHA.
            return await shared.execute("EVAL", script.script, len(keys), *keys, *args)


def decode_flat(flat: Sequence[bytes]) -> dict[str, str]:
    """Turns an HGETALL-style flat list of bytes into a dict of str."""
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def hash_fields(reply: object) -> dict[str, str]:
    """An HGETALL's reply as text: a flat list (as Redis sends it) or a dict (redis-py's parse)."""
    if isinstance(reply, dict):
        return {as_text(k): as_text(v) for k, v in reply.items()}
    return decode_flat(cast("Sequence[bytes]", reply))
