"""Events: written with each change, streamed from a cursor, watched until final, on a budget.

A real server on its embedded Redis. StreamEvents is read with ``until_caught_up`` where a test
wants what is there now, and live (a thread holding the stream) where it wants what comes next.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Self

import grpc
import pytest

from idverify.client import Client
from idverify.privacy.keyring import load_keyring
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, events_pb2, verification_pb2

from .conftest import (
    embedded_redis,
    error_metadata,
    everything_stored,
    needles_of,
    person,
    rich_error,
    start,
    submit,
    verify,
)

pytestmark = pytest.mark.e2e

STATUS = verification_pb2.VerificationStatus
CONFIG = """
[events]
streams_per_client = 3
stream_lifetime_seconds = 4

[erasure]
working_days = 0
poll_seconds = 0.2
"""
STREAM_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("events"), config=CONFIG) as running:
        yield running


class Listener:
    """A platform's live stream in a thread, from the newest event on, collecting every event."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._received: queue.Queue[tuple[float, events_pb2.Event]] = queue.Queue()
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        with self._server.client("platform") as platform:
            existing = caught_up(platform)
        self._after = existing[-1].cursor if existing else ""
        threading.Thread(target=self._listen, daemon=True).start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._stream.cancel()

    def _listen(self) -> None:
        with self._server.client("platform") as platform:
            request = events_pb2.StreamEventsRequest(after=self._after)
            self._stream = platform.events.StreamEvents(request, timeout=STREAM_TIMEOUT)
            self._ready.set()
            try:
                for reply in self._stream:
                    self._received.put((time.monotonic(), reply.event))
            except grpc.RpcError:
                return

    def until(self, account: str, last: str) -> list[str]:
        """The types of the account's events received, up to the first of type ``last``."""
        types: list[str] = []
        while last not in types:
            _, event = self._received.get(timeout=20)
            if event.account_id == account:
                types.append(event.type)
        return types


def caught_up(client: Client, after: str = "", types: tuple[str, ...] = ()) -> list[events_pb2.Event]:
    """Every event after ``after`` there is now."""
    request = events_pb2.StreamEventsRequest(after=after, types=list(types), until_caught_up=True)
    return [reply.event for reply in client.events.StreamEvents(request, timeout=STREAM_TIMEOUT)]


def of_account(events: list[events_pb2.Event], account: str) -> list[str]:
    return [event.type for event in events if event.account_id == account]


