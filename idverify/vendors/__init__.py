# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Identity vendors: request signing, a pooled HTTP link with breaker and budget, and adapters.

Adapters for Tencent Cloud FaceID (:mod:`~idverify.vendors.tencent`), Alibaba Cloud ID
Verification (:mod:`~idverify.vendors.alibaba`) and an operator's signed-JSON gateway
(:mod:`~idverify.vendors.gateway`) share one interface (:class:`IdentityVendor`), which the
vendor-backed verifiers (``authority``, ``carrier_3factor``, ``bank_card_4factor``,
``face_liveness``, ``authority_http``) use. docs/VENDORS.md explains configuration and codes.
"""

from __future__ import annotations

from idverify.vendors.api import Check, Claim, IdentityVendor, LivenessRequest, LivenessSession, ProbeReport
from idverify.vendors.circuit import CircuitBreaker, CircuitState
from idverify.vendors.credentials import Credentials
from idverify.vendors.registry import EXTRAS_KEY, VendorLease, VendorRegistry, build_vendor
from idverify.vendors.verdicts import VendorUnavailable, Verdict, VerdictKind, step_result

__all__ = [
    "EXTRAS_KEY",
    "Check",
    "CircuitBreaker",
    "CircuitState",
    "Claim",
    "Credentials",
    "IdentityVendor",
    "LivenessRequest",
    "LivenessSession",
    "ProbeReport",
    "VendorLease",
    "VendorRegistry",
    "VendorUnavailable",
    "Verdict",
    "VerdictKind",
    "build_vendor",
    "step_result",
]
