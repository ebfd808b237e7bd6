"""Privacy primitives: keyring and subkeys, argon2id identity index, name binding, sealing, masking.

Nothing identifying leaves a request in the clear: the store, logs and audit entries get only what
these modules produce.
"""

from idverify.privacy.identity_index import (
    DEFAULT,
    INDEX_PURPOSE,
    TEST_ONLY_FAST,
    Argon2Params,
    IdentityIndexer,
    IndexValue,
    parse_index_params,
)
from idverify.privacy.keyring import (
    KEYRING_ENV_VAR,
    Keyring,
    UnknownKeyVersion,
    create_keyring_file,
    ensure_keyring_file,
    load_keyring,
    save_keyring_file,
)
from idverify.privacy.masking import mask_document, mask_phone

# The `name_binding` function stays in its module: re-exported here it would shadow the submodule
# `idverify.privacy.name_binding`, and `import ... as` and `mock.patch` paths would find a function.
from idverify.privacy.name_binding import NAME_PURPOSE, names_match
from idverify.privacy.sealing import (
    Sealer,
    SealError,
    SealTampered,
    UnknownSealVersion,
    associated_data,
    sealed_from_text,
    sealed_to_text,
    sealed_version,
)

__all__ = [
    "DEFAULT",
    "INDEX_PURPOSE",
    "KEYRING_ENV_VAR",
    "NAME_PURPOSE",
    "TEST_ONLY_FAST",
    "Argon2Params",
    "IdentityIndexer",
    "IndexValue",
    "Keyring",
    "SealError",
    "SealTampered",
    "Sealer",
    "UnknownKeyVersion",
    "UnknownSealVersion",
    "associated_data",
    "create_keyring_file",
    "ensure_keyring_file",
    "load_keyring",
    "mask_document",
    "mask_phone",
    "names_match",
    "parse_index_params",
    "save_keyring_file",
    "sealed_from_text",
    "sealed_to_text",
    "sealed_version",
]
