"""CheckDisplayName through the real server: the 200-name table, then the hostile actors.

Organizations establish their names through ``org_registry`` (SUBSTANTIAL, the enterprise check)
against the Cloudauth fake; ``org_document`` (the checksum, LOW) establishes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from stdnum.cn import uscc

from idverify.client import Client
from idverify.domain.display_names import protected_forms
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, audit_pb2, common_pb2, verification_pb2
from idverify.vendors.fakes import FakeAlibaba, Organization

from . import display_name_table as table
from .conftest import embedded_redis, everything_stored, person, rich_error, text_versions, verify
from .test_binding import LOOSE_LIMITS
from .test_keys_rotation import ok, wait_for_servers

pytestmark = pytest.mark.e2e
VERDICT = account_pb2.DisplayNameVerdict
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED
ESTABLISHING_METHOD = "org_registry"
REPRESENTATIVE = person()

CONFIG = (
    LOOSE_LIMITS
    + """
[vendors.alibaba]
kind = "alibaba"
endpoint = "{url}"
secret_id_env = "E2E_ALI_ID"
secret_key_env = "E2E_ALI_KEY"
timeout_seconds = 2
max_retries = 0
breaker_failures = 50

[verifiers.org_registry]
vendor = "alibaba"

[tenants.default.display_names]
platform_brands = ["星河社区"]

[tenants.other]
claim_assurance = "substantial"
"""
)
_codes = itertools.count(1)
# The Cloudauth fake of the module: an organization verified through org_registry is registered
# with it first, under the name presented.
_REGISTRY: list[FakeAlibaba] = []


def new_code() -> str:
    """A unified social credit code with a correct check character, unique in the run."""
    body = f"91110000{next(_codes):09d}"
    return body + uscc.calc_check_digit(body)


def verify_organization(
    registrar: Client, account: str, name: str, *, code: str | None = None, method: str = ESTABLISHING_METHOD
) -> verification_pb2.Verification:
    code = code or new_code()
    subject = common_pb2.Subject(
        kind=common_pb2.SUBJECT_KIND_ORGANIZATION,
        name=name,
        document_type=common_pb2.DOCUMENT_TYPE_CN_USCC,
        document_number=code,
    )
    if method == ESTABLISHING_METHOD:
        _REGISTRY[-1].organizations[code] = Organization(
            name, code, REPRESENTATIVE.name, REPRESENTATIVE.number, "1"
        )
        subject.legal_representative_name = REPRESENTATIVE.name
    return registrar.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=f"req-{account}-{next(_codes)}",
            account_id=account,
            method_id=method,
            consents=["identity"],
            consent_text_versions=text_versions(["identity"]),
            subject=subject,
        )
    ).verification


def approve(admin: Client, account: str, names: tuple[str, ...]) -> admin_pb2.SetApprovedNamesResponse:
    return admin.admin.SetApprovedNames(
        admin_pb2.SetApprovedNamesRequest(account_id=account, names=list(names))
    )


def check(platform: Client, account: str, display_name: str) -> account_pb2.CheckDisplayNameResponse:
    return platform.account.CheckDisplayName(
        account_pb2.CheckDisplayNameRequest(account_id=account, display_name=display_name)
    )


@pytest.fixture(scope="module")
def cloudauth() -> Iterator[FakeAlibaba]:
    with FakeAlibaba() as fake:
        _REGISTRY.append(fake)
        yield fake
        _REGISTRY.remove(fake)


def registry_server(directory: Path, fake: FakeAlibaba, config: str = CONFIG) -> ServerProcess:
    """A server whose org_registry asks ``fake``."""
    env = {"E2E_ALI_ID": fake.key_id, "E2E_ALI_KEY": fake.secret}
    return ServerProcess(directory, config=config.replace("{url}", fake.url), env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba) -> Iterator[ServerProcess]:
    with registry_server(tmp_path_factory.mktemp("display-names"), cloudauth) as running:
        yield running


@pytest.fixture(scope="module")
def platform(server: ServerProcess) -> Iterator[Client]:
    with server.client("platform") as client:
        yield client


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[Client]:
    with server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def organizations(server: ServerProcess, registrar: Client, admin: Client) -> dict[str, str]:
    """The table's organizations verified and their brands approved; account -> code."""
    codes = {}
    for account, (name, brands) in table.ORGANIZATIONS.items():
        codes[account] = new_code()
        assert verify_organization(registrar, account, name, code=codes[account]).status == VERIFIED
        if brands:
            approve(admin, account, brands)
    for account, name in table.LOW_ORGANIZATIONS.items():
        code = codes["org-huawei"] if account == "org-low-huawei" else new_code()
        answer = verify_organization(registrar, account, name, code=code, method="org_document")
        assert answer.status == VERIFIED, answer
    assert verify(server, registrar, person(), table.PERSON).status == VERIFIED
    return codes


