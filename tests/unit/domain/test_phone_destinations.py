"""Where codes may go: mainland mobiles, and the calling codes a tenant allows."""

from __future__ import annotations

import pytest

from idverify.domain.errors import FailedPrecondition
from idverify.domain.normalize import normalize_phone
from idverify.domain.phone_destinations import check_phone_destination


class TestPhoneDestinations:
    @pytest.mark.parametrize("raw", ["13800000000", "+86 139 0000 0000", "008615912345678"])
    def test_mainland_mobiles_need_no_allowance(self, raw: str) -> None:
        """A +86 mobile passes with no calling code allowed."""
        check_phone_destination(normalize_phone(raw), ())

    @pytest.mark.parametrize("phone", ["+88212345678", "+23276123456", "+85291234567", "+14155550100"])
    def test_other_countries_are_refused_by_default(self, phone: str) -> None:
        """Anything else is PHONE_DESTINATION_NOT_ALLOWED on the phone field."""
        with pytest.raises(FailedPrecondition) as refused:
            check_phone_destination(phone, ())
        assert (refused.value.reason, refused.value.field) == (
            "PHONE_DESTINATION_NOT_ALLOWED",
            "subject.phone_number",
        )

    def test_an_allowed_calling_code_opens_its_country_only(self) -> None:
        """852 lets +852 through, not +853 nor +85 look-alikes of other codes."""
        check_phone_destination("+85291234567", ("852",))
        check_phone_destination("+14155550100", ("852", "1"))
        for phone in ("+85361234567", "+88212345678"):
            with pytest.raises(FailedPrecondition):
                check_phone_destination(phone, ("852",))
