"""Consent rules: one purpose per grant, the purposes a method needs, the biometric cool-down.

Consent is recorded per account and purpose with the version (hash) of the text shown, which
every grant must name: a consent without its text cannot be shown later to have been informed.
A grant names exactly one purpose (bundling several into one agreement is refused), so the
sensitive ones, ``biometric`` (a face) and ``financial`` (a bank card number), are always agreed
to on their own. A method asks only for the purposes it needs, and a refused or withdrawn
biometric consent is not asked again for a cool-down period, during which biometric methods are
not offered to that account. Pure: the store keeps the state, this module decides.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from idverify.domain.errors import ConsentRequired, FailedPrecondition, InvalidArgument

IDENTITY: Final = "identity"
PHONE: Final = "phone"
BIOMETRIC: Final = "biometric"
GUARDIAN: Final = "guardian"
FINANCIAL: Final = "financial"
PURPOSES: Final = frozenset({IDENTITY, PHONE, BIOMETRIC, GUARDIAN, FINANCIAL})
"""Every purpose a consent can be given for."""
RELATIONSHIPS: Final = ("parent", "legal_guardian")
"""How a guardian stands to the minor: every guardian consent states one (it is audited)."""
CARD_FIELDS: Final = frozenset({"bank_card_number"})
"""Subject fields that are financial data: a step that reads one needs ``financial`` consent."""

TEXT_VERSION_FORMAT: Final = re.compile(r"sha256:[0-9a-f]{64}")
"""A consent text's version is the SHA-256 of the text shown, in lower-case hex after ``sha256:``.

Only a digest is accepted: the version reaches Redis and the permanent audit log, so a free-text
field there would let a caller write anything (an ID number) where erasure cannot reach.
"""
_DAY_MS: Final = 86_400_000
# Separators that turn one purpose field into a list: "identity,phone" is a bundled grant.
_BUNDLE_SEPARATORS: Final = re.compile(r"[\s,;|+&/]+")


@dataclass(frozen=True, slots=True)
class ConsentState:
    """What is recorded for one account and purpose.

    Attributes:
        purpose: one of :data:`PURPOSES`.
        text_version: the version (hash) of the consent text of the latest grant; empty only for
            a grant that 0.1.0 recorded from a StartVerification naming no version.
        granted_ms: when it was last granted (epoch ms), 0 if never.
        withdrawn_ms: when it was withdrawn or refused after that (epoch ms), 0 if not.
    """

    purpose: str
    text_version: str = ""
    granted_ms: int = 0
    withdrawn_ms: int = 0

    @property
    def granted(self) -> bool:
        """True while a grant stands (given and not withdrawn since)."""
        return self.granted_ms > 0 and self.withdrawn_ms == 0

    @property
    def refused(self) -> bool:
        """True when the purpose was refused or withdrawn (the latest act was a no)."""
        return self.withdrawn_ms > 0

    def cooldown_until_ms(self, cooldown_ms: int) -> int:
        """Until when the purpose may not be asked again (0: no cool-down).

        Only a refused or withdrawn biometric consent has a cool-down.
        """
        if self.purpose != BIOMETRIC or not self.refused:
            return 0
        return self.withdrawn_ms + cooldown_ms


def cooldown_ms(days: int) -> int:
    """A cool-down period of ``days`` days in milliseconds."""
    return days * _DAY_MS


def check_purpose(raw: str, *, field: str = "purpose") -> str:
    """The one purpose a grant or withdrawal names.

    Raises:
        InvalidArgument: ``BUNDLED_CONSENT`` when the field lists several purposes (each needs its
            own grant), ``UNKNOWN_PURPOSE`` otherwise.
    """
    if raw in PURPOSES:
        return raw
    parts = [part for part in _BUNDLE_SEPARATORS.split(raw) if part]
    if len(parts) > 1 and all(part.lower() in PURPOSES for part in parts):
        raise InvalidArgument(
            "one purpose per consent: grant each purpose on its own", reason="BUNDLED_CONSENT", field=field
        )
    raise InvalidArgument(f"one of {', '.join(sorted(PURPOSES))}", reason="UNKNOWN_PURPOSE", field=field)


def text_version_of(text: str) -> str:
    """The version of a consent text as callers send it: ``sha256:`` and the text's digest."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_text_version(raw: str, *, field: str = "text_version") -> str:
    """The version of the consent text shown: ``sha256:`` and the text's digest in lower-case hex.

    Raises:
        InvalidArgument: ``TEXT_VERSION_REQUIRED`` when there is none, ``BAD_TEXT_VERSION`` when
            it is not such a digest.
    """
    if not raw:
        raise InvalidArgument(
            "every consent names the version of the text shown (sha256: and its digest)",
            reason="TEXT_VERSION_REQUIRED",
            field=field,
        )
    if TEXT_VERSION_FORMAT.fullmatch(raw) is None:
        raise InvalidArgument(
            "the consent text's version: sha256: and 64 lower-case hex digits of the text's digest",
            reason="BAD_TEXT_VERSION",
            field=field,
        )
    return raw


