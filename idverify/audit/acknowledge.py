"""``idverify audit acknowledge-rollback``: an operator accepts the entries a rollback lost.

Run on the server's host (it reads the data directory's heads file and the store, like
``idverify audit rotate-key``), while the server runs or not. For each tenant whose log is
behind the head it published, it first appends an ``audit.rollback_acknowledged`` entry to
that log (the published size, root and time, the lost entries, who ran it; once per lost head,
so a run that stopped part-way is simply run again), then forgets the lost head in the heads
file. Servers see the file change at their next head request, announce it in their log and sign
heads again, of the log as it is now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from idverify.audit.integrator import TreeIntegrator
from idverify.audit.log_store import AuditStore
from idverify.audit.published_heads import PublishedHeads
from idverify.audit.rollback import Rollback, RollbackGuard
from idverify.config import Settings
from idverify.security.break_glass import host_principal
from idverify.store.connection import translate_errors
from idverify.store.keys import TenantKeys
from idverify.store.scripts import Scripts, script_source

__all__ = ["Acknowledged", "acknowledge_rollbacks"]


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """One tenant's acknowledged rollback.

    Attributes:
        rollback: what was lost.
        entry: the index of the ``audit.rollback_acknowledged`` entry in the tenant's log.
        written: False when an earlier run had written that entry already.
    """

    rollback: Rollback
    entry: int
    written: bool


async def acknowledge_rollbacks(settings: Settings, tenant: str = "") -> list[Acknowledged]:
    """Audits and clears the rollback of every tenant (or of ``tenant``) whose log has one.

    Raises:
        StoreUnavailable: when Redis cannot be reached.
        HeadsFileError, OSError: when the heads file cannot be read or written.
        RuntimeError: when the embedded Redis cannot be reached or started.
    """
    from idverify.cli.lifecycle import open_store  # noqa: PLC0415 - it imports the CLI's modules

    heads = PublishedHeads(settings.data_dir, settings.audit_witness_dirs)
    done: list[Acknowledged] = []
    async with open_store(settings) as redis:
        store = AuditStore(redis, Scripts(redis))
        rollbacks = await RollbackGuard(store, TreeIntegrator(store), heads).find_all()
        script = redis.register_script(script_source("audit_rollback"))
        request = json.dumps(
            {"principal": host_principal("audit-acknowledge-rollback"), "request_id": "", "trace_id": ""}
        )
        for rollback in rollbacks:
            if tenant and rollback.tenant != tenant:
                continue
            head = rollback.head
            async with translate_errors():
                written, entry = await script(
                    keys=[TenantKeys(rollback.tenant).audit_log()],
                    args=[
                        request,
                        head.size,
                        head.root_hash.hex(),
                        head.timestamp_ms,
                        rollback.lost_range,
                        rollback.found_size,
                    ],
                )
            # The entry first, then the file: a crash between them leaves the rollback standing,
            # and the next run finds its entry rather than writing another.
            record = heads.get(rollback.tenant)
            if record is not None:
                heads.acknowledge(rollback.tenant, record.signed.checkpoint)
            done.append(Acknowledged(rollback, int(entry), bool(written)))
    return done
