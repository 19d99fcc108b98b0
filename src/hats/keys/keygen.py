"""P-256 key pairs for TVSes (pure: no file I/O).

Private keys are 32-byte big-endian scalars, public keys 65-byte uncompressed
SEC1 points. No error message, exception or log line ever contains a private
key, not even a part of it.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hats.errors import HatsError

PRIVATE_KEY_LENGTH = 32
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n, the order of the P-256 base point G: valid private scalars are 1..n-1."""

# The public key of the heartbeat test's TVS in the reference image
# (test_single_1sec_heartbeat). Its private key is published in the HATs
# sources, so it protects nothing.
_PUBLISHED_TEST_KEY = bytes.fromhex(
    "04b57ab5cad6ff969c3c77eff6ebcb1074cf74c5a9309d05ea48be0fa9625115"
    "0a7f27730484a14da70811332d0935738aa57d706a6ebe240b9a48399861fbface"
)
_SMALL_MULTIPLES = 3


class PrivateKeyError(HatsError):
    """A private key is malformed or out of range (the message never shows it)."""


def _public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def generate_key_pair() -> tuple[bytes, bytes]:
    """A fresh P-256 key pair: (32-byte private scalar, 65-byte public point)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(PRIVATE_KEY_LENGTH, "big")
    return private, _public_bytes(key)


def public_key_from_private(private_key: bytes) -> bytes:
    """The 65-byte public point of a 32-byte big-endian private scalar in 1..n-1.

    Raises :class:`PrivateKeyError` (without echoing the key) otherwise.
    """
    if len(private_key) != PRIVATE_KEY_LENGTH:
        raise PrivateKeyError(
            f"private key must be {PRIVATE_KEY_LENGTH} bytes, got {len(private_key)}"
        )
    scalar = int.from_bytes(private_key, "big")
    if not 1 <= scalar < P256_ORDER:
        raise PrivateKeyError("private key is out of range: the scalar must be in 1..n-1")
    return _public_bytes(ec.derive_private_key(scalar, ec.SECP256R1()))


def private_key_from_hex(text: str) -> bytes:
    """Decode a hex private key (surrounding whitespace allowed), checking its range.

    Raises :class:`PrivateKeyError` (without echoing any of the text) if it is
    not 64 hex digits or not a valid P-256 scalar.
    """
    digits = text.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits:
        raise PrivateKeyError("private key is empty")
    if not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise PrivateKeyError("private key is not hex")
    if len(digits) != 2 * PRIVATE_KEY_LENGTH:
        raise PrivateKeyError(
            f"private key must be {2 * PRIVATE_KEY_LENGTH} hex digits, got {len(digits)}"
        )
    private_key = bytes.fromhex(digits)
    public_key_from_private(private_key)
    return private_key


@functools.cache
def _small_multiples() -> dict[bytes, int]:
    return {
        public_key_from_private(k.to_bytes(PRIVATE_KEY_LENGTH, "big")): k
        for k in range(1, _SMALL_MULTIPLES + 1)
    }


def small_multiple(public_key: bytes) -> int | None:
    """k if ``public_key`` is k·G for k in 1..3 (the reference's test keys), else None."""
    return _small_multiples().get(bytes(public_key))


def insecure_key_label(public_key: bytes, dot: str = "·") -> str | None:
    """A label if ``public_key``'s private key is public knowledge, else None.

    ``"test key k·G"`` for k = 1..3 (private key k), and ``"test key (published
    private key)"`` for the reference's heartbeat test key. ``dot`` replaces the
    middle dot for terminals that cannot show it.
    """
    k = small_multiple(public_key)
    if k is not None:
        return f"test key {k}{dot}G"
    if bytes(public_key) == _PUBLISHED_TEST_KEY:
        return "test key (published private key)"
    return None
