# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""The ``document`` verifier: checks the format, dates and check characters of the claimed document.

It proves only that the number is well-formed for its type, not that it belongs to the person;
methods pair it with a step that does (``authority``, ``sms_otp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idverify.domain.documents import validate_document
from idverify.domain.errors import ConfigError, InvalidArgument
from idverify.verifiers.base import StepContext, StepResult, VerifierDeps

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DocumentVerifier"]


class DocumentVerifier:
    """Re-validates the subject's document; the class itself is the entry-point factory.

    It takes no options and uses none of its dependencies.

    Raises:
        ConfigError: options were given.

    """

    def __init__(self, options: Mapping[str, Any], deps: VerifierDeps) -> None:
        del deps
        if options:
            raise ConfigError(f"document verifier takes no options; got {sorted(options)}")
        self.name: str = "document"
        self.biometric: bool = False
        self.required_fields: frozenset[str] = frozenset({"document_type", "document_number", "name"})

    async def check(self, context: StepContext) -> StepResult:
        """Validate the document of ``context.subject`` as of ``context.today``.

        The servicer has validated it once already; validating again here keeps the step's
        verdict independent of what the caller of the engine did before.

        Args:
            context: the verification's subject and date.

        Returns:
            PASS for a valid document; FAIL with the validator's reason code
            (``CHECKSUM_MISMATCH``, ``INVALID_DOCUMENT``, ...) or ``NAME_REQUIRED``;
            NOT_APPLICABLE (``NO_DOCUMENT``) when the subject claims no document.

        """
        subject = context.subject
        if subject.document_type is None or not subject.document_number.strip():
            return StepResult.not_applicable("NO_DOCUMENT")
        if not subject.name.strip():
            return StepResult.failed("NAME_REQUIRED")
        try:
            validate_document(
                subject.document_type,
                subject.document_number,
                subject.issuing_country,
                today=context.today,
            )
        except InvalidArgument as exc:
            return StepResult.failed(exc.reason)
        return StepResult.passed()
