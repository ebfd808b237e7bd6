"""Whether a tenant's log this process creates is born walked: no server of an older release serves.

``idverify migrate legacy`` walks a tenant for what older servers left (0.1.0's identity members
without their claim tags, the ``events:acct`` map builds of main kept) and then marks the log's
head, after which the tenant's steps stop reading the map (docs/ARCHITECTURE.md, "Buckets: the
plan", §6). A tenant whose log this release creates holds nothing of theirs, unless one serves
beside it: so a server reads, when it starts, whether the store is known to have none beside it,
and the logs it creates are then born with the walk's mark (``store.scripts.Scripts``'
``new_logs_walked``, written with the log's first entry), and their tenants never need the walk.

The store knows it by a mark of its own (``SchemaStore.logs_born_walked``), recorded where the
keyspace is scanned for the keyring reports anyway: by the start that raises the schema version
or finds the store empty, when it finds no older server reporting in (``ensure_schema``), and by
``migrate legacy``, which refuses while one does. A start reads the mark with one ``GET``; it
never scans the keyspace itself, which at a billion keys would hold up every restart.

A server of an older release that starts afterwards is not seen: 0.1.0 would bind members
without their tags in a tenant born walked, as it would in one the walk marked, and both keep the
same remedy (the members get their tags on the next touch, ``migrate legacy --verify`` counts
them and a second walk writes them). A store raised beside an older server, or by a build before
the mark, has none until the walk records it; a process that cannot reach Redis at its start
creates logs unmarked, as before, which costs a walk, never a field.
"""

from __future__ import annotations

import logging

from idverify.domain.errors import StoreUnavailable
from idverify.flows.schema_version import SchemaStore

__all__ = ["new_logs_walked"]

log = logging.getLogger("idverify.schema")


async def new_logs_walked(schema: SchemaStore) -> bool:
    """True when the store records that no server of an older release serves it: new logs are born walked."""
    try:
        walked = await schema.logs_born_walked()
    except StoreUnavailable:
        log.warning("redis not reachable at start-up; new tenants' logs wait for `idverify migrate legacy`")
        return False
    if not walked:
        log.info("no born-walked mark in the store: new tenants' logs wait for `idverify migrate legacy`")
    return walked
