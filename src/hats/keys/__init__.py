"""TVS public key files (``tvs_public_keys.txt``) and P-256 key pairs.

The core (:mod:`hats.keys.keyfile`, :mod:`hats.keys.keygen`) is pure: bytes in,
values or :class:`~hats.errors.HatsError` subclasses out. :mod:`hats.keys.cli`
is the thin ``hats keys`` command on top.
"""

from hats.keys.keyfile import (
    MAX_KEYS,
    KeyFileError,
    KeyProblem,
    TvsKey,
    check_key_file,
    decode_public_key_hex,
    format_key_file,
    parse_key_file,
    public_key_problem,
)
from hats.keys.keygen import (
    PrivateKeyError,
    generate_key_pair,
    insecure_key_label,
    private_key_from_hex,
    public_key_from_private,
    small_multiple,
)
from hats.protocol.p256 import PUBLIC_KEY_LENGTH

__all__ = [
    "MAX_KEYS",
    "PUBLIC_KEY_LENGTH",
    "KeyFileError",
    "KeyProblem",
    "PrivateKeyError",
    "TvsKey",
    "check_key_file",
    "decode_public_key_hex",
    "format_key_file",
    "generate_key_pair",
    "insecure_key_label",
    "parse_key_file",
    "private_key_from_hex",
    "public_key_from_private",
    "public_key_problem",
    "small_multiple",
]
