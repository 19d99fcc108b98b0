"""The key that verifies policy signatures: the reference's, or your own.

``evidence verify --policy-public-key``, ``tvs serve --policy-public-key`` and
``policy check --public-key`` take one value, read by these rules
(:func:`read_policy_public_key`):

* the value names an existing file: its content is the key, else the value
  itself is (a key given inline);
* a key is a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo, as ``openssl ec
  -pubout`` writes it), or hex: 130 digits (a 65-byte uncompressed SEC1
  point, ``04…``, as ``hats keys gen --public-out`` writes it) or 66 (a
  compressed point), surrounding whitespace and a ``0x`` prefix allowed;
* it must be a point of P-256.

The default is :data:`hats.attestation.policy.REFERENCE_POLICY_KEY`, the
reference TVS's hard-coded key (:func:`describe_key` names it). Errors are
:class:`PolicyKeyError`, one line, never echoing the value (it may be a
mistyped private key).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hats.errors import HatsError
from hats.protocol import p256


class PolicyKeyError(HatsError):
    """A policy public key that cannot be used."""

    exit_code = 2


_EXPECTED = (
    "a P-256 public key: a PEM 'PUBLIC KEY', or 130 hex digits (04…, as 'hats keys gen"
    " --public-out' writes), in a file or inline"
)


def parse_policy_public_key(data: bytes, where: str) -> bytes:
    """The 65-byte SEC1 point of the key in ``data`` (PEM or hex); see the module rules."""
    text = data.decode("ascii", errors="replace").strip()
    if text.startswith("-----BEGIN"):
        return _from_pem(data, where)
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise PolicyKeyError(f"{where}: expected {_EXPECTED}")
    if len(digits) not in (2 * p256.PUBLIC_KEY_LENGTH, 2 * p256.COMPRESSED_PUBLIC_KEY_LENGTH):
        raise PolicyKeyError(
            f"{where}: expected 130 (or 66) hex digits for a P-256 public key, got {len(digits)}"
            + (" (a private key? give its public key)" if len(digits) == 64 else "")
        )
    try:
        key = p256.load_public_key(bytes.fromhex(digits), where, allow_compressed=True)
    except HatsError as exc:
        raise PolicyKeyError(str(exc)) from None
    return p256.public_key_bytes(key)


def _from_pem(data: bytes, where: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if b"PRIVATE KEY" in data:
        raise PolicyKeyError(f"{where}: a private key; give its public key (openssl ec -pubout)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise PolicyKeyError(f"{where}: not a PEM public key; expected {_EXPECTED}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PolicyKeyError(f"{where}: not a P-256 (prime256v1) key")
    return p256.public_key_bytes(key)


def read_policy_public_key(value: str, option: str) -> bytes:
    """The key given to ``option``: the content of the file ``value`` names, else ``value``."""
    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PolicyKeyError(f"{option} {value}: cannot read: {exc.strerror}") from None
        return parse_policy_public_key(data[: 1 << 16], f"{option} {value}")
    if "/" in value or value.endswith((".pem", ".pub", ".txt", ".hex")):
        raise PolicyKeyError(f"{option} {value}: no such file")
    return parse_policy_public_key(value.encode("ascii", errors="replace"), option)


def describe_key(key: bytes) -> str:
    """``the reference policy key`` or ``the key sha256:<first 16 hex of its SHA-256>``."""
    from hats.attestation.policy import REFERENCE_POLICY_KEY

    if key == REFERENCE_POLICY_KEY:
        return "the reference policy key"
    return f"the key sha256:{hashlib.sha256(key).hexdigest()[:16]}"