class TestTable:
    def test_every_row_gets_its_verdict(self, platform: Client, organizations: dict[str, str]) -> None:
        """At least 200 display names, each answered with the table's verdict."""
        del organizations
        assert len(table.ROWS) >= 200
        wrong = []
        for account, display_name, expected in table.ROWS:
            answer = check(platform, account, display_name)
            got = VERDICT.Name(answer.verdict).removeprefix("DISPLAY_NAME_VERDICT_")
            if got != expected:
                wrong.append(f"{account} {display_name!r}: {got} ({answer.reason_code}), expected {expected}")
        assert not wrong, "\n".join(wrong)


def verdict(platform: Client, account: str, display_name: str) -> tuple[str, str]:
    answer = check(platform, account, display_name)
    return VERDICT.Name(answer.verdict).removeprefix("DISPLAY_NAME_VERDICT_"), answer.reason_code


def refusal(call: object) -> tuple[grpc.StatusCode, str, str]:
    """The status code, reason and field of a refused call."""
    with pytest.raises(grpc.RpcError) as refused:
        call()  # type: ignore[operator]
    return (refused.value.code(), *rich_error(refused.value))  # type: ignore[attr-defined]


class TestHostileActors:
    def test_a_person_cannot_use_a_verified_organizations_name_however_written(
        self, platform: Client, organizations: dict[str, str]
    ) -> None:
        """Spaces, zero-width characters, full-width and traditional forms all read as the name."""
        del organizations
        for written in (
            "华为技术有限公司",
            "华 为 技 术",
            "华\u200d为\u2060技术",
            "華為技術",
            "ＨＵＡＷＥＩ華為",
            "@華為!",
        ):
            assert verdict(platform, table.PERSON, written) == ("IMPERSONATION", "OTHER_ORGANIZATION_NAME"), (
                written
            )
        assert verdict(platform, table.PERSON, "国务院") == ("IMPERSONATION", "RESERVED_NAME")

    def test_a_checksum_binding_establishes_and_protects_nothing(
        self, registrar: Client, platform: Client, organizations: dict[str, str]
    ) -> None:
        """A dishonest registrar binds a famous name by org_document: UNVERIFIED, it locks nothing."""
        del organizations
        answer = verify_organization(
            registrar, "squat-org", "中国工商银行股份有限公司", method="org_document"
        )
        assert answer.status == VERIFIED
        assert verdict(platform, "squat-org", "中国工商银行") == ("UNVERIFIED", "NAME_NOT_ESTABLISHED")
        # The name entered no index: nobody else is told it is taken.
        assert verdict(platform, table.PERSON, "中国工商银行") == ("NOT_APPLICABLE", "PERSON_ACCOUNT")
        # The real organization, verified at the claim assurance, holds it from then on.
        assert verify_organization(registrar, "icbc", "中国工商银行股份有限公司").status == VERIFIED
        assert verdict(platform, "icbc", "中国工商银行") == ("CONSISTENT", "VERIFIED_NAME")
        assert verdict(platform, table.PERSON, "中国工商银行") == ("IMPERSONATION", "OTHER_ORGANIZATION_NAME")

    def test_registrar_and_auditor_tokens_cannot_check(self, server: ServerProcess) -> None:
        """Only the platform role (and admin) reaches CheckDisplayName."""
        for role in ("registrar", "auditor"):
            with server.client(role) as client:
                code, _, _ = refusal(lambda c=client: check(c, table.PERSON, "抖音"))
                assert code is grpc.StatusCode.PERMISSION_DENIED, role

    def test_bad_input_gets_a_precise_status(self, platform: Client) -> None:
        """Empty, symbol-only, overlong names, bad account ids: INVALID_ARGUMENT naming the field."""
        for display_name, reason in (
            ("", "EMPTY"),
            ("  !!! 🐧 ", "EMPTY"),
            ("字" * 65, "TOO_LONG"),
            ("x" * 300, "TOO_LONG"),
        ):
            assert refusal(lambda d=display_name: check(platform, table.PERSON, d)) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                reason,
                "display_name",
            )
        code, _, field = refusal(lambda: check(platform, "bad id", "抖音"))
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "account_id")

    def test_another_tenants_names_are_not_this_tenants(
        self, server: ServerProcess, organizations: dict[str, str]
    ) -> None:
        """The index is per tenant: a name verified in one tenant protects nothing in another."""
        del organizations
        with (
            server.client("registrar", tenant="other") as registrar,
            server.client("platform", tenant="other") as platform,
        ):
            assert verify_organization(registrar, "other-org", "上海星辰文化传媒有限公司").status == VERIFIED
            assert verdict(platform, "other-org", "星辰文化传媒") == ("CONSISTENT", "VERIFIED_NAME")
            assert verdict(platform, "someone", "抖音") == ("UNVERIFIED", "NO_VERIFIED_IDENTITY")
            assert verdict(platform, "org-bytedance", "北京字节跳动科技有限公司") == (
                "UNVERIFIED",
                "NO_VERIFIED_IDENTITY",
            )

    def test_nothing_is_stored_in_the_clear(
        self, server: ServerProcess, platform: Client, organizations: dict[str, str]
    ) -> None:
        """No registered name, form, brand or display name asked about is in Redis, plain or hashed."""
        del organizations
        check(platform, table.PERSON, "星辰文化传媒官方旗舰店")
        needles: set[bytes] = set()
        plain = ["星辰文化传媒官方旗舰店"]
        for name, brands in table.ORGANIZATIONS.values():
            plain += [name, *brands]
        plain += [form for name, _ in table.ORGANIZATIONS.values() for form in protected_forms(name)]
        for value in plain:
            raw = value.encode()
            needles |= {raw, hashlib.sha256(raw).hexdigest().encode(), hashlib.md5(raw).hexdigest().encode()}  # noqa: S324 - finding MD5 forms is the point
        stored = b"\n".join(everything_stored(embedded_redis(server)))
        assert [n.decode(errors="replace") for n in needles if n in stored] == []


