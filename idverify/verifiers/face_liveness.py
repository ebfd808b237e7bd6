# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``face_liveness`` verifier (biometric): a vendor-run liveness and face comparison.

The step starts the vendor's flow for the claimed identity (FaceID's DetectAuth, Alibaba's
InitFaceVerify) and hands the caller the vendor's page and token as the challenge; the user's
face goes from their device to the vendor only. When the caller submits (an empty code), the
step fetches the verdict by token (GetDetectInfoEnhanced, DescribeFaceVerify). No image or
template ever passes through idverify, and none of what the vendor returns is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from idverify.callbacks.links import EXTRAS_KEY as CALLBACK_LINKS
from idverify.callbacks.links import CallbackLinks
from idverify.domain.errors import ConfigError
from idverify.vendors.api import Check, Claim, LivenessRequest
from idverify.vendors.steps import VendorStep
from idverify.vendors.verdicts import VendorUnavailable, Verdict, VerdictKind
from idverify.verifiers.base import Challenge, Outcome, StepResult

if TYPE_CHECKING:
    from collections.abc import Mapping

    from idverify.verifiers.base import StepContext, VerifierDeps

__all__ = ["FaceLivenessVerifier"]

# FaceID's BizToken lives 2 hours and Alibaba's CertifyUrl 30 minutes; the default fits both.
_TTL_BOUNDS: Final = (60, 7200)
_DEFAULT_TTL: Final = 1200
_MAX_RETURN_URL: Final = 1024
_MAX_META_INFO: Final = 8192


class FaceLivenessVerifier(VendorStep):
    """Vendor-run liveness: options ``vendor`` and ``ttl_seconds`` (60-7200, default 1200).

    Methods using it are biometric: they need the ``biometric`` consent, and a non-biometric
    method must exist for every subject kind (checked at start-up).

    Raises:
        ConfigError: ``vendor`` is missing or not configured, or an option is invalid.

    """

    biometric: bool = True

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        super().__init__(
            "face_liveness",
            options,
            deps,
            check=Check.LIVENESS,
            required_fields=frozenset({"name", "document_type", "document_number"}),
            known_options=frozenset({"ttl_seconds"}),
        )
        ttl = options.get("ttl_seconds", _DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not _TTL_BOUNDS[0] <= ttl <= _TTL_BOUNDS[1]:
            raise ConfigError(
                f"verifiers.face_liveness.ttl_seconds: an integer from {_TTL_BOUNDS[0]} to {_TTL_BOUNDS[1]}"
            )
        self.ttl_seconds = ttl
        links = deps.extras.get(CALLBACK_LINKS)
        self._links = links if isinstance(links, CallbackLinks) else None

    async def check(self, context: StepContext) -> StepResult:
        """Start the vendor's flow for the claimed identity.

        Args:
            context: the verification's subject, id, and the caller's return URL and SDK meta info.

        Returns:
            CHALLENGE carrying the vendor's page and token (one attempt); FAIL when the vendor
            refuses this identity (``DEVICE_UNSUPPORTED``, ``INVALID_INPUT`` ...), the document
            type is not supported, or the return URL is not an https URL of at most 1,024
            characters (``INVALID_RETURN_URL``); UNAVAILABLE with a ``VENDOR_*`` reason.

        """
        refused = _client_fields_refused(context)
        if refused is not None:
            return refused
        claim = self.claim(context)
        if not isinstance(claim, Claim):
            return claim
        request = self._request(context)
        try:
            started = await self.vendor.start_liveness(claim, request)
        except VendorUnavailable as exc:
            return StepResult.unavailable(exc.reason, exc.vendor_code)
        if isinstance(started, Verdict):
            if started.kind is VerdictKind.PENDING:
                return StepResult.unavailable("VENDOR_ERROR", started.vendor_code)
            return self.settle(started)
        challenge = Challenge(
            expected_digest=b"",
            salt=b"",
            masked_destination="",
            ttl_seconds=self.ttl_seconds,
            # The vendor's page allows its own retries; its verdict is final here.
            max_attempts=1,
            url=started.url,
            token=started.token,
        )
        return StepResult(Outcome.CHALLENGE, challenge=challenge)

    def _request(self, context: StepContext) -> LivenessRequest:
        """The flow's request; with a callback address when callbacks are on and the vendor pushes."""
        links, kind = self._links, getattr(self.vendor, "callback_kind", "")
        if links is None or not kind:
            return LivenessRequest(context.verification_id, context.return_url, context.meta_info)
        return LivenessRequest(
            context.verification_id,
            context.return_url,
            context.meta_info,
            callback_url=links.url(kind, context.tenant, context.verification_id),
            callback_token=links.token(context.tenant, context.verification_id),
        )

    async def judge(self, tenant: str, verification_id: str, token: str) -> StepResult:
        """Fetch the flow's verdict by token.

        Args:
            tenant: the verification's tenant (unused: the token is the vendor's key).
            verification_id: the verification, which the vendor's flow must carry.
            token: the vendor token :meth:`check` returned.

        Returns:
            PASS; FAIL with ``LIVENESS_FAILED``, ``FACE_MISMATCH``, ``AUTHORITY_MISMATCH``,
            ``NO_RECORD``, ``CHALLENGE_EXPIRED`` or ``CHALLENGE_INVALID``; CHALLENGE while the
            user is not done; UNAVAILABLE with a ``VENDOR_*`` reason.

        """
        del tenant
        if not token:
            return StepResult.failed("CHALLENGE_INVALID")
        return await self.ask(lambda: self.vendor.liveness_result(token, verification_id))


def _client_fields_refused(context: StepContext) -> StepResult | None:
    """FAIL for client fields no vendor would take (RedirectUrl: an https URL, 1,024 characters)."""
    url = context.return_url
    if len(url) > _MAX_RETURN_URL or (url and not url.startswith("https://")):
        return StepResult.failed("INVALID_RETURN_URL")
    if len(context.meta_info) > _MAX_META_INFO:
        return StepResult.failed("INVALID_INPUT")
    return None
