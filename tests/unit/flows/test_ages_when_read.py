"""Ages computed when read, declared and authority birth dates, guardians judged on the day asked.

The flows run against a real redis-server with "today" injected, so a test walks one account
across its 14th and 18th birthdays without waiting years or touching the process clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis as sync_redis
from stdnum.cn import ric

from idverify.config import load_settings
from idverify.domain.consent import text_version_of
from idverify.domain.errors import FailedPrecondition, InvalidArgument
from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.flows.accounts import AccountFlow, Located
from idverify.flows.context import FlowDeps, RequestInfo
from idverify.flows.identity_mover import IdentityMover
from idverify.flows.reindex import Reindexer, count_key_usage
from idverify.flows.verification import GuardianConsent, StartRequest, VerificationFlow, VerificationView
from idverify.privacy.keyring import Keyring
from idverify.privacy.sealing import Sealer
from idverify.security.rate_limits import WindowLimiter
from idverify.store.accounts import RedisAccounts
from idverify.store.connection import RedisClient
from idverify.store.identity_records import RedisIdentityRecords
from idverify.store.keys import TenantKeys
from idverify.store.rate_limits import RedisRateWindows
from idverify.store.scripts import Scripts
from idverify.store.sealed_records import RedisSealedRecords
from idverify.store.verifications import redis_verification_flow
from idverify.testing import RedisProcess
from idverify.testing.flow_deps import flow_deps_for_tests
from idverify.testing.tenant_config import DOCUMENT_ONLY, Method, tenant_toml
from idverify.verifiers.base import StepContext, StepResult

METHODS = {
    "doc": DOCUMENT_ONLY,
    "dated": Method(
        display_name="document and an authority that returns the birth date",
        assurance="substantial",
        steps=("document", "dated_authority"),
    ),
}
START_DAY = date(2030, 6, 1)
INFO = RequestInfo(principal="test")
_n = itertools.count(1)


class DatedAuthority:
    """A stand-in authority that confirms every claim and returns the birth date it holds."""

    name = "dated_authority"
    biometric = False
    required_fields = frozenset({"document_type", "document_number", "name"})

    def __init__(self) -> None:
        self.birth: date | None = None

    async def check(self, context: StepContext) -> StepResult:
        del context
        return StepResult.passed(birth_date=self.birth)


@dataclass
class Today:
    """The injected calendar day (Asia/Shanghai)."""

    day: date = START_DAY

    def __call__(self) -> date:
        return self.day


@dataclass
class World:
    verification: VerificationFlow
    accounts: AccountFlow
    today: Today
    authority: DatedAuthority
    tenant: str
    redis: RedisClient
    scripts: Scripts
    deps: FlowDeps


class _NoLocator:
    async def locate(self, ip: str, *, field: str = "ip") -> Located:
        raise AssertionError(f"no IP lookups here ({field})", ip)


def _accounts(deps: FlowDeps, redis: RedisClient, scripts: Scripts) -> AccountFlow:
    """GetAccount over Redis, as the server builds it."""
    return AccountFlow(
        RedisAccounts(redis, scripts, deps.settings.reads.retention_days),
        keyring=deps.keyring,
        sealer=deps.sealer,
        locator=_NoLocator(),
        encode_label=lambda _: b"",
        today=deps.today,
    )


def _world(redis: RedisClient, tmp_path: Path, policy: str) -> World:
    tenant = f"ages{next(_n)}"
    config = tmp_path / "idverify.toml"
    config.write_text(
        tenant_toml(tenant, METHODS, claim_assurance="low", declared_birth_date=policy), encoding="utf-8"
    )
    settings = load_settings(config, environ={})
    keyring = Keyring.generate()
    authority = DatedAuthority()
    scripts = Scripts(redis)
    today = Today()
    deps = flow_deps_for_tests(
        settings,
        keyring,
        WindowLimiter(RedisRateWindows(scripts)),
        stand_ins={authority.name: authority},  # type: ignore[dict-item]
        today=today,
    )
    return World(
        redis_verification_flow(deps, redis, scripts),
        _accounts(deps, redis, scripts),
        today,
        authority,
        tenant,
        redis,
        scripts,
        deps,
    )


@pytest.fixture
def world(redis: RedisClient, tmp_path: Path) -> World:
    return _world(redis, tmp_path, "accept")


def resident(birth: date) -> Subject:
    """A person with a mainland resident ID that encodes ``birth``."""
    n = next(_n)
    body = f"440106{birth:%Y%m%d}{n % 1000:03d}"
    # calc_check_digit reads the first 17 characters of a whole number.
    return Subject(
        SubjectKind.PERSON, f"测试{n}", DocumentType.CN_RIC, body + ric.calc_check_digit(body + "0")
    )


def traveller(declared: date | None = None) -> Subject:
    """A person with a passport, which carries no birth date."""
    n = next(_n)
    return Subject(
        SubjectKind.PERSON,
        f"旅客{n}",
        DocumentType.PASSPORT,
        f"E{n:08d}",
        issuing_country="FR",
        birth_date=declared.isoformat() if declared else "",
    )


async def start(world: World, subject: Subject, account: str, method: str = "doc") -> VerificationView:
    return await world.verification.start(
        world.tenant,
        StartRequest(
            request_id=f"r{next(_n)}",
            account_id=account,
            method_id=method,
            subject=subject,
            consents=["identity"],
            consent_text_versions={"identity": text_version_of("identity text")},
        ),
        INFO,
    )


async def consent(
    world: World, child: str, verification_id: str, guardian: str, relationship: str = "parent"
) -> VerificationView:
    return await world.verification.grant_guardian_consent(
        GuardianConsent(
            tenant=world.tenant,
            account_id=child,
            verification_id=verification_id,
            guardian_account_id=guardian,
            text_version=text_version_of("guardian text"),
            relationship=relationship,
            info=INFO,
        )
    )


async def band(world: World, account: str) -> tuple[str, str]:
    view = await world.accounts.get_account(world.tenant, account)
    return view.age_band, view.age_source


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


class TestBandsMoveWithTheCalendar:
    async def test_a_13_year_old_turns_14_and_then_18(self, world: World) -> None:
        """The band of one binding follows the day asked: 13 -> 14-17 on the 14th, adult on the 18th."""
        fourteenth = START_DAY + timedelta(days=40)
        child = resident(years_before(fourteenth, 14))
        parent = resident(date(1985, 2, 3))
        assert (await start(world, parent, "parent")).status == "VERIFIED"
        waiting = await start(world, child, "child")
        assert waiting.status == "NEEDS_GUARDIAN_CONSENT"
        assert (await consent(world, "child", waiting.verification_id, "parent")).status == "VERIFIED"
        assert await band(world, "child") == ("under_14", "document")

        world.today.day = fourteenth - timedelta(days=1)
        assert await band(world, "child") == ("under_14", "document")
        world.today.day = fourteenth
        assert await band(world, "child") == ("14_to_17", "document")
        eighteenth = fourteenth.replace(year=fourteenth.year + 4)
        world.today.day = eighteenth - timedelta(days=1)
        assert await band(world, "child") == ("14_to_17", "document")
        world.today.day = eighteenth
        assert await band(world, "child") == ("adult", "document")

    async def test_a_minor_rule_uses_the_day_of_the_start(self, world: World) -> None:
        """The same person needs a guardian the day before their 14th birthday and not on it."""
        fourteenth = START_DAY + timedelta(days=3)
        child = resident(years_before(fourteenth, 14))
        world.today.day = fourteenth - timedelta(days=1)
        assert (await start(world, child, "eve")).status == "NEEDS_GUARDIAN_CONSENT"
        world.today.day = fourteenth
        assert (await start(world, child, "birthday")).status == "VERIFIED"
        assert await band(world, "birthday") == ("14_to_17", "document")

    async def test_an_account_bound_before_ages_were_read_keeps_its_band_until_it_verifies_again(
        self, world: World
    ) -> None:
        """No age_source on the account: LEGACY with the stored band; verifying again makes it current."""
        teen = resident(years_before(START_DAY, 17))
        assert (await start(world, teen, "old")).status == "VERIFIED"
        key = TenantKeys(world.tenant).account(world.deps.keyring.pseudonym(world.tenant, "account", "old"))
        await world.redis.hdel(key, "age_source", "birth_sealed")
        await world.redis.hset(key, "age_band", "14_to_17")
        world.today.day = START_DAY.replace(year=START_DAY.year + 2)
        assert await band(world, "old") == ("14_to_17", "legacy")
        assert (await start(world, teen, "old")).status == "VERIFIED"
        assert await band(world, "old") == ("adult", "document")
        # The start day's band, for 0.1.0 servers beside this release; read from the date here.
        assert await world.redis.hget(key, "age_band") == b"adult"


class TestGuardians:
    async def test_a_guardian_who_was_17_at_binding_may_consent_once_18(self, world: World) -> None:
        """Judged on the day of the consent, not on the band of the guardian's binding day."""
        eighteenth = START_DAY + timedelta(days=10)
        sibling = resident(years_before(eighteenth, 18))
        assert (await start(world, sibling, "sibling")).status == "VERIFIED"
        child = resident(date(2024, 1, 9))
        waiting = await start(world, child, "small")
        with pytest.raises(FailedPrecondition) as refused:
            await consent(world, "small", waiting.verification_id, "sibling", "legal_guardian")
        assert (refused.value.reason, refused.value.field) == ("GUARDIAN_NOT_ADULT", "guardian_account_id")
        world.today.day = eighteenth
        # The binding day's band stays stored for 0.1.0 servers; this release judges the date.
        key = TenantKeys(world.tenant).account(
            world.deps.keyring.pseudonym(world.tenant, "account", "sibling")
        )
        assert await world.redis.hget(key, "age_band") == b"14_to_17"
        done = await consent(world, "small", waiting.verification_id, "sibling", "legal_guardian")
        assert done.status == "VERIFIED"

    async def test_the_relationship_is_required(self, world: World) -> None:
        """A guardian consent that does not say parent or legal guardian is INVALID_ARGUMENT."""
        waiting = await start(world, resident(date(2024, 1, 9)), "tiny")
        with pytest.raises(InvalidArgument) as refused:
            await consent(world, "tiny", waiting.verification_id, "anyone", "")
        assert (refused.value.reason, refused.value.field) == ("RELATIONSHIP_REQUIRED", "relationship")

    async def test_a_declared_adult_may_not_be_a_guardian_where_the_tenant_says_so(
        self, redis: RedisClient, tmp_path: Path
    ) -> None:
        """declared_birth_date = not_for_guardians: a guardian's age must be proven."""
        strict = _world(redis, tmp_path, "not_for_guardians")
        declared_adult = await start(strict, traveller(date(1980, 1, 1)), "declared-adult")
        assert declared_adult.status == "VERIFIED", declared_adult
        assert await band(strict, "declared-adult") == ("adult", "declared")
        waiting = await start(strict, resident(date(2024, 1, 9)), "kid")
        with pytest.raises(FailedPrecondition) as refused:
            await consent(strict, "kid", waiting.verification_id, "declared-adult")
        assert refused.value.reason == "GUARDIAN_AGE_DECLARED"
        assert (await start(strict, resident(date(1979, 5, 5)), "proven")).status == "VERIFIED"
        assert (await consent(strict, "kid", waiting.verification_id, "proven")).status == "VERIFIED"


