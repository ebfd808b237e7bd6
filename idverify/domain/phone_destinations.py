# Copyright 2026 The idverify Authors
# SPDX-License-Identifier: Apache-2.0
"""Where a tenant may send codes: mainland mobiles by default, other countries only when allowed.

Premium-rate and little-used country codes are where SMS pumping pays, so a code goes abroad
only to the country calling codes a tenant was configured with (``[sms_destinations]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from idverify.domain.errors import FailedPrecondition
from idverify.domain.normalize import PHONE_FIELD

# normalize_phone lets only mobiles through under +86, so the prefix is the whole check.
_MAINLAND_MOBILE_E164: Final = re.compile(r"\+861[3-9]\d{9}")


def check_phone_destination(phone: str, allowed_calling_codes: Iterable[str]) -> None:
    """Refuses a phone the tenant may not send codes to.

    Country calling codes are prefix-free (ITU-T E.164), so a number belongs to a listed code
    exactly when its digits start with it.

    Args:
        phone: a number in E.164 form, as ``normalize_phone`` returns it.
        allowed_calling_codes: the tenant's calling codes besides mainland mobiles (``"852"``).

    Raises:
        FailedPrecondition: reason ``PHONE_DESTINATION_NOT_ALLOWED``, field ``subject.phone_number``.
    """
    if _MAINLAND_MOBILE_E164.fullmatch(phone):
        return
    digits = phone.removeprefix("+")
    if any(code and digits.startswith(code) for code in allowed_calling_codes):
        return
    raise FailedPrecondition(
        "codes are not sent to this country for this tenant",
        reason="PHONE_DESTINATION_NOT_ALLOWED",
        field=PHONE_FIELD,
    )


__all__ = ["check_phone_destination"]
