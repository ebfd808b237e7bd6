"""Whether a tenant's log this process creates is born walked: no server of an older release reports in.

``idverify migrate legacy`` walks a tenant for what older servers left (0.1.0's identity members
without their claim tags, the ``events:acct`` map builds of main kept) and then marks the log's
head, after which the tenant's steps stop reading the map (docs/ARCHITECTURE.md, "Buckets: the
plan", §6). A tenant whose log this release creates holds nothing of theirs, unless one serves
beside it: so a server that finds none reporting in when it starts has the logs it creates born
with the mark (``store.scripts.Scripts``' ``new_logs_walked``, written with the log's first entry),
and their tenants never need the walk. The check is the walk's own refusal, made once a server
start (one ``SCAN`` of the keyspace for the reports), before the workers exist.

A server of an older release that starts afterwards is not seen: 0.1.0 would bind members
without their tags in a tenant born walked, as it would in one the walk marked, and both keep the
same remedy (the members get their tags on the next touch, ``migrate legacy --verify`` counts
them and a second walk writes them). A process that cannot reach Redis at its start, or finds an
older server, creates logs unmarked, as before this check, which costs a walk, never a field.
"""

from __future__ import annotations

import logging

from idverify.domain.errors import StoreUnavailable
from idverify.flows.keyring_watcher import ServerReports
from idverify.flows.schema_version import older_servers

__all__ = ["new_logs_walked"]

log = logging.getLogger("idverify.schema")


async def new_logs_walked(reports: ServerReports) -> bool:
    """True when no server of an older release reports in: the logs this process creates are born walked."""
    try:
        older = await older_servers(reports)
    except StoreUnavailable:
        log.warning("redis not reachable at start-up; new tenants' logs wait for `idverify migrate legacy`")
        return False
    if older:
        named = ", ".join(f"{server.instance} (schema {server.schema})" for server in older)
        log.info("servers of an older release report in (%s): new tenants' logs wait for the walk", named)
    return not older
