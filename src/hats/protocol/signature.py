"""ECDSA P-256/SHA-256 signatures in raw 64-byte ``r || s`` form (spec wire-protocol §4.7).

The orchestrator proves to the TVS that the session's handshake ran inside
the attested VM by signing the 32-byte handshake hash ``h`` with the
instance signing key; the TVS verifies it with the signing key from the
evidence. The rules:

* the algorithm is ECDSA on P-256 with SHA-256 applied to the message, so
  the digest signed for a handshake hash is ``SHA256(h)`` (the reference
  signs ``h`` as a message, not as a prehashed digest);
* a signature is **raw**: ``r`` and ``s`` as 32-byte big-endian integers,
  concatenated (64 bytes). No DER anywhere on this path;
* signing uses deterministic RFC 6979 nonces, as the reference does (the
  TVS does not care); ``s`` is not normalised, so about half of the
  signatures are "high-S", as with the reference;
* verifying requires exactly 64 bytes with ``r`` and ``s`` in 1..n-1
  (:class:`MalformedSignatureError`, the reference's ``Failed to parse
  signature``), then a valid signature (:class:`SignatureMismatchError`, its
  ``Signature does not match``). **High-S signatures are accepted**, like the
  reference's ``Signature::from_slice`` + ``verify``;
* the verifying key may be an uncompressed (65-byte) or compressed (33-byte)
  SEC1 point, as ``VerifyingKey::from_sec1_bytes`` takes both.

:func:`sign` and :func:`verify` work on any message (the appraisal-policy
signatures of §7.2 use the same scheme); :func:`sign_handshake_hash` and
:func:`verify_handshake_hash` add the 32-byte length check of the hash.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from hats.protocol import p256
from hats.protocol.crypto_errors import MalformedSignatureError, SignatureMismatchError

SIGNATURE_LENGTH = 64
"""Bytes in a raw signature: ``r(32) || s(32)``, big-endian."""

HANDSHAKE_HASH_LENGTH = 32
"""Bytes in a handshake hash (SHA-256)."""

_SCALAR_LENGTH = 32
_SIGN = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_VERIFY = ec.ECDSA(hashes.SHA256())


def encode_signature(r: int, s: int) -> bytes:
    """The raw 64-byte form of ``(r, s)``: each left-padded to 32 bytes, big-endian."""
    return r.to_bytes(_SCALAR_LENGTH, "big") + s.to_bytes(_SCALAR_LENGTH, "big")


def decode_signature(signature: bytes) -> tuple[int, int]:
    """``(r, s)`` from a raw signature; both must be in 1..n-1.

    Raises :class:`MalformedSignatureError` for another length or a value out
    of range (high ``s`` is in range and accepted).
    """
    if len(signature) != SIGNATURE_LENGTH:
        raise MalformedSignatureError(
            f"signature is {len(signature)} bytes, expected {SIGNATURE_LENGTH} (raw r || s)"
        )
    r = int.from_bytes(signature[:_SCALAR_LENGTH], "big")
    s = int.from_bytes(signature[_SCALAR_LENGTH:], "big")
    for name, value in (("r", r), ("s", s)):
        if not 1 <= value < p256.CURVE_ORDER:
            raise MalformedSignatureError(f"signature: {name} is not in 1..n-1")
    return r, s


def sign(private_key: p256.PrivateKey, message: bytes) -> bytes:
    """The raw 64-byte ECDSA P-256/SHA-256 signature of ``message`` (RFC 6979 nonce).

    Raises :class:`InvalidPrivateKeyError` if the key is not a valid P-256 key.
    """
    key = p256.load_private_key(private_key, "signing private key")
    r, s = decode_dss_signature(key.sign(bytes(message), _SIGN))
    return encode_signature(r, s)


def verify(public_key: p256.PublicKey, message: bytes, signature: bytes) -> None:
    """Check a raw ECDSA P-256/SHA-256 ``signature`` of ``message``; return only if it is valid.

    Raises :class:`InvalidPublicKeyError` for a bad key,
    :class:`MalformedSignatureError` for a signature that does not parse and
    :class:`SignatureMismatchError` for one that does not verify.
    """
    key = p256.load_public_key(public_key, "verifying public key", allow_compressed=True)
    r, s = decode_signature(signature)
    try:
        key.verify(encode_dss_signature(r, s), bytes(message), _VERIFY)
    except InvalidSignature:
        pass
    else:
        return
    raise SignatureMismatchError("signature does not match the key and message")


def _check_hash(handshake_hash: bytes) -> bytes:
    if len(handshake_hash) != HANDSHAKE_HASH_LENGTH:
        raise ValueError(
            f"handshake hash is {len(handshake_hash)} bytes, expected {HANDSHAKE_HASH_LENGTH}"
        )
    return bytes(handshake_hash)


def sign_handshake_hash(private_key: p256.PrivateKey, handshake_hash: bytes) -> bytes:
    """The orchestrator's proof (§4.7): :func:`sign` of the 32-byte ``handshake_hash``.

    A hash of another length is a programming error (:class:`ValueError`).
    """
    return sign(private_key, _check_hash(handshake_hash))


def verify_handshake_hash(
    public_key: p256.PublicKey, handshake_hash: bytes, signature: bytes
) -> None:
    """The TVS's check (§7.1 step 4): :func:`verify` over the 32-byte ``handshake_hash``."""
    verify(public_key, _check_hash(handshake_hash), signature)