class TestApprovedNames:
    def test_approvals_are_checked_replaced_and_audited(
        self,
        server: ServerProcess,
        registrar: Client,
        platform: Client,
        admin: Client,
        organizations: dict[str, str],
    ) -> None:
        """Only an established organization gets approved names; a new list replaces the old; audited."""
        del organizations
        assert verify_organization(registrar, "brand-org", "杭州青柠网络科技有限公司").status == VERIFIED
        assert approve(admin, "brand-org", ("青柠", "柠檬派")).approved_count == 2
        assert verdict(platform, "brand-org", "柠檬派") == ("CONSISTENT", "APPROVED_NAME")
        assert verdict(platform, table.PERSON, "青柠小铺") == ("IMPERSONATION", "OTHER_ORGANIZATION_NAME")
        assert approve(admin, "brand-org", ("青柠",)).approved_count == 1
        assert verdict(platform, "brand-org", "柠檬派") == ("INCONSISTENT", "NAME_NOT_CONTAINED")
        assert verdict(platform, table.PERSON, "柠檬派") == ("NOT_APPLICABLE", "PERSON_ACCOUNT")
        refusals = {
            "person": refusal(lambda: approve(admin, table.PERSON, ("青柠",))),
            "low": refusal(lambda: approve(admin, "org-low-chenxi", ("晨曦",))),
            "unbound": refusal(lambda: approve(admin, "never-bound", ("晨曦",))),
            "reserved": refusal(lambda: approve(admin, "brand-org", ("青柠", "青柠官方"))),
            "taken": refusal(lambda: approve(admin, "brand-org", ("抖音",))),
            # A brand carrying another's name would make that name the account's own there.
            "contains": refusal(lambda: approve(admin, "brand-org", ("青柠抖音", "柠檬派"))),
            "contains full-width": refusal(lambda: approve(admin, "brand-org", ("青柠 華為 旗舰",))),
            "short": refusal(lambda: approve(admin, "brand-org", ("柠",))),
            "short second": refusal(lambda: approve(admin, "brand-org", ("青柠", "柠檬派", "柠"))),
            "empty second": refusal(lambda: approve(admin, "brand-org", ("青柠", "· !"))),
            "many": refusal(lambda: approve(admin, "brand-org", tuple(f"品牌{n}" for n in range(17)))),
        }
        failed = grpc.StatusCode.FAILED_PRECONDITION
        assert refusals == {
            "person": (failed, "NOT_ORGANIZATION", ""),
            "low": (failed, "NOT_ESTABLISHED", ""),
            "unbound": (failed, "NOT_BOUND", ""),
            # A bad entry is named by its index as sent: no search through the list for it.
            "reserved": (failed, "NAME_RESERVED", "names[1]"),
            "taken": (failed, "NAME_TAKEN", ""),
            "contains": (failed, "NAME_TAKEN", ""),
            "contains full-width": (failed, "NAME_TAKEN", ""),
            "short": (grpc.StatusCode.INVALID_ARGUMENT, "TOO_SHORT", "names[0]"),
            "short second": (grpc.StatusCode.INVALID_ARGUMENT, "TOO_SHORT", "names[2]"),
            "empty second": (grpc.StatusCode.INVALID_ARGUMENT, "EMPTY", "names[1]"),
            "many": (grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY", "names"),
        }
        with server.client("auditor") as auditor:
            entries = list(
                auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(event_types=["names.approved"]))
            )
            mine = auditor.audit.QueryEvents(
                audit_pb2.QueryEventsRequest(event_types=["names.approved"], account_id="brand-org")
            )
            outcomes = [(found.event.outcome, found.event.reason_code) for found in mine]
        assert len(entries) >= 2
        assert all(
            "青柠" not in entry.event.SerializeToString().decode(errors="replace") for entry in entries
        )
        # Each NAME_TAKEN told the admin that some organization holds a name: audited too.
        assert outcomes == [("approved", ""), ("approved", "")] + [("refused", "NAME_TAKEN")] * 3

    def test_a_platform_or_an_operator_cannot_approve(self, server: ServerProcess, platform: Client) -> None:
        """SetApprovedNames is the tenant admin's call, nobody else's.

        An operator (clients of every tenant) may not approve, nor learn from NAME_TAKEN which
        names another organization holds.
        """
        code, _, _ = refusal(
            lambda: platform.admin.SetApprovedNames(
                admin_pb2.SetApprovedNamesRequest(account_id="org-cmb", names=["招行"])
            )
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
        with server.client("operator") as operator:
            for tenant in ("", "default"):
                code, _, _ = refusal(
                    lambda t=tenant: operator.admin.SetApprovedNames(
                        admin_pb2.SetApprovedNamesRequest(tenant=t, account_id="org-cmb", names=["招行"])
                    )
                )
                assert code is grpc.StatusCode.PERMISSION_DENIED, tenant

    def test_a_brand_approved_before_a_name_was_indexed_does_not_carry_it(
        self, registrar: Client, platform: Client, admin: Client, organizations: dict[str, str]
    ) -> None:
        """An approved brand never makes another organization's name the account's own.

        星港优选 is approved while no organization holds 优选; then 上海优选有限公司 is verified
        through the registry. The first organization's 星港优选 now carries the other's name:
        IMPERSONATION, as for anyone else; its registered name is still its own.
        """
        del organizations
        assert verify_organization(registrar, "early-brand", "杭州市星港贸易有限公司").status == VERIFIED
        assert approve(admin, "early-brand", ("星港优选",)).approved_count == 1
        assert verdict(platform, "early-brand", "星港优选") == ("CONSISTENT", "APPROVED_NAME")
        assert verify_organization(registrar, "later-name", "上海优选有限公司").status == VERIFIED
        assert verdict(platform, "early-brand", "星港优选") == ("IMPERSONATION", "OTHER_ORGANIZATION_NAME")
        assert verdict(platform, "early-brand", "星港贸易") == ("CONSISTENT", "VERIFIED_NAME")
        assert verdict(platform, "later-name", "优选") == ("CONSISTENT", "VERIFIED_NAME")
        # Approving it again now is refused outright.
        assert refusal(lambda: approve(admin, "early-brand", ("星港优选",)))[:2] == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "NAME_TAKEN",
        )


