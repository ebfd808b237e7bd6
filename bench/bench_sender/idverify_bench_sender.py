"""An SMS sender that hands codes to the benchmark through a file. Never for production.

It is not part of the idverify package: ``bench/verify.py`` installs it into a throwaway
directory for the server it starts, so a production installation does not contain it at all.
Even where it is installed, it refuses to start unless ``BENCH_CODE_SENDER_ACK`` is set to
``codes-leave-the-server``, so enabling it takes two deliberate steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from idverify.domain.errors import ConfigError

ACKNOWLEDGEMENT = "codes-leave-the-server"


class BenchCodeSender:
    """Appends ``<verification id> <code>`` lines to a file the benchmark reads."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        if os.environ.get("BENCH_CODE_SENDER_ACK") != ACKNOWLEDGEMENT:
            raise ConfigError(
                "the bench SMS sender writes codes to a file; set BENCH_CODE_SENDER_ACK to enable it"
            )
        self._path = Path(str(options["path"]))
        self._file = self._path.open("a", buffering=1, encoding="ascii")

    async def send_code(self, phone_e164: str, code: str, *, tenant: str, verification_id: str) -> None:
        """Writes the code for the benchmark (never the phone)."""
        del phone_e164, tenant
        self._file.write(f"{verification_id} {code}\n")
