"""The crypto behind ``oak.containers.v1.OrchestratorCrypto`` (spec wire-protocol §3.7) — pure.

* :func:`derive_session_keys`: HPKE (RFC 9180) **base-mode receiver** with the
  suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM and
  ``info = b"Oak Hybrid Public Key Encryption v1"``; the two session keys are
  the exporter's ``Export(b"request_key", 32)`` and
  ``Export(b"response_key", 32)``. The KEM and the key schedule are written
  out here (``cryptography`` has HPKE single-shot encryption but no exporter);
  the tests check them against RFC 9180's export-only vectors and against
  ``cryptography``'s HPKE sender.
* :func:`sign_message`: ECDSA P-256/SHA-256, raw 64-byte ``r || s``.
* :func:`bind_session`: the same over ``transcript || additional_data``.

Errors are :class:`IpcCryptoError`; their messages never contain key bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from hats.errors import HatsError
from hats.protocol import signature

OAK_HPKE_INFO = b"Oak Hybrid Public Key Encryption v1"
"""The ``info`` string of Oak's hybrid encryption."""

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002
AEAD_EXPORT_ONLY = 0xFFFF
MODE_BASE = 0x00

_X25519_LENGTH = 32
_NH = 32  # HKDF-SHA256 output size
_AES_256_GCM_KEY = 32
_AES_GCM_NONCE = 12


class IpcCryptoError(HatsError):
    """An OrchestratorCrypto operation failed (bad encapsulated key, …)."""


@dataclass(frozen=True, repr=False)
class ReceiverContext:
    """The HPKE key schedule's outputs (RFC 9180 §5.1); the repr hides them."""

    key: bytes
    base_nonce: bytes
    exporter_secret: bytes
    suite_id: bytes

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """``Context.Export`` (RFC 9180 §5.3)."""
        return _labeled_expand(
            self.suite_id, self.exporter_secret, b"sec", exporter_context, length
        )

    def __repr__(self) -> str:
        return "ReceiverContext(<hidden>)"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(_NH), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    if length > 255 * _NH:
        raise IpcCryptoError(f"HKDF-Expand length {length} is too large")
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return _expand(prk, labeled_info, length)


def _x25519_raw(key: x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _decap(enc: bytes, recipient: x25519.X25519PrivateKey) -> bytes:
    """DHKEM(X25519, HKDF-SHA256) ``Decap`` (RFC 9180 §4.1)."""
    if len(enc) != _X25519_LENGTH:
        raise IpcCryptoError(
            f"encapsulated public key has {len(enc)} bytes, expected {_X25519_LENGTH}"
        )
    try:
        dh = recipient.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    except ValueError:
        raise IpcCryptoError("encapsulated public key gives an all-zero X25519 secret") from None
    kem_suite = b"KEM" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
    kem_context = enc + _x25519_raw(recipient.public_key())
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    return _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, _NH)


def setup_base_receiver(
    enc: bytes,
    recipient: x25519.X25519PrivateKey,
    info: bytes,
    *,
    aead_id: int = AEAD_AES_256_GCM,
) -> ReceiverContext:
    """``SetupBaseR`` for DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ``aead_id``."""
    shared_secret = _decap(enc, recipient)
    suite_id = (
        b"HPKE"
        + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
        + KDF_HKDF_SHA256.to_bytes(2, "big")
        + aead_id.to_bytes(2, "big")
    )
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    if aead_id == AEAD_EXPORT_ONLY:
        key = base_nonce = b""
    else:
        key = _labeled_expand(suite_id, secret, b"key", context, _AES_256_GCM_KEY)
        base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, _AES_GCM_NONCE)
    exporter_secret = _labeled_expand(suite_id, secret, b"exp", context, _NH)
    return ReceiverContext(key, base_nonce, exporter_secret, suite_id)


def derive_session_keys(
    recipient: x25519.X25519PrivateKey, encapsulated_public_key: bytes
) -> tuple[bytes, bytes]:
    """``(request_key, response_key)`` for an Oak HPKE session (§3.7)."""
    context = setup_base_receiver(encapsulated_public_key, recipient, OAK_HPKE_INFO)
    return context.export(b"request_key", 32), context.export(b"response_key", 32)


def sign_message(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA P-256/SHA-256 over ``message``, raw 64-byte ``r || s``."""
    return signature.sign(key, message)


def bind_session(
    key: ec.EllipticCurvePrivateKey, transcript: bytes, additional_data: bytes
) -> bytes:
    """The session-binding signature over ``transcript || additional_data``."""
    return signature.sign(key, transcript + additional_data)
