"""Consent rules: one purpose per grant, only the purposes a method needs, the biometric cool-down."""

from __future__ import annotations

import pytest

from idverify.domain import consent as rules
from idverify.domain.consent import ConsentState
from idverify.domain.errors import ConsentRequired, FailedPrecondition, InvalidArgument

DAY = 86_400_000
COOLDOWN = rules.cooldown_ms(30)
NOW = 1_800_000_000_000


class TestPurpose:
    @pytest.mark.parametrize(
        "raw", ["identity,phone", "identity phone", "biometric+identity", "phone;guardian"]
    )
    def test_a_bundled_grant_is_refused(self, raw: str) -> None:
        """Several purposes in one grant are refused: each needs its own agreement."""
        with pytest.raises(InvalidArgument) as refused:
            rules.check_purpose(raw)
        assert refused.value.reason == "BUNDLED_CONSENT"

    @pytest.mark.parametrize("raw", ["", "everything", "identity,marketing", "IDENTITY"])
    def test_an_unknown_purpose_is_refused(self, raw: str) -> None:
        """Only the five purposes exist."""
        with pytest.raises(InvalidArgument) as refused:
            rules.check_purpose(raw)
        assert refused.value.reason == "UNKNOWN_PURPOSE"

    @pytest.mark.parametrize(
        "raw",
        [
            "v1",
            "x" * 129,
            "110101199003074514",  # free text would reach the permanent audit log
            "sha256:" + "a" * 63,
            "sha256:" + "a" * 65,
            "sha256:" + "A" * 64,
            "SHA256:" + "a" * 64,
            "sha256:" + "a" * 63 + "\n",
        ],
    )
    def test_a_text_version_is_a_digest(self, raw: str) -> None:
        """The version of the text shown is sha256: and 64 lower-case hex digits, nothing else."""
        with pytest.raises(InvalidArgument) as refused:
            rules.check_text_version(raw)
        assert refused.value.reason == "BAD_TEXT_VERSION"

    def test_a_grant_without_a_text_version_is_refused(self) -> None:
        """No version at all is its own reason, naming the field it was missing from."""
        with pytest.raises(InvalidArgument) as refused:
            rules.check_text_version("")
        assert (refused.value.reason, refused.value.field) == ("TEXT_VERSION_REQUIRED", "text_version")

    def test_a_text_versions_digest_is_accepted(self) -> None:
        """The digest of the text shown, as text_version_of makes it, is a version."""
        version = rules.text_version_of("我们收集您的身份信息用于实名认证。")
        assert rules.check_text_version(version) == version
        assert version.startswith("sha256:")
        assert len(version) == 7 + 64


class TestNeededPurposes:
    def test_a_method_asks_only_for_what_it_uses(self) -> None:
        """Identity always; phone only with a phone step; biometric only with a biometric step."""
        document = {"name", "document_type", "document_number"}
        assert rules.needed_purposes(document, biometric=False) == {"identity"}
        assert rules.needed_purposes(document | {"phone_number"}, biometric=False) == {"identity", "phone"}
        assert rules.needed_purposes(document, biometric=True) == {"identity", "biometric"}

    def test_a_step_reading_a_card_number_needs_financial_consent(self) -> None:
        """bank_card_4factor's fields (a card and a phone) need financial consent beside the others."""
        bank_card = {"name", "document_type", "document_number", "phone_number", "bank_card_number"}
        assert rules.needed_purposes(bank_card, biometric=False) == {"identity", "phone", "financial"}
        assert rules.needed_purposes({"bank_card_number"}, biometric=True) == {
            "identity",
            "biometric",
            "financial",
        }

    def test_financial_is_a_purpose_of_its_own(self) -> None:
        """Financial consent is granted on its own; bundled with another purpose it is refused."""
        assert rules.check_purpose("financial") == "financial"
        for bundle in ("identity,financial", "financial phone", "biometric+financial"):
            with pytest.raises(InvalidArgument) as refused:
                rules.check_purpose(bundle)
            assert refused.value.reason == "BUNDLED_CONSENT"
        assert rules.states_from_fields({"financial:g": "10", "financial:v": "sha256:f"}) == {
            "financial": ConsentState("financial", "sha256:f", 10, 0)
        }


IDENTITY_TEXT = rules.text_version_of("identity text")
CARD_TEXT = rules.text_version_of("financial text")


