# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Organizations verified against the enterprise registry: `idverify serve` against the Cloudauth fake.

The built-in methods are used as they ship: ``org_document`` (checksum only, LOW) and, once
``[verifiers.org_registry]`` names a vendor, ``org_registry`` (SUBSTANTIAL, ENT_3META). A
dishonest registrar gets no VERIFIED for a wrong legal representative or a deregistered company;
a LOW checksum binding under a false name cannot lock the real organization out; and nothing the
organization, its representative or the registry's answer contain is kept in the clear.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from idverify.client import Client
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, audit_pb2, common_pb2, verification_pb2
from idverify.vendors.fakes import Drop, FakeAlibaba, FakeGateway, Organization, Slow

from .conftest import embedded_redis, everything_stored, person, rich_error, subject_of, text_versions
from .test_binding import LOOSE_LIMITS

pytestmark = pytest.mark.e2e
STATUS = verification_pb2.VerificationStatus
VERIFIED = STATUS.Value("VERIFICATION_STATUS_VERIFIED")
REJECTED = STATUS.Value("VERIFICATION_STATUS_REJECTED")
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ADDRESS = "浙江省杭州市西湖区文三路{n}号"

CONFIG = (
    """
log_format = "json"
"""
    + LOOSE_LIMITS
    + """
[telemetry]
traces = "console"
sample_ratio = 1.0

[verification]
binding_limit = 5

[vendors.alibaba]
kind = "alibaba"
endpoint = "{url}"
secret_id_env = "E2E_ALI_ID"
secret_key_env = "E2E_ALI_KEY"
timeout_seconds = 2
connect_timeout_seconds = 1
backoff_seconds = 0
max_retries = 0
breaker_failures = 50

[verifiers.org_registry]
vendor = "alibaba"
"""
)
_counter = itertools.count(1)


def uscc(n: int) -> str:
    """A unified social credit code with a correct GB 32100 check character."""
    body = f"9133010667{n:07d}"
    total = sum(USCC_ALPHABET.index(char) * pow(3, position, 31) for position, char in enumerate(body))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


@dataclass(frozen=True)
class Company:
    """A test organization with its legal representative: all of it must stay out of storage."""

    name: str
    code: str
    rep_name: str
    rep_id: str
    address: str

    def subject(self, **changes: object) -> common_pb2.Subject:
        organization = {
            "name": self.name,
            "document_number": self.code,
            "legal_representative_name": self.rep_name,
            "legal_representative_document_type": common_pb2.DOCUMENT_TYPE_CN_RIC,
            "legal_representative_document_number": self.rep_id,
            "registered_address": self.address,
        }
        return subject_of(
            common_pb2.SUBJECT_KIND_ORGANIZATION, common_pb2.DOCUMENT_TYPE_CN_USCC, organization, changes
        )

    def needles(self) -> set[bytes]:
        found: set[bytes] = set()
        for value in (self.name, self.code, self.rep_name, self.rep_id, self.address):
            raw = value.encode()
            found |= {raw, hashlib.sha256(raw).hexdigest().encode()}
            found.add(hashlib.md5(raw).hexdigest().encode())  # noqa: S324 - finding MD5 forms is the point
        return found


COMPANIES: list[Company] = []


def company(fake: FakeAlibaba | FakeGateway, *, status: str = "1", registered: bool = True) -> Company:
    """A fresh company the fake registry knows (unless ``registered`` is false)."""
    n = next(_counter)
    rep = person()
    made = Company(f"杭州第{n}示例网络科技有限公司", uscc(n), rep.name, rep.number, ADDRESS.format(n=n))
    if registered:
        fake.organizations[made.code] = Organization(made.name, made.code, made.rep_name, made.rep_id, status)
    COMPANIES.append(made)
    return made


