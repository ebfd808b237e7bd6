"""Methods and the rules over them: biometrics are never the only way in."""

from __future__ import annotations

import pytest

from idverify.domain.errors import ConfigError, InvalidArgument
from idverify.domain.methods import (
    check_non_biometric_coverage,
    fallback_methods,
    is_biometric,
    parse_methods,
    required_fields,
    steps_reading,
)
from idverify.domain.subjects import AssuranceLevel, SubjectKind

TABLE = {
    "sms": {"steps": ["document", "sms_otp"], "assurance": "substantial"},
    "face": {"steps": ["document", "face_liveness"], "assurance": "high"},
    "org": {"steps": ["document"], "subject_kinds": ["organization"]},
}


class TestParsing:
    def test_methods_keep_their_order_and_fields(self) -> None:
        """Parsed methods keep configuration order, steps and levels."""
        table = parse_methods("t", TABLE)
        assert [m.id for m in table.methods] == ["sms", "face", "org"]
        assert table.get("face").assurance is AssuranceLevel.HIGH
        assert table.get("org").subject_kinds == frozenset({SubjectKind.ORGANIZATION})

    def test_unknown_method_is_an_invalid_argument(self) -> None:
        """Asking for a method the tenant lacks names the field."""
        with pytest.raises(InvalidArgument) as error:
            parse_methods("t", TABLE).get("nope")
        assert (error.value.field, error.value.reason) == ("method_id", "UNKNOWN_METHOD")


class TestBiometricRule:
    def test_a_kind_with_only_biometric_methods_is_refused(self) -> None:
        """Start-up fails when persons could only verify biometrically."""
        table = parse_methods("t", {"face": TABLE["face"], "org": TABLE["org"]})
        with pytest.raises(ConfigError, match="person"):
            check_non_biometric_coverage(table, ["face_liveness"])

    def test_a_non_biometric_alternative_satisfies_the_rule(self) -> None:
        """With the SMS method beside it, the face method is allowed."""
        check_non_biometric_coverage(parse_methods("t", TABLE), ["face_liveness"])

    def test_fallbacks_are_never_biometric(self) -> None:
        """A failed method falls back only to non-biometric methods of the same kind."""
        table = parse_methods("t", {**TABLE, "sms2": {"steps": ["document", "sms_otp"]}})
        biometric = frozenset({"face_liveness"})
        assert fallback_methods(table, table.get("sms"), SubjectKind.PERSON, biometric) == ["sms2"]
        assert is_biometric(table.get("face"), biometric)

    def test_required_fields_are_the_union_of_the_steps(self) -> None:
        """A method needs every field any of its steps needs."""
        fields = {"document": frozenset({"name", "document_number"}), "sms_otp": frozenset({"phone_number"})}
        assert required_fields(parse_methods("t", TABLE).get("sms"), fields) == [
            "document_number",
            "name",
            "phone_number",
        ]

    def test_card_methods_are_no_fallback_when_the_card_is_what_was_refused(self) -> None:
        """The steps reading a card number are found, and methods using them are left out."""
        table = parse_methods(
            "t",
            {
                **TABLE,
                "card": {"steps": ["document", "bank_card_4factor"]},
                "card2": {"steps": ["bank_card_4factor", "sms_otp"]},
            },
        )
        fields = {
            "document": frozenset({"name", "document_number"}),
            "sms_otp": frozenset({"phone_number"}),
            "bank_card_4factor": frozenset({"name", "phone_number", "bank_card_number"}),
        }
        card_steps = steps_reading({"bank_card_number"}, fields)
        assert card_steps == {"bank_card_4factor"}
        card, person, biometric = table.get("card"), SubjectKind.PERSON, frozenset({"face_liveness"})
        assert fallback_methods(table, card, person, biometric, card_steps) == ["sms"]
        assert fallback_methods(table, card, person, biometric) == ["sms", "card2"]
