"""The give-back of a count that a counter step spent for a call another slot's step refused.

docs/ARCHITECTURE.md, "3.6 Counters in two slots", has the design. A count in two slots
(``send_budget``'s phone window and budgets, ``identity_check``'s account and principal) runs as
two steps at once on a Cluster, each checking its own limits and counting in one script, so no
counter overshoots. When one refuses, the other's count is given back by ``count_give_back.lua``
under a token of the call's own: the marker it leaves in the counters' slot makes a repeat (a
retry whose first reply was lost) give nothing back twice.

No intent is written: a crash before the give-back leaves one count spent until its window ends.
That is the safe side, since a spent count can only refuse a later call early, never let one
past a limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from idverify.domain.errors import StoreUnavailable
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts

__all__ = ["give_back"]

_log = logging.getLogger(__name__)

GIVE_BACK_TRIES = 2
"""A give-back whose reply was lost is sent once more, under the same token."""


async def give_back(scripts: Scripts, keys: TenantKeys, counted: Sequence[tuple[str, int]]) -> None:
    """Gives one count back to each counter of ``counted`` (one slot's), at most once for this call.

    ``counted``: each counter and the end of the window its step counted in, as the step
    answered it (a counter in a later window by then keeps its counts). A give-back Redis does not
    answer leaves the counts spent, on the safe side: the call was refused either way, so its
    refusal is what the caller gets, and the failure is logged.
    """
    if not counted:
        return
    token = uuid.uuid4().hex
    marker = keys.given_back(token, beside=counted[0][0])  # in the counters' slot
    counters, ends = [key for key, _ in counted], [end for _, end in counted]
    for attempt in range(GIVE_BACK_TRIES):
        try:
            await scripts.run("count_give_back", [marker, *counters], [token, *ends])
        except StoreUnavailable:
            if attempt + 1 == GIVE_BACK_TRIES:
                _log.warning(
                    "a refused call's count could not be given back; it stays spent until its window ends"
                )
        else:
            return
