"""The tamper-evident audit log.

``merkle`` (RFC 6962 math) and ``checkpoint`` (signed tree heads) are pure; ``events`` is the
entry format; ``tree_state`` the stored tree's records; ``integrator`` builds a log's Merkle tree,
``query`` filters it and ``rollback`` guards it against a restore behind a published head, each
through a port (``idverify.store.audit_store`` reads and writes the log on Redis); ``export``
writes and verifies export files; ``signing_key`` finds the
key (the ``idverify audit`` command line is idverify/cli/audit.py); ``synthetic`` fills logs for tests and
benchmarks. Entries are appended by the Lua prelude's ``audit()``, in the same step as the change.
"""