class TestLifecycle:
    def test_a_cancelled_organizations_names_leave_the_index(
        self, registrar: Client, platform: Client, admin: Client, organizations: dict[str, str]
    ) -> None:
        """With its last account cancelled, its names and brands are nobody's again."""
        del organizations
        assert verify_organization(registrar, "gone-org", "深圳市远航物流有限公司").status == VERIFIED
        approve(admin, "gone-org", ("远航快运",))
        assert verdict(platform, table.PERSON, "远航物流") == ("IMPERSONATION", "OTHER_ORGANIZATION_NAME")
        platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="gone-org"))
        assert verdict(platform, table.PERSON, "远航物流") == ("NOT_APPLICABLE", "PERSON_ACCOUNT")
        assert verdict(platform, table.PERSON, "远航快运") == ("NOT_APPLICABLE", "PERSON_ACCOUNT")
        unbound = ("UNVERIFIED", "NO_VERIFIED_IDENTITY")
        assert verdict(platform, "gone-org", "深圳市远航物流有限公司") == unbound


class TestProbing:
    def test_a_client_probing_the_index_is_stopped_at_its_daily_limit(
        self, tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba
    ) -> None:
        """A client's sixth check of five a day is RESOURCE_EXHAUSTED; another client is still served."""
        config = CONFIG.replace(
            "[rate_limits]\n", "[rate_limits]\ndisplay_name_checks_per_principal_per_day = 5\n", 1
        )
        with registry_server(tmp_path_factory.mktemp("probing"), cloudauth, config) as server:
            with server.client("platform") as prober:
                for n in range(5):
                    assert verdict(prober, "probe", f"候选公司{n}")[0] == "UNVERIFIED"
                code, reason, _ = refusal(lambda: check(prober, "probe", "候选公司9"))
                assert (code, reason) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "DISPLAY_NAME_CHECKS_RATE_LIMITED",
                )
            with server.client("admin") as admin:
                token = admin.admin.CreateClient(admin_pb2.CreateClientRequest(role="platform")).token
            with Client(server.target, token, credentials=server.credentials) as other:
                assert verdict(other, "probe", "候选公司9")[0] == "UNVERIFIED"


