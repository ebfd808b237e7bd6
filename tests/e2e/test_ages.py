"""Ages on the day asked, end to end: a server whose calendar moves a day on under libfaketime.

The server process reads a faked wall clock (its monotonic clock, and Redis, stay real), so an
account bound today by someone whose birthday is tomorrow shows the new band once the server's
day moves on, and a guardian who turns 18 may consent for a child waiting since yesterday.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import grpc
import pytest
import redis

from idverify.client import Client
from idverify.domain.age import today_in_shanghai
from idverify.domain.consent import text_version_of
from idverify.privacy.keyring import load_keyring
from idverify.testing import RedisProcess, ServerProcess, free_port
from idverify.v1 import account_pb2, common_pb2, consent_pb2, verification_pb2

from .conftest import IDENTITIES, Identity, everything_stored, person, rich_error, start, submit, verify
from .test_clock_jumps import faketime_library

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
NEEDS_GUARDIAN = STATUS.Value("VERIFICATION_STATUS_NEEDS_GUARDIAN_CONSENT")
CONFIG = """
[rate_limits]
per_principal_per_minute = 100000
"""


@dataclass
class Faked:
    server: ServerProcess
    store: redis.Redis
    spec_file: Path

    def next_day(self) -> None:
        """Moves the server's calendar a day on (libfaketime reads the file on every call)."""
        self.spec_file.write_text("+1d\n", encoding="ascii")


@pytest.fixture(scope="module")
def faked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faked]:
    library = faketime_library()
    directory = tmp_path_factory.mktemp("ages")
    spec_file = directory / "faketime"
    spec_file.write_text("+0\n", encoding="ascii")
    env = {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(spec_file),
        "FAKETIME_NO_CACHE": "1",
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
    }
    with (
        RedisProcess(directory / "redis", port=free_port()) as store,
        ServerProcess(directory / "server", config=CONFIG, redis_url=store.url, env=env) as server,
    ):
        yield Faked(server, redis.Redis(host="127.0.0.1", port=store.port), spec_file)


def traveller() -> Identity:
    """A passport holder: the passport carries no birth date (recorded for the privacy scan)."""
    base = person()
    identity = Identity(name=base.name, number=f"E{base.number[-8:]}", phone=base.phone)
    IDENTITIES.append(identity)
    return identity


def passport(declared: date) -> dict[str, object]:
    """The subject changes of a passport holder who declares ``declared``."""
    return {
        "document_type": common_pb2.DOCUMENT_TYPE_PASSPORT,
        "issuing_country": "FR",
        "birth_date": declared.isoformat(),
    }


def account(platform: Client, account_id: str) -> tuple[int, int]:
    found = platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account_id)).account
    return found.age_band, found.age_source


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


def test_bands_and_guardians_follow_the_calendar(faked: Faked) -> None:
    """A 13-year-old turns 14 and a 17-year-old 18 overnight; yesterday's minor guardian consents today."""
    server = faked.server
    tomorrow = today_in_shanghai() + timedelta(days=1)
    turns_14, turns_18 = person(birth=years_before(tomorrow, 14)), person(birth=years_before(tomorrow, 18))
    with server.client("registrar") as registrar, server.client("platform") as platform:
        assert verify(server, registrar, turns_18, "turns-18").status == VERIFIED
        waiting = start(registrar, turns_14, "turns-14")
        waiting = submit(registrar, waiting.verification_id, server.sms_code(waiting.verification_id))
        assert waiting.status == NEEDS_GUARDIAN
        grant = consent_pb2.GrantConsentRequest(
            account_id="turns-14",
            purpose="guardian",
            text_version=text_version_of("guardian consent text"),
            verification_id=waiting.verification_id,
            guardian_account_id="turns-18",
            relationship=consent_pb2.GUARDIAN_RELATIONSHIP_LEGAL_GUARDIAN,
        )
        with pytest.raises(grpc.RpcError) as minor_guardian:
            registrar.consent.GrantConsent(grant)
        assert rich_error(minor_guardian.value) == ("GUARDIAN_NOT_ADULT", "guardian_account_id")
        assert account(platform, "turns-18") == (
            account_pb2.AGE_BAND_14_TO_17,
            account_pb2.AGE_SOURCE_DOCUMENT,
        )

        faked.next_day()

        assert account(platform, "turns-18") == (account_pb2.AGE_BAND_ADULT, account_pb2.AGE_SOURCE_DOCUMENT)
        registrar.consent.GrantConsent(grant)
        assert account(platform, "turns-14") == (
            account_pb2.AGE_BAND_14_TO_17,
            account_pb2.AGE_SOURCE_DOCUMENT,
        )

        entries = [json.loads(entry) for entry in faked.store.hvals("iv1:{t:default}:audit:log")]
        (granted,) = [
            e
            for e in entries
            if e["type"] == "consent.granted" and e["attributes"].get("purpose") == "guardian"
        ]
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        assert granted["account"] == keyring.pseudonym("default", "audit", "turns-14")
        assert granted["attributes"]["guardian"] == keyring.pseudonym("default", "audit", "turns-18")
        assert granted["attributes"]["relationship"] == "legal_guardian"


def test_declared_birth_dates_legacy_accounts_and_no_date_in_the_clear(faked: Faked) -> None:
    """Passport holders declare: an adult binds DECLARED, a child waits; a legacy account shows its band."""
    server = faked.server
    adult_birth, child_birth = date(1987, 11, 2), years_before(today_in_shanghai(), 9)
    adult, child = traveller(), traveller()
    with server.client("registrar") as registrar, server.client("platform") as platform:
        started = start(registrar, adult, "declared-adult", **passport(adult_birth))
        done = submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        assert done.status == VERIFIED
        assert account(platform, "declared-adult") == (
            account_pb2.AGE_BAND_ADULT,
            account_pb2.AGE_SOURCE_DECLARED,
        )
        started = start(registrar, child, "declared-child", **passport(child_birth))
        waiting = submit(registrar, started.verification_id, server.sms_code(started.verification_id))
        assert waiting.status == NEEDS_GUARDIAN

        # An account bound before ages were read when asked: no source, the band of its binding day.
        old = person()
        assert verify(server, registrar, old, "bound-long-ago").status == VERIFIED
        keyring = load_keyring(path=server.data_dir / "keyring.json")
        key = f"iv1:{{t:default}}:acct:{keyring.pseudonym('default', 'account', 'bound-long-ago')}"
        assert faked.store.hget(key, "birth_sealed")
        faked.store.hdel(key, "age_source", "birth_sealed")
        faked.store.hset(key, "age_band", "14_to_17")
        assert account(platform, "bound-long-ago") == (
            account_pb2.AGE_BAND_14_TO_17,
            account_pb2.AGE_SOURCE_LEGACY,
        )
        assert verify(server, registrar, old, "bound-long-ago").status == VERIFIED
        assert account(platform, "bound-long-ago") == (
            account_pb2.AGE_BAND_ADULT,
            account_pb2.AGE_SOURCE_DOCUMENT,
        )

    blob = b"\n".join(everything_stored(faked.store))
    log = server.log_text().encode()
    for birth in (adult_birth, child_birth):
        for needle in (birth.isoformat(), f"{birth:%Y%m%d}", f"{birth:%Y/%m/%d}"):
            assert needle.encode() not in blob
            assert needle.encode() not in log
