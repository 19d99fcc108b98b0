"""P-256 keys and ECDH for the TVS secure channel (pure, validated).

Encodings (spec wire-protocol §0 and §4.1):

* a **private key** is a 32-byte big-endian scalar ``d`` with ``1 <= d < n``
  (``n`` the group order); a ``cryptography`` P-256 key object is accepted
  too. Anything else raises :class:`InvalidPrivateKeyError`, where the
  reference would fail (``invalid/zero scalar → error``);
* a **public key** is the 65-byte uncompressed SEC1 point ``04 || X || Y``,
  which must lie on the curve. Anything else raises
  :class:`InvalidPublicKeyError`. Only signature verification also takes the
  33-byte compressed form (``allow_compressed``), as the reference's
  ``VerifyingKey::from_sec1_bytes`` does;
* ``DH(k, P)`` is the 32-byte x-coordinate of ``k·P`` (standard ECDH).

Every error names the value at fault (the caller's ``what``, for example
"responder static public key") and its length; never its bytes.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hats.protocol.crypto_errors import InvalidPrivateKeyError, InvalidPublicKeyError

CURVE_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n, the order of the P-256 base point: private scalars and ECDSA r, s are in 1..n-1."""

PRIVATE_KEY_LENGTH = 32
"""Bytes in a private key: a big-endian scalar."""

PUBLIC_KEY_LENGTH = 65
"""Bytes in an uncompressed SEC1 point ``04 || X(32) || Y(32)``."""

COMPRESSED_PUBLIC_KEY_LENGTH = 33
"""Bytes in a compressed SEC1 point ``02|03 || X(32)`` (signature verification only)."""

SHARED_SECRET_LENGTH = 32
"""Bytes in ``DH(k, P)``: the x-coordinate of ``k·P``."""

PrivateKey: TypeAlias = bytes | ec.EllipticCurvePrivateKey
"""A private key as callers may give it: a 32-byte scalar or a ``cryptography`` P-256 key."""

PublicKey: TypeAlias = bytes | ec.EllipticCurvePublicKey
"""A public key as callers may give it: SEC1 bytes or a ``cryptography`` P-256 key."""

_CURVE = ec.SECP256R1()


def load_private_key(key: PrivateKey, what: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key ``key`` (a 32-byte scalar in 1..n-1, or a P-256 key object).

    Raises :class:`InvalidPrivateKeyError` naming ``what`` otherwise.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidPrivateKeyError(f"{what}: not a P-256 key (curve {key.curve.name})")
        return key
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{what}: expected bytes or an EC private key, got {type(key).__name__}")
    if len(key) != PRIVATE_KEY_LENGTH:
        raise InvalidPrivateKeyError(f"{what}: expected {PRIVATE_KEY_LENGTH} bytes, got {len(key)}")
    scalar = int.from_bytes(key, "big")
    if not 1 <= scalar < CURVE_ORDER:
        raise InvalidPrivateKeyError(f"{what}: the scalar is not in 1..n-1 (zero or too large)")
    return ec.derive_private_key(scalar, _CURVE)


class PointFault(enum.Enum):
    """Why bytes are not a P-256 point (:func:`decode_point`); callers word the message."""

    LENGTH = "length"
    """Not 65 bytes (nor 33 with ``allow_compressed``)."""
    PREFIX = "prefix"
    """The right length, the wrong first byte (not 04; not 02/03 for 33 bytes)."""
    NOT_ON_CURVE = "not on curve"
    """A well-formed encoding of a point that is not on P-256."""


def decode_point(
    data: bytes, *, allow_compressed: bool = False
) -> ec.EllipticCurvePublicKey | PointFault:
    """The one P-256 point validator: the key of SEC1 bytes ``data``, or why they are not one.

    65-byte uncompressed ``04 || X || Y`` on the curve; with ``allow_compressed``
    also 33-byte ``02|03 || X``.
    """
    if len(data) == PUBLIC_KEY_LENGTH:
        if data[0] != 0x04:
            return PointFault.PREFIX
    elif allow_compressed and len(data) == COMPRESSED_PUBLIC_KEY_LENGTH:
        if data[0] not in (0x02, 0x03):
            return PointFault.PREFIX
    else:
        return PointFault.LENGTH
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, data)
    except ValueError:
        return PointFault.NOT_ON_CURVE


def load_public_key(
    key: PublicKey, what: str, *, allow_compressed: bool = False
) -> ec.EllipticCurvePublicKey:
    """The P-256 public key ``key``: a 65-byte uncompressed point on the curve, or a key object.

    With ``allow_compressed``, a 33-byte compressed point is accepted too.
    Raises :class:`InvalidPublicKeyError` naming ``what`` otherwise.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidPublicKeyError(f"{what}: not a P-256 key (curve {key.curve.name})")
        return key
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{what}: expected bytes or an EC public key, got {type(key).__name__}")
    data = bytes(key)
    decoded = decode_point(data, allow_compressed=allow_compressed)
    if not isinstance(decoded, PointFault):
        return decoded
    if decoded is PointFault.LENGTH:
        expected = (
            f"{PUBLIC_KEY_LENGTH} or {COMPRESSED_PUBLIC_KEY_LENGTH}"
            if allow_compressed
            else str(PUBLIC_KEY_LENGTH)
        )
        raise InvalidPublicKeyError(f"{what}: expected {expected} bytes, got {len(data)}")
    if decoded is PointFault.PREFIX and len(data) == PUBLIC_KEY_LENGTH:
        raise InvalidPublicKeyError(
            f"{what}: a {PUBLIC_KEY_LENGTH}-byte point must start with 0x04 (uncompressed)"
        )
    if decoded is PointFault.PREFIX:
        raise InvalidPublicKeyError(
            f"{what}: a {COMPRESSED_PUBLIC_KEY_LENGTH}-byte point must start with 0x02 or 0x03"
        )
    raise InvalidPublicKeyError(f"{what}: not a point on P-256")


def public_key_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed SEC1 encoding of ``key``'s public point."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh random P-256 private key (from the operating system's CSPRNG)."""
    return ec.generate_private_key(_CURVE)


def dh(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """``DH(k, P)``: the 32-byte x-coordinate of ``k·P``."""
    return private_key.exchange(ec.ECDH(), public_key)