class TestRequestConsents:
    def test_each_purpose_comes_with_its_text_version(self) -> None:
        """Consents given with a start are grants: each with the version of the text shown."""
        given = rules.check_request_consents(
            ["identity", "financial"], {"identity": IDENTITY_TEXT, "financial": CARD_TEXT}
        )
        assert given == {"identity": IDENTITY_TEXT, "financial": CARD_TEXT}
        assert rules.check_request_consents([], {}) == {}

    @pytest.mark.parametrize("purpose", ["identity", "phone", "biometric", "financial", "guardian"])
    def test_a_purpose_without_its_version_is_refused(self, purpose: str) -> None:
        """Every purpose, not only biometric, needs its version; the error names the purpose."""
        others = {"identity": IDENTITY_TEXT} if purpose != "identity" else {}
        with pytest.raises(InvalidArgument) as refused:
            rules.check_request_consents([*others, purpose], others)
        assert refused.value.reason == "TEXT_VERSION_REQUIRED"
        assert refused.value.field == f"consent_text_versions[{purpose}]"

    def test_a_malformed_version_names_its_purpose(self) -> None:
        """Free text is no version, whichever purpose it is given for."""
        with pytest.raises(InvalidArgument) as refused:
            rules.check_request_consents(
                ["identity", "financial"], {"identity": IDENTITY_TEXT, "financial": "v1"}
            )
        assert (refused.value.reason, refused.value.field) == (
            "BAD_TEXT_VERSION",
            "consent_text_versions[financial]",
        )

    def test_a_bundled_or_unknown_purpose_is_refused(self) -> None:
        """One entry, one purpose, as in GrantConsent; a version for no consent is refused too."""
        with pytest.raises(InvalidArgument) as bundled:
            rules.check_request_consents(["identity,financial"], {})
        assert (bundled.value.reason, bundled.value.field) == ("BUNDLED_CONSENT", "consents[0]")
        with pytest.raises(InvalidArgument) as unknown:
            rules.check_request_consents(["identity", "marketing"], {"identity": IDENTITY_TEXT})
        assert (unknown.value.reason, unknown.value.field) == ("UNKNOWN_PURPOSE", "consents[1]")
        with pytest.raises(InvalidArgument) as stray:
            rules.check_request_consents(["identity"], {"identity": IDENTITY_TEXT, "financial": CARD_TEXT})
        assert (stray.value.reason, stray.value.field) == ("UNKNOWN_PURPOSE", "consent_text_versions")


class TestStartConsents:
    def check(self, needed: set[str], given: dict[str, str], stored: dict[str, ConsentState]) -> None:
        rules.check_start_consents(
            frozenset(needed), given, stored, now_ms=NOW, biometric_cooldown_ms=COOLDOWN
        )

    def test_consents_given_now_or_on_record_both_count(self) -> None:
        """A purpose is covered by the request or by a standing grant."""
        self.check({"identity", "phone"}, {"identity": ""}, {"phone": ConsentState("phone", "v1", NOW - DAY)})

    def test_a_missing_purpose_is_named(self) -> None:
        """Missing purposes are listed in the error."""
        with pytest.raises(ConsentRequired, match="phone"):
            self.check({"identity", "phone"}, {"identity": ""}, {})

    def test_a_withdrawn_grant_does_not_count(self) -> None:
        """A grant withdrawn since no longer covers its purpose."""
        withdrawn = ConsentState("phone", "v1", NOW - 2 * DAY, NOW - DAY)
        with pytest.raises(ConsentRequired):
            self.check({"identity", "phone"}, {"identity": ""}, {"phone": withdrawn})

    def test_a_missing_financial_consent_refuses_a_card_method(self) -> None:
        """A card method needs financial consent, given now or on record, like any needed purpose."""
        needed = {"identity", "phone", "financial"}
        given = {"identity": IDENTITY_TEXT, "phone": IDENTITY_TEXT}
        with pytest.raises(ConsentRequired, match="financial") as refused:
            self.check(needed, given, {})
        assert (refused.value.reason, refused.value.field) == ("CONSENT_REQUIRED", "consents")
        self.check(needed, {**given, "financial": CARD_TEXT}, {})
        self.check(needed, given, {"financial": ConsentState("financial", CARD_TEXT, NOW - DAY)})
        withdrawn = ConsentState("financial", CARD_TEXT, NOW - 2 * DAY, NOW - DAY)
        with pytest.raises(ConsentRequired):
            self.check(needed, given, {"financial": withdrawn})

    def test_a_withdrawn_financial_consent_has_no_cool_down(self) -> None:
        """Only biometrics wait after a refusal: financial consent may be asked again at once."""
        assert ConsentState("financial", "", 0, NOW - DAY).cooldown_until_ms(COOLDOWN) == 0

    def test_biometric_is_not_asked_again_during_the_cool_down(self) -> None:
        """After a refusal, biometrics may not be asked for (nor used) for the cool-down period."""
        refused = {"biometric": ConsentState("biometric", "", 0, NOW - DAY)}
        with pytest.raises(FailedPrecondition) as blocked:
            self.check({"identity", "biometric"}, {"identity": "", "biometric": "v2"}, refused)
        assert blocked.value.reason == "BIOMETRIC_COOLDOWN"
        self.check({"identity"}, {"identity": ""}, refused)

    def test_the_cool_down_ends(self) -> None:
        """Once the cool-down is over, biometric consent may be asked for again."""
        refused = {"biometric": ConsentState("biometric", "", 0, NOW - COOLDOWN - 1)}
        self.check({"identity", "biometric"}, {"identity": "", "biometric": "v2"}, refused)


class TestConsentState:
    def test_granted_withdrawn_and_refused(self) -> None:
        """A grant stands until withdrawn; a withdrawal without a grant is a refusal."""
        assert ConsentState("phone", "v1", 5).granted
        assert not ConsentState("phone", "v1", 5, 6).granted
        assert ConsentState("biometric", "", 0, 6).refused
        assert ConsentState("biometric", "", 0, 6).cooldown_until_ms(COOLDOWN) == 6 + COOLDOWN
        assert ConsentState("phone", "", 0, 6).cooldown_until_ms(COOLDOWN) == 0

    def test_states_from_the_stored_fields(self) -> None:
        """The stored hash reads back as one state per purpose on record."""
        states = rules.states_from_fields(
            {"identity:g": "10", "identity:v": "sha256:a", "biometric:w": "12", "rev": "3"}
        )
        assert states == {
            "identity": ConsentState("identity", "sha256:a", 10, 0),
            "biometric": ConsentState("biometric", "", 0, 12),
        }
