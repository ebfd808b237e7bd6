# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``authority_http`` verifier: name + ID number through an operator's own HTTP gateway.

For operators whose provider is neither Tencent Cloud nor Alibaba Cloud: point it at a gateway
that speaks the signed JSON protocol of :mod:`idverify.vendors.gateway` and it works without
code. (The same gateway can back the other vendor verifiers as a ``[vendors.<name>]`` table
with ``kind = "http"``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.vendors.api import Check
from idverify.vendors.gateway import HttpGateway
from idverify.vendors.registry import VendorRegistry
from idverify.vendors.steps import ClaimStep
from idverify.verifiers.authority import AuthorityVerifier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import VerifierDeps

__all__ = ["AuthorityHttpVerifier"]


class AuthorityHttpVerifier(AuthorityVerifier):
    """Name + ID number against an HTTP gateway configured in the verifier's own options.

    Options: those of :class:`~idverify.vendors.gateway.HttpGateway` (``url``, ``secret_env``
    or ``secret_file``, ``documents``, timeouts, QPS, breaker ...).

    Raises:
        ConfigError: an option is missing, unknown or invalid, or the secret cannot be read.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        gateway = HttpGateway("authority_http", options, where="verifiers.authority_http")
        # A one-vendor registry of its own: the lease closes the gateway's pool at shutdown.
        registry = VendorRegistry({"authority_http": {}}, build=lambda _name, _options: gateway)
        ClaimStep.__init__(
            self, "authority_http", {}, deps, check=Check.NAME_ID, lease=registry.acquire("authority_http")
        )