def start_org(
    client: Client, org: Company, account: str, *, method: str = "org_registry", **changes: object
) -> verification_pb2.Verification:
    return client.verification.StartVerification(
        verification_pb2.StartVerificationRequest(
            request_id=f"req-org-{next(_counter)}",
            account_id=account,
            method_id=method,
            subject=org.subject(**changes),
            consents=["identity"],
            consent_text_versions=text_versions(["identity"]),
            client_ip="203.0.113.9",
        )
    ).verification


def get_account(platform: Client, account_id: str) -> account_pb2.Account:
    return platform.account.GetAccount(account_pb2.GetAccountRequest(account_id=account_id)).account


@pytest.fixture(scope="module")
def cloudauth() -> Iterator[FakeAlibaba]:
    with FakeAlibaba() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba) -> Iterator[ServerProcess]:
    env = {"E2E_ALI_ID": cloudauth.key_id, "E2E_ALI_KEY": cloudauth.secret}
    config = CONFIG.replace("{url}", cloudauth.url)
    with ServerProcess(tmp_path_factory.mktemp("orgreg"), config=config, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def platform(server: ServerProcess) -> Iterator[Client]:
    with server.client("platform") as client:
        yield client


class TestMethods:
    def test_the_built_in_methods_for_organizations(self, registrar: Client) -> None:
        """org_document stays (LOW, code only); org_registry is SUBSTANTIAL and needs the representative."""
        listed = registrar.verification.ListMethods(
            verification_pb2.ListMethodsRequest(subject_kind=common_pb2.SUBJECT_KIND_ORGANIZATION)
        ).methods
        by_id = {method.id: method for method in listed}
        assert sorted(by_id) == ["org_document", "org_registry"]
        assert by_id["org_document"].assurance == common_pb2.ASSURANCE_LEVEL_LOW
        assert by_id["org_registry"].assurance == common_pb2.ASSURANCE_LEVEL_SUBSTANTIAL
        assert list(by_id["org_registry"].steps) == ["document", "org_registry"]
        assert "legal_representative_name" in by_id["org_registry"].required_fields


class TestRegistry:
    def test_an_operating_organization_is_verified(
        self, registrar: Client, platform: Client, cloudauth: FakeAlibaba
    ) -> None:
        org = company(cloudauth)
        done = start_org(registrar, org, "org-ok")
        assert done.status == VERIFIED, done
        assert get_account(platform, "org-ok").assurance == common_pb2.ASSURANCE_LEVEL_SUBSTANTIAL
        sent = cloudauth.requests[-1]
        assert (sent.action, sent.signature_ok) == ("EntElementVerifyV2", True)
        assert sent.fields["InfoVerifyType"] == "ENT_3META"
        # Our verification id, never the account id, goes to the vendor.
        assert sent.fields["MerchantUserId"] == done.verification_id
        assert "org-ok" not in sent.fields.values()

    def test_a_dishonest_registrar_gets_no_verified(self, registrar: Client, cloudauth: FakeAlibaba) -> None:
        """A wrong legal representative, a deregistered or revoked company, an unknown code: REJECTED."""
        org = company(cloudauth)
        cases = [
            (
                start_org(registrar, org, "dis-rep", legal_representative_name="冒充者"),
                "LEGAL_REP_NAME_MISMATCH",
            ),
            (start_org(registrar, org, "dis-name", name="杭州冒名网络科技有限公司"), "ORG_NAME_MISMATCH"),
            (start_org(registrar, company(cloudauth, status="3"), "dis-dereg"), "ORG_NOT_ACTIVE"),
            (start_org(registrar, company(cloudauth, status="4"), "dis-revoked"), "ORG_NOT_ACTIVE"),
            (start_org(registrar, company(cloudauth, registered=False), "dis-none"), "ORG_NOT_FOUND"),
        ]
        for answer, reason in cases:
            assert (answer.status, answer.reason_code) == (REJECTED, reason), answer
            # The checksum method is offered instead; it proves less and establishes nothing.
            assert list(answer.fallback_method_ids) == ["org_document"]

    def test_a_registry_that_does_not_answer(self, registrar: Client, cloudauth: FakeAlibaba) -> None:
        """A timeout or a dropped connection is the vendor's failure, never a verdict on the company."""
        cloudauth.plan(Slow(3.0))
        slow = start_org(registrar, company(cloudauth), "down-slow")
        cloudauth.plan(Drop())
        dropped = start_org(registrar, company(cloudauth), "down-drop")
        assert (slow.status, slow.reason_code) == (REJECTED, "VENDOR_TIMEOUT")
        assert (dropped.status, dropped.reason_code) == (REJECTED, "VENDOR_UNAVAILABLE")
        assert list(dropped.fallback_method_ids) == ["org_document"]

    def test_the_representative_is_required_and_validated(
        self, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """Missing or malformed fields are INVALID_ARGUMENT naming the field, before any vendor call."""
        org = company(cloudauth)
        calls = len(cloudauth.requests)
        cases = [
            ({"legal_representative_name": ""}, "EMPTY", "subject.legal_representative_name"),
            (
                {"legal_representative_document_number": "110105194912310021"},
                "CHECKSUM_MISMATCH",
                "subject.legal_representative_document_number",
            ),
            ({"registered_address": "路\x07一号"}, "BAD_CHARACTERS", "subject.registered_address"),
            ({"registered_address": "路" * 401}, "TOO_LONG", "subject.registered_address"),
            (
                {"legal_representative_document_type": 99},
                "UNKNOWN_ENUM",
                "subject.legal_representative_document_type",
            ),
        ]
        for changes, reason, field in cases:
            with pytest.raises(grpc.RpcError) as refused:
                start_org(registrar, org, "bad-input", **changes)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert rich_error(refused.value) == (reason, field)
        assert len(cloudauth.requests) == calls

    def test_a_person_has_no_legal_representative(self, registrar: Client) -> None:
        someone = person()
        with pytest.raises(grpc.RpcError) as refused:
            registrar.verification.StartVerification(
                verification_pb2.StartVerificationRequest(
                    request_id="req-person-rep",
                    account_id="person-rep",
                    method_id="sms",
                    subject=someone.subject(legal_representative_name="张三"),
                    consents=["identity", "phone"],
                    consent_text_versions=text_versions(["identity", "phone"]),
                )
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_error(refused.value) == ("KIND_MISMATCH", "subject.legal_representative_name")


class TestClaims:
    def test_a_checksum_binding_cannot_lock_out_the_real_organization(
        self, registrar: Client, platform: Client, cloudauth: FakeAlibaba
    ) -> None:
        """Five LOW org_document bindings of the real code under a false name, then the registry.

        The squatters fill the code's binding limit; the organization verified through the registry
        establishes its name, is VERIFIED, and every false binding is superseded.
        """
        org = company(cloudauth)
        false_name = "杭州冒名顶替网络科技有限公司"
        squatters = [f"org-sq-{n}" for n in range(5)]
        for account_id in squatters:
            squat = start_org(registrar, org, account_id, method="org_document", name=false_name)
            assert squat.status == VERIFIED, squat
            assert get_account(platform, account_id).assurance == common_pb2.ASSURANCE_LEVEL_LOW
        real = start_org(registrar, org, "org-real")
        assert real.status == VERIFIED, real
        for account_id in squatters:
            superseded = get_account(platform, account_id)
            assert not superseded.verified
            assert superseded.binding_state == account_pb2.BINDING_STATE_SUPERSEDED
        # The false name is refused from now on, by the checksum method too.
        again = start_org(registrar, org, "org-sq-again", method="org_document", name=false_name)
        assert (again.status, again.reason_code) == (REJECTED, "NAME_MISMATCH")
        # The real name still binds by checksum, as the established name.
        assert start_org(registrar, org, "org-real-2", method="org_document").status == VERIFIED

    def test_a_checksum_binding_under_the_true_name_establishes_nothing(
        self, server: ServerProcess, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """org_document under the right name binds LOW; a false name by checksum still binds after it."""
        org = company(cloudauth)
        true_name = start_org(registrar, org, "org-low-true", method="org_document")
        false_name = start_org(
            registrar, org, "org-low-false", method="org_document", name="杭州另一名称科技有限公司"
        )
        assert (true_name.status, false_name.status) == (VERIFIED, VERIFIED)
        with server.client("auditor") as auditor:
            request = audit_pb2.QueryEventsRequest(event_types=["claim.established"], limit=1000)
            established = {found.event.verification_id for found in auditor.audit.QueryEvents(request)}
        assert established.isdisjoint({true_name.verification_id, false_name.verification_id})
        assert established  # the registry's verifications of this module did establish theirs


class TestTwoElements:
    def test_ent_2meta_asks_for_name_and_code_only(
        self, tmp_path_factory: pytest.TempPathFactory, cloudauth: FakeAlibaba
    ) -> None:
        """With ENT_2META no representative is required or sent; the name is still compared."""
        config = CONFIG.replace("{url}", cloudauth.url).replace(
            'vendor = "alibaba"\n', 'vendor = "alibaba"\nmode = "ENT_2META"\n'
        )
        env = {"E2E_ALI_ID": cloudauth.key_id, "E2E_ALI_KEY": cloudauth.secret}
        org = company(cloudauth)
        with (
            ServerProcess(tmp_path_factory.mktemp("org2meta"), config=config, env=env) as running,
            running.client("registrar") as registrar,
        ):
            listed = registrar.verification.ListMethods(
                verification_pb2.ListMethodsRequest(subject_kind=common_pb2.SUBJECT_KIND_ORGANIZATION)
            ).methods
            required = next(m.required_fields for m in listed if m.id == "org_registry")
            calls = len(cloudauth.requests)
            bare = {
                "legal_representative_name": "",
                "legal_representative_document_type": common_pb2.DOCUMENT_TYPE_UNSPECIFIED,
                "legal_representative_document_number": "",
                "registered_address": "",
            }
            done = start_org(registrar, org, "two-ok", **bare)
            sent = cloudauth.requests[calls]
            wrong = start_org(registrar, org, "two-name", name="杭州冒名二要素科技有限公司", **bare)
        assert "legal_representative_name" not in required
        assert done.status == VERIFIED, done
        assert sent.fields["InfoVerifyType"] == "ENT_2META"
        assert "LegalPersonName" not in sent.fields
        assert "LegalPersonCertNo" not in sent.fields
        assert (wrong.status, wrong.reason_code) == (REJECTED, "ORG_NAME_MISMATCH")


GATEWAY_CONFIG = """
[vendors.idgw]
kind = "http"
url = "{url}"
secret_env = "E2E_IDGW_SECRET"
documents = ["cn_uscc", "cn_ric"]
timeout_seconds = 2
backoff_seconds = 0
max_retries = 0

[verifiers.org_registry]
vendor = "idgw"
mode = "ENT_4META"
"""


class TestGateway:
    def test_org_elements_through_an_operators_gateway(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """ENT_4META through a signed-JSON gateway: a match passes, the representative's ID is compared."""
        with FakeGateway() as gateway:
            org = company(gateway)
            config = GATEWAY_CONFIG.replace("{url}", gateway.url)
            env = {"E2E_IDGW_SECRET": gateway.secret}
            with (
                ServerProcess(tmp_path_factory.mktemp("orggw"), config=config, env=env) as running,
                running.client("registrar") as registrar,
            ):
                assert start_org(registrar, org, "gw-ok").status == VERIFIED
                wrong = start_org(
                    registrar, org, "gw-id", legal_representative_document_number=person().number
                )
                gateway.sign_responses = False
                forged = start_org(registrar, company(gateway), "gw-forged")
        assert (wrong.status, wrong.reason_code) == (REJECTED, "LEGAL_REP_ID_MISMATCH")
        # An answer without the gateway's signature is never taken for a match.
        assert (forged.status, forged.reason_code) == (REJECTED, "VENDOR_AUTH_FAILED")
        sent = gateway.requests[0]
        assert (sent.action, sent.signature_ok) == ("org_elements", True)
        assert sent.fields["legal_representative_document_number"] == org.rep_id
        assert sent.fields["registered_address"] == org.address


class TestReadme:
    def test_the_worked_example_answers_as_written(
        self, server: ServerProcess, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """README "Organizations": the example's subject, its three answers and their vendor codes."""
        address = ADDRESS.format(n=next(_counter))  # not in the example's request: never sent
        readme = Company("杭州示例网络科技有限公司", "91330106673959654P", "张三", person().number, address)
        COMPANIES.append(readme)
        cloudauth.organizations[readme.code] = Organization(
            readme.name, readme.code, readme.rep_name, readme.rep_id, "1"
        )

        def start(account: str, rep_name: str) -> verification_pb2.Verification:
            # The README's request, field for field (only the representative's name varies).
            company = common_pb2.Subject(
                kind=common_pb2.SUBJECT_KIND_ORGANIZATION,
                name=readme.name,
                document_type=common_pb2.DOCUMENT_TYPE_CN_USCC,
                document_number=readme.code,
                legal_representative_name=rep_name,
            )
            return registrar.verification.StartVerification(
                verification_pb2.StartVerificationRequest(
                    request_id=f"req-readme-{next(_counter)}",
                    account_id=account,
                    method_id="org_registry",
                    subject=company,
                    consents=["identity"],
                    consent_text_versions=text_versions(["identity"]),
                    client_ip="203.0.113.9",
                )
            ).verification

        done = start("shop-1", "张三")
        misspelt = start("shop-2", "张四")
        cloudauth.organizations[readme.code] = Organization(
            readme.name, readme.code, readme.rep_name, readme.rep_id, "3"
        )
        deregistered = start("shop-3", "张三")
        answers = [(v.status, v.reason_code) for v in (done, misspelt, deregistered)]
        assert answers == [
            (VERIFIED, ""),
            (REJECTED, "LEGAL_REP_NAME_MISMATCH"),
            (REJECTED, "ORG_NOT_ACTIVE"),
        ]
        with server.client("auditor") as auditor:
            steps = {
                found.event.verification_id: found.event.attributes.get("vendor_code", "")
                for found in auditor.audit.QueryEvents(
                    audit_pb2.QueryEventsRequest(event_types=["verification.step"], limit=1000)
                )
                if found.event.steps and found.event.steps[0].verifier == "org_registry"
            }
        assert [steps[v.verification_id] for v in (done, misspelt, deregistered)] == [
            "1/1",
            "2/LegalPersonNameFlag",
            "1/3",
        ]


class TestPrivacy:
    def test_nothing_of_the_organizations_is_kept_in_the_clear(
        self, server: ServerProcess, registrar: Client, cloudauth: FakeAlibaba
    ) -> None:
        """Redis, the AOF, the JSON log with its spans and the audit log hold none of it.

        Every company of this module (name, code, legal representative's name and ID number,
        address) and the registry's own answer (its business term) are searched in the clear and
        as SHA-256 / MD5 hex, after verified, rejected and refused starts.
        """
        four = company(cloudauth)
        assert start_org(registrar, four, "priv-4").status == VERIFIED
        with server.client("auditor") as auditor:
            audit = [
                str(answer).encode()
                for answer in auditor.audit.QueryEvents(audit_pb2.QueryEventsRequest(limit=1000))
            ]
        assert len(audit) > 5
        haystack = [*audit, *everything_stored(embedded_redis(server))]
        server.stop()  # flushes the spans still batched into the log
        haystack.append(server.log_text().encode())
        haystack.extend(
            path.read_bytes() for path in (server.data_dir / "redis").glob("*.aof*") if path.is_file()
        )
        blob = b"\n".join(haystack)
        assert b"trace_id" in blob  # the spans were printed
        needles = {needle for org in COMPANIES for needle in org.needles()} | {b"2018-09-25/9999-09-09"}
        leaks = sorted(needle.decode() for needle in needles if needle in blob)
        assert leaks == []
        assert len(COMPANIES) > 10