class TestKeyRotation:
    def test_verdicts_hold_across_a_new_pepper_and_a_new_wrapping_key(
        self, tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba
    ) -> None:
        """The index is keyed by the pinned pepper, nothing in it sealed: rotations change no verdict."""
        config = "keyring_reload_seconds = 0.3\n" + CONFIG
        with (
            registry_server(tmp_path_factory.mktemp("rotation"), cloudauth, config) as server,
            server.client("registrar") as registrar,
            server.client("platform") as platform,
            server.client("admin") as admin,
        ):
            code = new_code()
            name = "成都市蓝鲸数据科技有限公司"
            assert verify_organization(registrar, "rot-org", name, code=code).status == VERIFIED
            approve(admin, "rot-org", ("蓝鲸云",))
            asked = {
                ("rot-org", "蓝鲸数据科技"): ("CONSISTENT", "VERIFIED_NAME"),
                ("rot-org", "蓝鲸云"): ("CONSISTENT", "APPROVED_NAME"),
                ("someone", "蓝鲸数据科技客服"): ("IMPERSONATION", "OTHER_ORGANIZATION_NAME"),
            }
            assert {key: verdict(platform, *key) for key in asked} == asked
            index = embedded_redis(server).hgetall("iv1:{t:default}:orgname")
            assert "added p2" in ok(server, "add", "--pepper")
            ok(server, "rotate", "--pepper")
            wait_for_servers(server, lambda report: report["pepper_current"] == "p2")
            assert "added w2" in ok(server, "add")
            ok(server, "rotate")
            wait_for_servers(server, lambda report: report["wrapping_current"] == "w2")
            assert "done" in ok(server, "reindex", "--no-progress")
            assert {key: verdict(platform, *key) for key in asked} == asked
            # Another account of the organization, verified under the new keys, writes the same
            # hashes: the index is unchanged and the account's own names are its own.
            assert verify_organization(registrar, "rot-org-2", name, code=code).status == VERIFIED
            assert verdict(platform, "rot-org-2", "蓝鲸数据科技") == ("CONSISTENT", "VERIFIED_NAME")
            assert embedded_redis(server).hgetall("iv1:{t:default}:orgname") == index


