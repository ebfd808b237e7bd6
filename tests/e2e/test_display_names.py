"""CheckDisplayName through the real server: the 200-name table, then the hostile actors.

Until the registry verifier exists, ``org_checked`` (the checksum, rated at the tenant's claim
assurance) stands in for a method that establishes an organization's name; ``org_document``
stays LOW and establishes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from stdnum.cn import uscc

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, admin_pb2, common_pb2, verification_pb2

from . import display_name_table as table
from .conftest import person, text_versions, verify
from .test_binding import LOOSE_LIMITS

pytestmark = pytest.mark.e2e
VERDICT = account_pb2.DisplayNameVerdict
VERIFIED = verification_pb2.VERIFICATION_STATUS_VERIFIED
ESTABLISHING_METHOD = "org_checked"

CONFIG = (
    LOOSE_LIMITS
    + """
[tenants.default.methods.sms]
steps = ["document", "sms_otp"]

[tenants.default.methods.org_document]
subject_kinds = ["organization"]
steps = ["document"]

[tenants.default.methods.org_checked]
assurance = "substantial"
subject_kinds = ["organization"]
steps = ["document"]

[tenants.default.display_names]
platform_brands = ["星河社区"]

[tenants.other.methods.org_checked]
assurance = "substantial"
subject_kinds = ["organization"]
steps = ["document"]
"""
)
_codes = itertools.count(1)


def new_code() -> str:
    """A unified social credit code with a correct check character, unique in the run."""
    body = f"91110000{next(_codes):09d}"
    return body + uscc.calc_check_digit(body)


def verify_organization(
    registrar: Client, account: str, name: str, *, code: str | None = None, method: str = ESTABLISHING_METHOD
) -> verification_pb2.Verification:
    return registrar.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=f"req-{account}-{next(_codes)}",
            account_id=account,
            method_id=method,
            consents=["identity"],
            consent_text_versions=text_versions(["identity"]),
            subject=common_pb2.Subject(
                kind=common_pb2.SUBJECT_KIND_ORGANIZATION,
                name=name,
                document_type=common_pb2.DOCUMENT_TYPE_CN_USCC,
                document_number=code or new_code(),
            ),
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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("display-names"), config=CONFIG) as running:
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