class TestDocumentsWithoutABirthDate:
    async def test_a_declared_adult_binds_as_declared(self, world: World) -> None:
        """A passport holder who declares an adult birth date binds, source DECLARED."""
        assert (await start(world, traveller(date(1991, 12, 24)), "p-adult")).status == "VERIFIED"
        assert await band(world, "p-adult") == ("adult", "declared")

    async def test_a_declared_child_needs_a_guardian(self, world: World) -> None:
        """Declared under 14: a guardian consents as for any child."""
        waiting = await start(world, traveller(date(2022, 3, 3)), "p-child")
        assert waiting.status == "NEEDS_GUARDIAN_CONSENT"
        assert (await start(world, resident(date(1970, 7, 7)), "p-parent")).status == "VERIFIED"
        assert (await consent(world, "p-child", waiting.verification_id, "p-parent")).status == "VERIFIED"
        assert await band(world, "p-child") == ("under_14", "declared")

    async def test_nothing_declared_leaves_the_band_unknown(self, world: World) -> None:
        """No date from anywhere: UNKNOWN, and the account says no source."""
        assert (await start(world, traveller(), "p-none")).status == "VERIFIED"
        assert await band(world, "p-none") == ("unknown", "none")

    async def test_an_authority_date_wins_and_a_contradicting_declaration_is_refused(
        self, world: World
    ) -> None:
        """A step's authority date is taken (AUTHORITY); a declared date that differs rejects."""
        world.authority.birth = date(1988, 8, 8)
        assert (await start(world, traveller(), "p-auth", method="dated")).status == "VERIFIED"
        assert await band(world, "p-auth") == ("adult", "authority")
        refused = await start(world, traveller(date(2020, 1, 1)), "p-liar", method="dated")
        assert (refused.status, refused.reason_code) == ("REJECTED", "BIRTH_DATE_MISMATCH")
        assert await band(world, "p-liar") == ("", "")

    async def test_a_declaration_never_replaces_an_authority_date(self, world: World) -> None:
        """Verifying again with a declared date keeps the date an authority returned."""
        subject = traveller()
        world.authority.birth = date(2020, 4, 4)
        first = await start(world, subject, "p-kid", method="dated")
        assert (await start(world, resident(date(1975, 1, 1)), "p-mum")).status == "VERIFIED"
        assert (await consent(world, "p-kid", first.verification_id, "p-mum")).status == "VERIFIED"
        declared = Subject(**{**_fields(subject), "birth_date": "1990-01-01"})
        assert (await start(world, declared, "p-kid")).status == "VERIFIED"
        assert await band(world, "p-kid") == ("under_14", "authority")

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("2030-13-01", "BAD_BIRTH_DATE"),
            ("20100101", "BAD_BIRTH_DATE"),
            ("1880-01-01", "BAD_BIRTH_DATE"),
            ("2030-06-02", "BIRTH_DATE_IN_FUTURE"),
        ],
    )
    async def test_a_bad_declared_date_is_named(self, world: World, text: str, reason: str) -> None:
        """INVALID_ARGUMENT naming subject.birth_date, before anything is stored."""
        subject = Subject(**{**_fields(traveller()), "birth_date": text})
        with pytest.raises(InvalidArgument) as refused:
            await start(world, subject, "p-bad")
        assert (refused.value.reason, refused.value.field) == (reason, "subject.birth_date")

    async def test_a_declared_date_must_match_the_document(self, world: World) -> None:
        """A resident ID carries its birth date: another declared one is BIRTH_DATE_MISMATCH."""
        subject = Subject(**{**_fields(resident(date(1990, 1, 2))), "birth_date": "1990-01-03"})
        with pytest.raises(InvalidArgument) as refused:
            await start(world, subject, "r-bad")
        assert (refused.value.reason, refused.value.field) == ("BIRTH_DATE_MISMATCH", "subject.birth_date")
        same = Subject(**{**_fields(resident(date(1990, 1, 2))), "birth_date": "1990-01-02"})
        assert (await start(world, same, "r-good")).status == "VERIFIED"
        assert await band(world, "r-good") == ("adult", "document")


