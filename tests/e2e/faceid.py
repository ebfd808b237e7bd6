"""A real server whose vendor is the local fake FaceID (:class:`idverify.vendors.fakes.FakeTencent`).

The vendor tests share this set-up: the ``[vendors.tencent]`` table pointing at the fake, the
secrets passed by environment, and people the fake authority knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from idverify.testing import ServerProcess
from idverify.vendors.fakes import FakeTencent, Person

from .conftest import Identity, person

VENDOR = """
[vendors.tencent]
endpoint = "{url}"
secret_id_env = "E2E_FACEID_SECRET_ID"
secret_key_env = "E2E_FACEID_SECRET_KEY"
liveness_rule_id = "1"
timeout_seconds = 2
connect_timeout_seconds = 1
backoff_seconds = 0
max_retries = 0
breaker_failures = 50
"""


@contextmanager
def faceid_server(directory: Path, faceid: FakeTencent, config: str) -> Iterator[ServerProcess]:
    """``idverify serve`` with the fake as its Tencent vendor, and ``config`` (verifiers, methods)."""
    env = {"E2E_FACEID_SECRET_ID": faceid.key_id, "E2E_FACEID_SECRET_KEY": faceid.secret}
    with ServerProcess(directory, config=VENDOR.format(url=faceid.url) + config, env=env) as server:
        yield server


def known(faceid: FakeTencent) -> Identity:
    """A fresh test person the fake authority knows under their true name."""
    identity = person()
    faceid.people[identity.number] = Person(identity.name, identity.number, identity.phone[-11:])
    return identity
