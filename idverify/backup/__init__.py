"""Backups of a data directory: ``idverify backup create | verify | restore``.

A backup is a folder: the embedded Redis's RDB snapshot, the keyring, the audit signing key
and the published audit heads, with ``manifest.json`` naming each file's size and SHA-256 and
each tenant's audit log size and root in the snapshot (``manifest``). Later stores (audit
tiles on disk) add files to the manifest; a verifier checks every file the manifest names.
"""