class TestSealedBirthDates:
    async def test_never_in_the_clear_and_resealed_by_a_reindex(
        self, world: World, redis_server: RedisProcess
    ) -> None:
        """The store holds no form of the date; a new wrapping key re-seals it, counted until then."""
        birth = date(1993, 10, 17)
        assert (await start(world, traveller(birth), "sealed")).status == "VERIFIED"
        store = sync_redis.Redis(host="127.0.0.1", port=redis_server.port)
        blob = b"\n".join(_everything(store, world.tenant))
        for needle in (birth.isoformat(), f"{birth:%Y%m%d}", f"{birth:%Y/%m/%d}"):
            assert needle.encode() not in blob

        rotated = world.deps.keyring.with_new_wrapping_key(make_current=True)
        records = RedisSealedRecords(world.redis, world.scripts)
        usage = await count_key_usage(records)
        assert usage[world.tenant].accounts["w1"] == 1
        mover = IdentityMover(RedisIdentityRecords(world.redis, world.scripts), Sealer(rotated))
        report = await Reindexer(records, rotated, mover).run()
        assert report.finished
        usage = await count_key_usage(records)
        assert usage[world.tenant].accounts["w1"] == 0
        assert usage[world.tenant].wrapping_total("w1") == 0
        reader = _accounts(
            replace(world.deps, keyring=rotated, sealer=Sealer(rotated.without("w1"))),
            world.redis,
            world.scripts,
        )
        view = await reader.get_account(world.tenant, "sealed")
        assert (view.age_band, view.age_source) == ("adult", "declared")


def _fields(subject: Subject) -> dict[str, object]:
    return {name: getattr(subject, name) for name in Subject.__slots__}


def _everything(store: sync_redis.Redis, tenant: str) -> list[bytes]:
    found: list[bytes] = []
    for key in store.scan_iter(match=f"*{{t:{tenant}}}*", count=1000):
        found.append(key)
        kind = store.type(key)
        if kind == b"hash":
            found.extend(b"%s=%s" % item for item in store.hgetall(key).items())
        elif kind == b"string":
            found.append(store.get(key) or b"")
        elif kind == b"set":
            found.extend(store.smembers(key))
        elif kind == b"zset":
            found.extend(store.zrange(key, 0, -1))
    return found