class TestCommandLine:
    def test_an_admin_approves_names_from_the_command_line(
        self, server: ServerProcess, registrar: Client, platform: Client, organizations: dict[str, str]
    ) -> None:
        """`idverify display-names approve` records names; a refusal or a missing token is one line."""
        del organizations
        assert verify_organization(registrar, "cli-org", "广州市木棉花餐饮管理有限公司").status == VERIFIED

        def run(*args: str, token: str | None = server.token("admin")) -> subprocess.CompletedProcess[str]:
            flags = ["--server", server.target] + (["--token", token] if token else [])
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDVERIFY_")}
            return subprocess.run(
                [sys.executable, "-m", "idverify", "display-names", "approve", *args, *flags],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=env,
            )

        done = run("cli-org", "木棉花", "花城小馆")
        assert (done.returncode, done.stdout) == (0, "2 name(s) approved for cli-org\n"), done.stderr
        assert verdict(platform, "cli-org", "花城小馆") == ("CONSISTENT", "APPROVED_NAME")
        refused = run(table.PERSON, "木棉花")
        assert refused.returncode == 1
        assert refused.stderr.startswith("idverify: FAILED_PRECONDITION:")
        assert len(refused.stderr.splitlines()) == 1
        missing = run("cli-org", "木棉花", token=None)
        assert missing.returncode == 2
        assert "--token" in missing.stderr


class TestReadme:
    def test_the_worked_example_answers_as_written(
        self, platform: Client, organizations: dict[str, str]
    ) -> None:
        """README "Display names": every answer of the worked example (org-1 is org-bytedance here)."""
        del organizations
        example = {
            ("org-bytedance", "字节跳动科技官方"): ("CONSISTENT", "VERIFIED_NAME"),
            ("org-bytedance", "抖音"): ("CONSISTENT", "APPROVED_NAME"),
            ("org-bytedance", "字节跳动"): ("INCONSISTENT", "NAME_NOT_CONTAINED"),
            (table.PERSON, "抖 音 小助手"): ("IMPERSONATION", "OTHER_ORGANIZATION_NAME"),
            (table.PERSON, "星河社区客服"): ("IMPERSONATION", "RESERVED_NAME"),
            (table.PERSON, "快乐的小王"): ("NOT_APPLICABLE", "PERSON_ACCOUNT"),
            ("new-user", "快乐的小王"): ("UNVERIFIED", "NO_VERIFIED_IDENTITY"),
        }
        assert {key: verdict(platform, *key) for key in example} == example