class TestStreamEvents:
    def test_a_signup_is_told_in_order_with_the_accounts_own_id(self, server: ServerProcess) -> None:
        with server.client() as registrar:
            done = verify(server, registrar, person(), "events-alice")
            events = caught_up(registrar)
        # The start records the consents it came with, then the verification; the answer binds,
        # then finishes the verification.
        assert of_account(events, "events-alice") == [
            "consent.granted",
            "consent.granted",
            "verification.started",
            "challenge.sent",
            "account.bound",
            "verification.verified",
        ]
        verified = next(
            e for e in events if e.type == "verification.verified" and e.account_id == "events-alice"
        )
        assert verified.verification_id == done.verification_id
        assert verified.method_id == "sms"
        assert verified.outcome == "verified"
        cursors = [event.cursor for event in events]
        assert len(set(cursors)) == len(cursors)

    def test_the_audit_entry_behind_an_event_is_the_one_it_names(self, server: ServerProcess) -> None:
        from idverify.v1 import audit_pb2  # noqa: PLC0415

        with server.client() as registrar:
            verify(server, registrar, person(), "events-entry")
            event = next(e for e in caught_up(registrar) if e.account_id == "events-entry")
        with server.client("auditor") as auditor:
            entry = auditor.audit.GetEvent(audit_pb2.GetEventRequest(index=event.audit_index)).event
        assert entry.type == event.type
        assert entry.verification_id == event.verification_id

    def test_resuming_after_a_cursor_gives_the_rest_without_gap_or_duplicate(
        self, server: ServerProcess
    ) -> None:
        with server.client() as registrar:
            verify(server, registrar, person(), "events-resume")
            everything = caught_up(registrar)
            for split in (1, len(everything) // 2, len(everything) - 1):
                rest = caught_up(registrar, everything[split - 1].cursor)
                assert [e.cursor for e in rest] == [e.cursor for e in everything[split:]]

    def test_types_filter_and_the_cursor_still_moves_on(self, server: ServerProcess) -> None:
        with server.client() as registrar:
            verify(server, registrar, person(), "events-filter")
            bound = caught_up(registrar, types=("account.bound",))
        assert bound
        assert {event.type for event in bound} == {"account.bound"}

    def test_a_live_stream_sees_a_signup_as_it_happens(self, server: ServerProcess) -> None:
        with Listener(server) as live, server.client() as registrar:
            verify(server, registrar, person(), "events-live")
            types = live.until("events-live", "verification.verified")
        assert types[-4:] == [
            "verification.started",
            "challenge.sent",
            "account.bound",
            "verification.verified",
        ]

    def test_consents_cancellation_and_erasure_are_events(self, server: ServerProcess) -> None:
        from idverify.v1 import consent_pb2  # noqa: PLC0415

        from .conftest import text_versions  # noqa: PLC0415

        with server.client() as registrar, server.client("platform") as platform, Listener(server) as live:
            verify(server, registrar, person(), "events-gone")
            version = text_versions(["biometric"])["biometric"]
            registrar.consent.GrantConsent(
                consent_pb2.GrantConsentRequest(
                    account_id="events-gone", purpose="biometric", text_version=version
                )
            )
            registrar.consent.WithdrawConsent(
                consent_pb2.WithdrawConsentRequest(account_id="events-gone", purpose="biometric")
            )
            platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="events-gone"))
            seen = live.until("events-gone", "account.erased")
            later = caught_up(platform)
        assert seen[-4:] == ["consent.granted", "consent.withdrawn", "account.cancelled", "account.erased"]
        # Read after the erasure, its events still name it until the outbox trims them; the account's
        # id kept for its later events is gone.
        assert of_account(later, "events-gone")[-2:] == ["account.cancelled", "account.erased"]
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        audit_ps = keyring.pseudonym("default", "audit", "events-gone")
        account_ps = keyring.pseudonym("default", "account", "events-gone")
        store = embedded_redis(server)
        assert not store.exists(f"iv1:{{t:default}}:acct:{account_ps}")  # event_account with it
        assert not store.hexists("iv1:{t:default}:events:acct", audit_ps)

    def test_bad_requests_name_the_field(self, server: ServerProcess) -> None:
        with server.client() as registrar:
            for request, field, reason in (
                (
                    events_pb2.StreamEventsRequest(types=["account.bound", "no.such"]),
                    "types[1]",
                    "UNKNOWN_EVENT_TYPE",
                ),
                (events_pb2.StreamEventsRequest(after="yesterday"), "after", "BAD_CURSOR"),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    list(registrar.events.StreamEvents(request, timeout=STREAM_TIMEOUT))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert rich_error(refused.value)[0] == reason
                assert error_metadata(refused.value)["field"] == field

    def test_an_auditor_or_a_stranger_cannot_stream(self, server: ServerProcess) -> None:
        with server.client("auditor") as auditor, pytest.raises(grpc.RpcError) as denied:
            list(auditor.events.StreamEvents(events_pb2.StreamEventsRequest(until_caught_up=True)))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with Client(server.target, "") as anonymous, pytest.raises(grpc.RpcError) as unknown:
            list(anonymous.events.StreamEvents(events_pb2.StreamEventsRequest(until_caught_up=True)))
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED

    def test_another_tenant_sees_none_of_these_events(self, server: ServerProcess) -> None:
        with server.client() as registrar:
            verify(server, registrar, person(), "events-ours")
        with server.client("registrar", tenant="other") as stranger:
            assert all(e.account_id != "events-ours" for e in caught_up(stranger))

    def test_no_personal_data_reaches_events_or_the_outbox(self, server: ServerProcess) -> None:
        carol = person()
        with server.client() as registrar:
            verify(server, registrar, carol, "events-private")
            text = b"".join(e.SerializeToString() for e in caught_up(registrar))
        stored = b"\n".join(everything_stored(embedded_redis(server)))
        for needle in needles_of(carol):
            assert needle not in text
            assert needle not in stored
        assert b"events-private" not in stored  # the account id is sealed


def places_left(client: Client) -> bool:
    """Whether the client may open a stream now."""
    try:
        caught_up(client)
    except grpc.RpcError as busy:
        if busy.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    return True


class TestStreamBudget:
    def test_a_client_holds_at_most_its_budget_and_streams_end_with_a_cursor(
        self, server: ServerProcess
    ) -> None:
        # A tenant of its own: no other test's stream holds a place, and a signup gives each
        # stream an event to send first.
        with server.client("registrar", tenant="budget") as registrar:
            verify(server, registrar, person(), "events-budget")
        with server.client("platform", tenant="budget") as platform:
            streams = [
                platform.events.StreamEvents(events_pb2.StreamEventsRequest(), timeout=STREAM_TIMEOUT)
                for _ in range(3)
            ]
            for stream in streams:
                next(iter(stream))  # open: every stream has events to send first
            with pytest.raises(grpc.RpcError) as refused:
                list(platform.events.StreamEvents(events_pb2.StreamEventsRequest(), timeout=STREAM_TIMEOUT))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert rich_error(refused.value)[0] == "STREAM_BUDGET_EXHAUSTED"
            # The lifetime (4 s) ends each with the cursor to resume from.
            with pytest.raises(grpc.RpcError) as ended:
                for _ in streams[0]:
                    pass
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert rich_error(ended.value)[0] == "STREAM_LIFETIME_ENDED"
            assert error_metadata(ended.value)["cursor"]
            for stream in streams[1:]:
                stream.cancel()
            # Ended and cancelled streams give their places back.
            deadline = time.monotonic() + 10
            while not places_left(platform):
                assert time.monotonic() < deadline, "the streams' places were not given back"
                time.sleep(0.2)


class TestWatchVerification:
    def test_a_watch_sees_the_code_answered_then_ends(self, server: ServerProcess) -> None:
        alice = person()
        with server.client() as registrar:
            started = start(registrar, alice, "events-watch")
            watch = registrar.verification.WatchVerification(
                verification_pb2.WatchVerificationRequest(verification_id=started.verification_id),
                timeout=STREAM_TIMEOUT,
            )

            def answer() -> None:
                time.sleep(0.5)
                with server.client() as other:
                    submit(other, started.verification_id, server.sms_code(started.verification_id))

            threading.Thread(target=answer, daemon=True).start()
            seen = [reply.verification.status for reply in watch]
        assert seen == [
            STATUS.Value("VERIFICATION_STATUS_CHALLENGE_SENT"),
            STATUS.Value("VERIFICATION_STATUS_VERIFIED"),
        ]

    def test_watching_a_final_verification_answers_once(self, server: ServerProcess) -> None:
        with server.client() as registrar:
            done = verify(server, registrar, person(), "events-watch-final")
            replies = list(
                registrar.verification.WatchVerification(
                    verification_pb2.WatchVerificationRequest(verification_id=done.verification_id),
                    timeout=STREAM_TIMEOUT,
                )
            )
        assert [reply.verification.status for reply in replies] == [
            STATUS.Value("VERIFICATION_STATUS_VERIFIED")
        ]

    def test_an_unknown_verification_is_not_found(self, server: ServerProcess) -> None:
        with server.client() as registrar, pytest.raises(grpc.RpcError) as missing:
            list(
                registrar.verification.WatchVerification(
                    verification_pb2.WatchVerificationRequest(verification_id="0" * 32),
                    timeout=STREAM_TIMEOUT,
                )
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


class TestStreamsAreReads:
    def test_streamed_events_and_watches_are_recorded_as_reads_of_their_accounts(
        self, server: ServerProcess
    ) -> None:
        """A leaked token streaming events leaves the same trace as one calling GetAccount."""
        from idverify.flows.read_accounting import Category, hour_of  # noqa: PLC0415
        from idverify.store.read_keys import ReadKeys  # noqa: PLC0415

        with server.client("registrar", tenant="readers") as registrar:
            done = [verify(server, registrar, person(), f"events-read-{n}") for n in range(3)]
            token = server.token("registrar", tenant="readers")
            caught_up(registrar)
            list(
                registrar.verification.WatchVerification(
                    verification_pb2.WatchVerificationRequest(verification_id=done[0].verification_id),
                    timeout=STREAM_TIMEOUT,
                )
            )
        store = embedded_redis(server)
        seconds, micros = store.time()
        hours = [hour_of(seconds * 1000 + micros // 1000) - back for back in (1, 0)]
        client = token.split(".")[1]
        keys = ReadKeys("readers")
        assert int(store.pfcount(*keys.accounts_over(hours, [client], Category.VERIFICATION))) == 3
        assert int(store.pfcount(*keys.identities_over(hours, [client], Category.VERIFICATION))) == 3
        assert int(store.pfcount(*keys.accounts_over(hours, [client], Category.CONSENT))) == 3
