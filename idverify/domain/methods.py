"""Verification methods and the policy rules over them (pure: no verifier is loaded here).

A method is a named, ordered list of verifier steps with an assurance level. Whether a method
is biometric depends on its steps, which only the verifier registry knows, so the policy check
takes that fact as a mapping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idverify.domain.birth_dates import DeclaredBirthDates
from idverify.domain.display_names import DisplayNamePolicy
from idverify.domain.errors import ConfigError, InvalidArgument
from idverify.domain.subjects import AssuranceLevel, SubjectKind

_METHOD_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_KNOWN_FIELDS = frozenset(
    {
        "name",
        "document_type",
        "document_number",
        "phone_number",
        "bank_card_number",
        "legal_representative_name",
        "legal_representative_document_type",
        "legal_representative_document_number",
        "registered_address",
    }
)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A configured method.

    Attributes:
        id: stable identifier used by callers.
        display_name: what a signup page may show.
        assurance: confidence level.
        subject_kinds: the kinds of subject the method serves.
        steps: verifier names, in order.
    """

    id: str
    display_name: str
    assurance: AssuranceLevel
    subject_kinds: frozenset[SubjectKind]
    steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TenantMethods:
    """The methods one tenant offers, in configuration order."""

    tenant: str
    methods: tuple[MethodSpec, ...]
    # A method at or above this level establishes a document's name claim (README "Identity
    # claims"); below it, a verification binds at its own level and establishes nothing.
    claim_assurance: AssuranceLevel = AssuranceLevel.SUBSTANTIAL
    # What a birth date the person declares may unlock (README "Age").
    declared_birth_date: DeclaredBirthDates = DeclaredBirthDates.ACCEPT
    # Reserved names and the platform's brands (README "Display names").
    display_names: DisplayNamePolicy = field(default_factory=DisplayNamePolicy)

    def get(self, method_id: str) -> MethodSpec:
        """The method with this id.

        Raises:
            InvalidArgument: when the tenant has no such method.
        """
        for method in self.methods:
            if method.id == method_id:
                return method
        raise InvalidArgument("unknown method id", reason="UNKNOWN_METHOD", field="method_id")

    def for_kind(self, kind: SubjectKind) -> list[MethodSpec]:
        """Methods that serve a subject kind."""
        return [m for m in self.methods if kind in m.subject_kinds]


CHECKSUM_STEPS = frozenset({"document"})
"""Steps that judge only a document's form: a method of nothing else proves no name."""


def establishes_claim(method: MethodSpec, tenant: TenantMethods) -> bool:
    """True when a verification by ``method`` establishes its document's name claim.

    A method of checksum steps alone (``org_document``) never does, whatever its rating and the
    tenant's ``claim_assurance``: a check character says nothing about whose code it is.
    """
    if set(method.steps) <= CHECKSUM_STEPS:
        return False
    return method.assurance.at_least(tenant.claim_assurance)


def parse_claim_assurance(tenant: str, value: Any) -> AssuranceLevel:
    """Parses ``[tenants.<tenant>] claim_assurance``.

    Raises:
        ConfigError: naming the tenant when the value is not a level.
    """
    try:
        return AssuranceLevel(value)
    except ValueError:
        raise ConfigError(
            f"tenants.{tenant}.claim_assurance: expected one of low, substantial, high"
        ) from None


def parse_methods(tenant: str, table: Mapping[str, Any]) -> TenantMethods:
    """Parses a ``[tenants.<tenant>.methods]`` TOML table.

    Raises:
        ConfigError: naming the tenant, method and key at fault.
    """
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"tenants.{tenant}.methods: expected at least one method")
    methods = []
    for method_id, spec in table.items():
        where = f"tenants.{tenant}.methods.{method_id}"
        if not _METHOD_ID.match(method_id):
            raise ConfigError(f"{where}: ids are lower-case letters, digits and _ (max 40)")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(spec) - {"display_name", "assurance", "subject_kinds", "steps"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
        try:
            assurance = AssuranceLevel(spec.get("assurance", "low"))
            kinds = frozenset(SubjectKind(k) for k in spec.get("subject_kinds", ["person"]))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        steps = spec.get("steps")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise ConfigError(f"{where}.steps: expected a non-empty list of verifier names")
        if not kinds:
            raise ConfigError(f"{where}.subject_kinds: expected at least one kind")
        methods.append(
            MethodSpec(
                id=method_id,
                display_name=str(spec.get("display_name", method_id)),
                assurance=assurance,
                subject_kinds=kinds,
                steps=tuple(steps),
            )
        )
    return TenantMethods(tenant=tenant, methods=tuple(methods))


def check_non_biometric_coverage(tenant: TenantMethods, biometric_steps: Iterable[str]) -> None:
    """Refuses a method table where a served subject kind has only biometric methods.

    Biometrics may never be the only way in (DESIGN 4), so this runs at start-up.

    Raises:
        ConfigError: naming the tenant and the subject kind left without an alternative.
    """
    biometric = frozenset(biometric_steps)
    served = {kind for m in tenant.methods for kind in m.subject_kinds}
    for kind in sorted(served, key=lambda k: k.value):
        if all(is_biometric(m, biometric) for m in tenant.for_kind(kind)):
            raise ConfigError(
                f"tenants.{tenant.tenant}: subject kind {kind.value!r} has no non-biometric method; "
                'configure one (e.g. steps = ["document", "sms_otp"])'
            )


def is_biometric(method: MethodSpec, biometric_steps: frozenset[str]) -> bool:
    """True when any step of the method is biometric."""
    return any(step in biometric_steps for step in method.steps)


def required_fields(method: MethodSpec, fields_of_step: Mapping[str, frozenset[str]]) -> list[str]:
    """The union of the steps' required subject fields, in a stable order."""
    needed: set[str] = set()
    for step in method.steps:
        needed |= fields_of_step.get(step, frozenset())
    return sorted(needed & _KNOWN_FIELDS) + sorted(needed - _KNOWN_FIELDS)


def steps_reading(fields: Iterable[str], fields_of_step: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The steps that read any of ``fields`` (those needing the same consent as they do)."""
    wanted = frozenset(fields)
    return frozenset(step for step, read in fields_of_step.items() if read & wanted)


def fallback_methods(
    tenant: TenantMethods,
    current: MethodSpec,
    kind: SubjectKind,
    biometric_steps: frozenset[str],
    unavailable_steps: frozenset[str] = frozenset(),
) -> list[str]:
    """Other non-biometric methods for the same subject kind, offered when one fails.

    ``unavailable_steps`` names steps that cannot run now (every verifier of a vendor that is
    down, or the steps reading a card when financial consent is missing): a method that needs
    one of them would fail the same way, so it is not offered.
    """
    return [
        m.id
        for m in tenant.for_kind(kind)
        if m.id != current.id
        and not is_biometric(m, biometric_steps)
        and not unavailable_steps.intersection(m.steps)
    ]
