# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Fakes of the narrow verifier dependencies, shared by the verifier tests."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date

import pytest

from idverify.domain.subjects import DocumentType, Subject, SubjectKind
from idverify.verifiers.base import SendFailed, StepContext, VerifierDeps


class FakeKeyed:
    """HMAC under a key derived from tenant and purpose, like the keyring but with a fixed root."""

    def mac(self, tenant: str, purpose: str, data: bytes) -> bytes:
        subkey = hashlib.sha256(b"test-root\x00" + tenant.encode() + b"\x00" + purpose.encode()).digest()
        return hmac.new(subkey, data, hashlib.sha256).digest()


@dataclass
class RecordingSender:
    """Remembers every code it was asked to send; fails with SendFailed when told to."""

    fail: bool = False
    sent: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        if self.fail:
            raise SendFailed("gateway answered HTTP 503")
        self.sent.append((phone_e164, code, tenant, verification_id))

    @property
    def last_code(self) -> str:
        return self.sent[-1][1]


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def deps(sender: RecordingSender) -> VerifierDeps:
    return VerifierDeps(keyed=FakeKeyed(), sms_sender=sender)


def person(
    *,
    name: str = "张三",
    document_type: DocumentType | None = DocumentType.CN_RIC,
    document_number: str = "11010519491231002X",
    phone_number: str = "+8613800000000",
) -> Subject:
    return Subject(
        kind=SubjectKind.PERSON,
        name=name,
        document_type=document_type,
        document_number=document_number,
        phone_number=phone_number,
    )


def context_for(subject: Subject, *, tenant: str = "acme", verification_id: str = "a" * 32) -> StepContext:
    return StepContext(
        tenant=tenant,
        verification_id=verification_id,
        subject=subject,
        document=None,
        today=date(2025, 6, 1),
    )


@pytest.fixture
def make_person():
    return person


@pytest.fixture
def make_context():
    return context_for