def check_request_consents(consents: Iterable[str], text_versions: Mapping[str, str]) -> dict[str, str]:
    """The purposes a StartVerification consents to now, each with its text version.

    Each purpose is a grant like GrantConsent's, so each names the version of its text.

    Raises:
        InvalidArgument: an unknown or bundled purpose (``consents[<index>]``), a text version for a
            purpose not consented to (``consent_text_versions``), or a purpose whose version is
            missing or malformed (``consent_text_versions[<purpose>]``).
    """
    given = {check_purpose(purpose, field=f"consents[{index}]"): "" for index, purpose in enumerate(consents)}
    for purpose in text_versions:
        if purpose not in given:
            raise InvalidArgument(
                "a text version for a purpose not in consents",
                reason="UNKNOWN_PURPOSE",
                field="consent_text_versions",
            )
    for purpose in given:
        given[purpose] = check_text_version(
            text_versions.get(purpose, ""), field=f"consent_text_versions[{purpose}]"
        )
    return given


def needed_purposes(fields: Collection[str], *, biometric: bool) -> frozenset[str]:
    """The purposes a method needs, and no more (asking for others would bundle them).

    Args:
        fields: the subject fields the method's steps read.
        biometric: a step is biometric.
    """
    needed = {IDENTITY}
    if "phone_number" in fields:
        needed.add(PHONE)
    if biometric:
        needed.add(BIOMETRIC)
    if CARD_FIELDS.intersection(fields):
        needed.add(FINANCIAL)
    return frozenset(needed)


def check_start_consents(
    needed: frozenset[str],
    given: Mapping[str, str],
    stored: Mapping[str, ConsentState],
    *,
    now_ms: int,
    biometric_cooldown_ms: int,
) -> None:
    """Whether a verification may start with the consents given now and those on record.

    A purpose is covered by a consent given with the request (``given``, as
    :func:`check_request_consents` returns it) or by a standing grant. Biometric consent is
    refused while a refusal or withdrawal is in its cool-down: the platform must not ask again
    within that time.

    Raises:
        FailedPrecondition: ``BIOMETRIC_COOLDOWN`` while the cool-down runs and the method or the
            request involves biometrics.
        ConsentRequired: naming the purposes still missing (``CONSENT_REQUIRED``).
    """
    biometric = stored.get(BIOMETRIC, ConsentState(BIOMETRIC))
    involved = BIOMETRIC in needed or BIOMETRIC in given
    if involved and not biometric.granted and now_ms < biometric.cooldown_until_ms(biometric_cooldown_ms):
        raise FailedPrecondition(
            "biometric consent was refused or withdrawn recently; offer a non-biometric method",
            reason="BIOMETRIC_COOLDOWN",
            field="method_id",
        )
    missing = sorted(p for p in needed if p not in given and not stored.get(p, ConsentState(p)).granted)
    if missing:
        raise ConsentRequired(f"consent needed for: {', '.join(missing)}", field="consents")


def states_from_fields(fields: Mapping[str, str]) -> dict[str, ConsentState]:
    """Consent states from the stored hash (``<purpose>:v``, ``<purpose>:g``, ``<purpose>:w``)."""
    states: dict[str, ConsentState] = {}
    for purpose in sorted(PURPOSES):
        granted = _int(fields.get(f"{purpose}:g"))
        withdrawn = _int(fields.get(f"{purpose}:w"))
        if granted or withdrawn:
            states[purpose] = ConsentState(purpose, fields.get(f"{purpose}:v", ""), granted, withdrawn)
    return states


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


__all__ = [
    "BIOMETRIC",
    "CARD_FIELDS",
    "FINANCIAL",
    "GUARDIAN",
    "IDENTITY",
    "PHONE",
    "PURPOSES",
    "ConsentState",
    "check_purpose",
    "check_request_consents",
    "check_start_consents",
    "check_text_version",
    "cooldown_ms",
    "needed_purposes",
    "states_from_fields",
    "text_version_of",
]
