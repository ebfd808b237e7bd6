# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``sms_otp`` verifier: sends a one-time numeric code by SMS and judges answers by digest.

The code itself never leaves this module except through the SMS sender; the store keeps only
a keyed digest bound to the tenant and the verification, and compares answers against it.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from typing import TYPE_CHECKING, Any, Final

from idverify.domain.errors import ConfigError, InvalidArgument
from idverify.domain.normalize import normalize_phone
from idverify.privacy.masking import mask_phone
from idverify.verifiers.base import (
    Challenge,
    Outcome,
    SendFailed,
    StepContext,
    StepResult,
    VerifierDeps,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SmsOtpVerifier"]

_log = logging.getLogger(__name__)

MIN_CODE_LENGTH: Final = 4
MAX_CODE_LENGTH: Final = 10
_SALT_BYTES: Final = 16
_MAX_ANSWER_CHARS: Final = 64
_MAC_PURPOSE: Final = "otp"
# Bounds keep a typo in the config (ttl_seconds = 30000) from becoming a weak challenge.
_TTL_BOUNDS: Final = (30, 3600)
_ATTEMPT_BOUNDS: Final = (1, 20)
_OPTION_DEFAULTS: Final[Mapping[str, int]] = {"code_length": 6, "ttl_seconds": 300, "max_attempts": 5}


def _int_option(options: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = options.get(key, _OPTION_DEFAULTS[key])
    # bool is an int subclass; `code_length = true` in TOML is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"sms_otp option {key!r} must be an integer from {low} to {high}")
    return value


def _length_prefixed(*parts: bytes) -> bytes:
    # Fixed-width lengths make the encoding injective: no (salt, id, code) triple can be
    # re-split into another one with the same bytes.
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _new_code(length: int) -> str:
    """Return ``length`` decimal digits drawn uniformly (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def _normalized_answer(answer: str) -> str:
    if len(answer) > _MAX_ANSWER_CHARS:
        # No code is this long even with spaces; skip normalizing a pasted essay.
        return ""
    # NFKC turns full-width digits typed with a Chinese IME into ASCII; users also copy codes
    # with spaces ("123 456").
    return "".join(unicodedata.normalize("NFKC", answer).split())


class SmsOtpVerifier:
    """Sends a numeric code to the subject's phone and hands the store a digest to compare.

    Options (all optional): ``code_length`` (4-10, default 6), ``ttl_seconds`` (30-3600,
    default 300) and ``max_attempts`` (1-20, default 5).

    Raises:
        ConfigError: an option is unknown, not an integer, or out of bounds.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        unknown = sorted(set(options) - set(_OPTION_DEFAULTS))
        if unknown:
            raise ConfigError(f"sms_otp: unknown options {unknown}; known: {sorted(_OPTION_DEFAULTS)}")
        self.name: str = "sms_otp"
        self.biometric: bool = False
        self.required_fields: frozenset[str] = frozenset({"phone_number"})
        self.code_length = _int_option(options, "code_length", MIN_CODE_LENGTH, MAX_CODE_LENGTH)
        self.ttl_seconds = _int_option(options, "ttl_seconds", *_TTL_BOUNDS)
        self.max_attempts = _int_option(options, "max_attempts", *_ATTEMPT_BOUNDS)
        self._deps = deps

    async def check(self, context: StepContext) -> StepResult:
        """Send a fresh code to the subject's phone and return the challenge to store.

        Args:
            context: the verification's tenant, id and subject.

        Returns:
            CHALLENGE with the digest of the code and the masked phone; FAIL
            (``PHONE_REQUIRED`` or ``INVALID_PHONE``) without a usable phone; UNAVAILABLE
            (``SMS_SEND_FAILED``) when the sender fails.

        """
        if not context.subject.phone_number.strip():
            return StepResult.failed("PHONE_REQUIRED")
        try:
            phone = normalize_phone(context.subject.phone_number)
        except InvalidArgument as exc:
            # The normalizer's reasons (BAD_FORMAT, ...) are generic; a step reason names the phone.
            return StepResult.failed("PHONE_REQUIRED" if exc.reason == "EMPTY" else "INVALID_PHONE")
        code = _new_code(self.code_length)
        salt = secrets.token_bytes(_SALT_BYTES)
        expected = self._digest(context.tenant, context.verification_id, salt, code)
        try:
            await self._deps.sms_sender.send_code(
                phone, code, tenant=context.tenant, verification_id=context.verification_id
            )
        except SendFailed as exc:
            _log.warning("sms_otp: sending failed for verification %s: %s", context.verification_id, exc)
            return StepResult.unavailable("SMS_SEND_FAILED")
        challenge = Challenge(
            expected_digest=expected,
            salt=salt,
            masked_destination=mask_phone(phone),
            ttl_seconds=self.ttl_seconds,
            max_attempts=self.max_attempts,
        )
        return StepResult(Outcome.CHALLENGE, challenge=challenge)

    def digest_answer(self, tenant: str, verification_id: str, challenge_salt: bytes, answer: str) -> bytes:
        """Return the digest of a submitted answer, to compare with the challenge's.

        Never raises for junk: an answer that cannot be a code (letters, wrong length, a
        megabyte of text) gets a digest that cannot match, computed like any other, so neither
        an exception nor a shortcut tells the caller what a code looks like.

        Args:
            tenant: the verification's tenant.
            verification_id: the verification the challenge belongs to.
            challenge_salt: :attr:`Challenge.salt` of the stored challenge.
            answer: what the user typed.

        Returns:
            The keyed digest; equal to ``expected_digest`` only for the right code.

        """
        normalized = _normalized_answer(answer)
        # Codes are ASCII digits only and at most MAX_CODE_LENGTH long, so the empty string
        # stands in for anything else: it digests like a code and never equals one. Checking
        # the bound rather than the configured length keeps codes sent before a config change
        # valid.
        is_code_shaped = normalized.isascii() and normalized.isdigit() and len(normalized) <= MAX_CODE_LENGTH
        return self._digest(tenant, verification_id, challenge_salt, normalized if is_code_shaped else "")

    def _digest(self, tenant: str, verification_id: str, salt: bytes, code: str) -> bytes:
        message = _length_prefixed(
            salt, verification_id.encode("utf-8", "surrogatepass"), code.encode("ascii")
        )
        return self._deps.keyed.mac(tenant, _MAC_PURPOSE, message)
