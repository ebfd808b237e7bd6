# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Fake vendors on loopback and adapters pointed at them, shared by the vendor tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from idverify.domain.subjects import DocumentType
from idverify.vendors.alibaba import AlibabaCloudauth
from idverify.vendors.api import Claim
from idverify.vendors.fakes import FakeAlibaba, FakeGateway, FakeTencent, Person
from idverify.vendors.gateway import HttpGateway
from idverify.vendors.tencent import TencentFaceId

# Test identities: valid check characters, made-up people.
ZHANG = Person("张三", "11010519491231002X", "13800000001", "6222020200112233445")
LI = Person("李四", "440106199003070011", "13900000002", "6222020200998877665")


@pytest.fixture(scope="session")
def faceid_key() -> rsa.RSAPrivateKey:
    """The key pair FaceID's console would hand out (the fake keeps the private half)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake_tencent(faceid_key: rsa.RSAPrivateKey) -> Iterator[FakeTencent]:
    with FakeTencent(people=[ZHANG, LI], private_key=faceid_key) as fake:
        yield fake


@pytest.fixture
def fake_alibaba() -> Iterator[FakeAlibaba]:
    with FakeAlibaba(people=[ZHANG, LI]) as fake:
        yield fake


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    with FakeGateway(people=[ZHANG, LI]) as fake:
        yield fake


def fast(**extra: Any) -> dict[str, Any]:
    """Transport options for tests: no backoff between retries, and room for a loaded machine.

    A fake answers on loopback in milliseconds, but a 2048-bit RSA step on a machine running other
    suites can take longer than a short timeout, and the call then fails as VENDOR_TIMEOUT: a test
    of a timeout names its own, short one instead.
    """
    return {"timeout_seconds": 10.0, "connect_timeout_seconds": 10.0, "backoff_seconds": 0.0, **extra}


@pytest.fixture
def credentials_env(monkeypatch: pytest.MonkeyPatch):
    """Puts a fake's credentials in environment variables; returns the options naming them."""

    def put(prefix: str, key_id: str, secret: str) -> dict[str, str]:
        monkeypatch.setenv(f"{prefix}_ID", key_id)
        monkeypatch.setenv(f"{prefix}_KEY", secret)
        return {"secret_id_env": f"{prefix}_ID", "secret_key_env": f"{prefix}_KEY"}

    return put


@pytest.fixture
async def built() -> AsyncIterator[list[Any]]:
    """Adapters a test built, closed at teardown (their pools hold sockets)."""
    made: list[Any] = []
    yield made
    for vendor in made:
        await vendor.aclose()


@pytest.fixture
def tencent(fake_tencent: FakeTencent, credentials_env, built: list[Any]):
    """Builds a FaceID adapter against the fake; extra options override."""

    def build(**extra: Any) -> TencentFaceId:
        options = {
            **fake_tencent.vendor_options(),
            **credentials_env("TC", fake_tencent.key_id, fake_tencent.secret),
            **fast(),
            **extra,
        }
        built.append(TencentFaceId("tencent", options))
        return built[-1]

    return build


@pytest.fixture
def alibaba(fake_alibaba: FakeAlibaba, credentials_env, built: list[Any]):
    """Builds a Cloudauth adapter against the fake."""

    def build(**extra: Any) -> AlibabaCloudauth:
        options = {
            **fake_alibaba.vendor_options(),
            **credentials_env("ALI", fake_alibaba.key_id, fake_alibaba.secret),
            **fast(),
            **extra,
        }
        built.append(AlibabaCloudauth("alibaba", options))
        return built[-1]

    return build


@pytest.fixture
def gateway(fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, built: list[Any]):
    """Builds a gateway adapter against the fake."""
    monkeypatch.setenv("GW_SECRET", fake_gateway.secret)

    def build(**extra: Any) -> HttpGateway:
        built.append(
            HttpGateway("gateway", {"url": fake_gateway.url, "secret_env": "GW_SECRET", **fast(), **extra})
        )
        return built[-1]

    return build


def claim(person: Person = ZHANG, **changes: str) -> Claim:
    """A claim of a test person, with fields changed."""
    fields = {
        "name": person.name,
        "document_number": person.id_number,
        "phone": person.phone,
        "bank_card": person.bank_card,
        **changes,
    }
    return Claim(
        fields["name"], DocumentType.CN_RIC, fields["document_number"], fields["phone"], fields["bank_card"]
    )


@pytest.fixture
def make_claim():
    """The :func:`claim` builder."""
    return claim


@pytest.fixture
def zhang() -> Person:
    return ZHANG


@pytest.fixture
def li() -> Person:
    return LI
