"""Which birth date a verification takes, and the tenant policy for declared ones."""

from __future__ import annotations

from datetime import date

import pytest

from idverify.config import load_settings
from idverify.domain.birth_dates import (
    AgeSource,
    BirthDateMismatch,
    DeclaredBirthDates,
    choose,
    guardian_refusal,
)
from idverify.domain.errors import ConfigError

BORN = date(2001, 5, 6)
OTHER = date(2001, 5, 7)
TODAY = date(2030, 1, 1)


class TestChoose:
    def test_the_document_comes_first(self) -> None:
        """An authority that agrees changes nothing: the source stays the document."""
        assert choose(document=BORN, authorities=[BORN], declared=BORN) == (BORN, AgeSource.DOCUMENT)

    def test_an_authority_comes_before_a_declaration(self) -> None:
        """Without a document date, an authority's date is taken over nothing declared."""
        assert choose(document=None, authorities=[BORN], declared=None) == (BORN, AgeSource.AUTHORITY)

    def test_a_declaration_counts_when_nothing_else_says(self) -> None:
        """Declared alone: DECLARED; nothing at all: NONE."""
        assert choose(document=None, declared=BORN) == (BORN, AgeSource.DECLARED)
        assert choose(document=None, declared=None) == (None, AgeSource.NONE)

    @pytest.mark.parametrize(
        ("document", "authorities", "declared"),
        [(BORN, [OTHER], None), (None, [OTHER], BORN), (None, [BORN, OTHER], None)],
    )
    def test_contradictions_are_refused(
        self, document: date | None, authorities: list[date], declared: date | None
    ) -> None:
        """An authority against the document, the declaration or another authority."""
        with pytest.raises(BirthDateMismatch):
            choose(document=document, authorities=authorities, declared=declared)


class TestGuardianRefusal:
    def test_an_adult_today_qualifies_whatever_the_band_of_the_binding_day(self) -> None:
        """18 on the day of the consent is enough; 17 is not."""
        eighteen = date(2012, 1, 1)
        refusal = guardian_refusal
        accept = DeclaredBirthDates.ACCEPT
        assert refusal(eighteen, AgeSource.DOCUMENT, legacy_adult=False, policy=accept, today=TODAY) == ""
        assert (
            refusal(eighteen, AgeSource.DOCUMENT, legacy_adult=False, policy=accept, today=date(2029, 12, 31))
            == "GUARDIAN_NOT_ADULT"
        )

    def test_legacy_accounts_keep_their_stored_band(self) -> None:
        """A legacy account qualifies only if its stored band is adult."""
        accept = DeclaredBirthDates.ACCEPT
        assert guardian_refusal(None, AgeSource.LEGACY, legacy_adult=True, policy=accept, today=TODAY) == ""
        assert (
            guardian_refusal(None, AgeSource.LEGACY, legacy_adult=False, policy=accept, today=TODAY)
            == "GUARDIAN_NOT_ADULT"
        )

    def test_the_policy_decides_on_declared_adults(self) -> None:
        """not_for_guardians refuses a declared adult; accept takes it; unknown ages never qualify."""
        strict, accept = DeclaredBirthDates.NOT_FOR_GUARDIANS, DeclaredBirthDates.ACCEPT
        assert (
            guardian_refusal(BORN, AgeSource.DECLARED, legacy_adult=False, policy=strict, today=TODAY)
            == "GUARDIAN_AGE_DECLARED"
        )
        assert (
            guardian_refusal(BORN, AgeSource.DECLARED, legacy_adult=False, policy=accept, today=TODAY) == ""
        )
        assert (
            guardian_refusal(None, AgeSource.NONE, legacy_adult=False, policy=accept, today=TODAY)
            == "GUARDIAN_NOT_ADULT"
        )


class TestTenantPolicy:
    def test_default_and_configured(self) -> None:
        """The policy is accept unless the tenant's table says otherwise."""
        settings = load_settings(
            None, environ={}, overrides={"tenants": {"acme": {"declared_birth_date": "not_for_guardians"}}}
        )
        assert settings.methods_for("default").declared_birth_date is DeclaredBirthDates.ACCEPT
        assert settings.methods_for("acme").declared_birth_date is DeclaredBirthDates.NOT_FOR_GUARDIANS

    def test_an_unknown_policy_is_refused_naming_the_tenant(self) -> None:
        """A typo is a ConfigError at start, not a silent default."""
        with pytest.raises(ConfigError, match=r"tenants\.acme\.declared_birth_date"):
            load_settings(None, environ={}, overrides={"tenants": {"acme": {"declared_birth_date": "sure"}}})
