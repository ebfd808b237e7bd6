"""The tamper-evident audit log.

``merkle`` (RFC 6962 math) and ``checkpoint`` (signed tree heads) are pure; ``events`` is the
entry format; ``log_store`` reads a tenant's log on Redis, ``integrator`` builds its Merkle tree,
``query`` filters it; ``export`` writes and verifies export files; ``signing_key`` finds the
key (the ``idverify audit`` command line is idverify/cli/audit.py); ``synthetic`` fills logs for tests and
benchmarks. Entries are appended by the Lua prelude's ``audit()``, in the same step as the change.
"""
