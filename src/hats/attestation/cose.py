"""DICE key ids, COSE_Keys and CWT certificates (spec wire-protocol §2.1) — pure.

Rules, as the reference writes and reads them (validated byte for byte
against the real Genoa evidence):

* ``key_id(raw) = HKDF-SHA256(salt=b"DICE_ID_SALT", ikm=raw, info=b"ID", L=20)``
  where ``raw`` is the 65-byte uncompressed point of a P-256 key or the 32 raw
  bytes of an X25519 key; a certificate's ``sub`` is ``lowercase hex(key_id)``
  and its ``iss`` the ``sub`` of the issuer's certificate (the root: the hex key
  id of the root ECA key);
* a **COSE_Key** is a CBOR map with integer labels in the order
  ``1 (kty), 2 (kid), 3 (alg), 4 (key_ops), -1 (crv), -2 (x), -3 (y)`` (the
  canonical, length-first order); P-256 keys are
  ``{1: 2 (EC2), 2: kid, 3: -7 (ES256), 4: [2 (verify)], -1: 1 (P-256), -2: x, -3: y}``
  (102 bytes), X25519 keys ``{1: 1 (OKP), 2: kid, 3: -31, 4: [5 (wrapKey)],
  -1: 4 (X25519), -2: x}`` (68 bytes);
* a **certificate** is an *untagged* COSE_Sign1 array
  ``[protected, unprotected, payload, signature]`` with protected = bstr
  ``a1 01 26`` (``{1: -7}``, ES256), unprotected ``{4: b"AsymmetricECDSA256"}``,
  payload = bstr of the CWT claims map in the order ``1 (iss, text), 2 (sub,
  text), -4670552 (bstr COSE_Key of the subject), -4670553 (bstr key usage
  h'2000')``, then the additional claims (``-4670573: {-4670572: SHA-256 of
  the event}`` for layer and application-key certificates);
* the signature is the raw 64-byte ES256 signature (``r || s``) by the
  issuer's key over ``Sig_structure = ["Signature1", protected, h'', payload]``.

:func:`parse_certificate` accepts any well-formed certificate of that shape
(claim order is recorded, not enforced) and raises
:class:`CertificateFormatError` — never another exception — for anything
else; :func:`verify_certificate` raises :class:`CertificateSignatureError`
for a signature that does not verify. Messages never contain key material.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hats.attestation.errors import EvidenceFormatError, EvidenceVerificationError
from hats.protocol import p256, signature
from hats.protocol.crypto_errors import (
    InvalidPublicKeyError,
    MalformedSignatureError,
    SignatureMismatchError,
)

KEY_ID_LENGTH: Final = 20
"""Bytes in a DICE key id (HKDF-SHA256 output)."""

KEY_ID_SALT: Final = b"DICE_ID_SALT"
KEY_ID_INFO: Final = b"ID"

# COSE_Key labels and values (RFC 9052/9053).
KTY: Final = 1
KID: Final = 2
ALG: Final = 3
KEY_OPS: Final = 4
CRV: Final = -1
X: Final = -2
Y: Final = -3

KTY_OKP: Final = 1
KTY_EC2: Final = 2
ALG_ES256: Final = -7
ALG_ECDH_ES_A256KW: Final = -31
KEY_OP_VERIFY: Final = 2
KEY_OP_WRAP_KEY: Final = 5
CRV_P256: Final = 1
CRV_X25519: Final = 4

COORDINATE_LENGTH: Final = 32
"""Bytes in a P-256 coordinate and in an X25519 public key."""

# CWT claims.
ISS: Final = 1
SUB: Final = 2
SUBJECT_PUBLIC_KEY_ID: Final = -4670552
KEY_USAGE_ID: Final = -4670553
EVENT_ID: Final = -4670573
SHA2_256_ID: Final = -4670572

KEY_CERT_SIGN: Final = b"\x20\x00"
"""Key usage KEY_CERT_SIGN (0x0020) as a little-endian u16: the only usage the reference writes."""

PROTECTED_ES256: Final = b"\xa1\x01\x26"
"""The protected header bytes: ``{1: -7}`` (alg ES256)."""

UNPROTECTED_KID: Final = b"AsymmetricECDSA256"
"""The unprotected header's kid (label 4)."""

EVENT_DIGEST_LENGTH: Final = 32

_MAX_DEPTH: Final = 16


class CertificateFormatError(EvidenceFormatError):
    """A certificate or COSE_Key that does not parse (CBOR, COSE_Sign1, claims, key)."""


class CertificateSignatureError(EvidenceVerificationError):
    """A certificate whose ES256 signature does not verify with the issuer's key."""


def key_id(raw: bytes) -> bytes:
    """The 20-byte DICE key id of a raw public key (65-byte P-256 point or 32-byte X25519 key)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_ID_LENGTH, salt=KEY_ID_SALT, info=KEY_ID_INFO)
    return hkdf.derive(bytes(raw))


def key_id_hex(raw: bytes) -> str:
    """``lowercase hex(key_id(raw))``: the ``sub``/``iss`` string of a key."""
    return key_id(raw).hex()


def _reject_tag(decoder: object, tag: object) -> object:
    raise ValueError("CBOR tags are not allowed here")


def cbor_decode(data: bytes, what: str) -> Any:
    """Decode exactly one CBOR item filling ``data``; no tags, no duplicate map keys.

    Any decoder failure, and trailing bytes, raise :class:`CertificateFormatError`
    naming ``what``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CertificateFormatError(f"{what}: expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    stream = io.BytesIO(raw)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            tag_hook=_reject_tag,
            read_size=1,
            max_depth=_MAX_DEPTH,
            allow_duplicate_keys=False,
        )
        value = decoder.decode()
    except Exception as exc:  # the decoder's failure modes are not all CBORError
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CertificateFormatError(f"{what}: not valid CBOR ({reason})") from None
    if stream.tell() != len(raw):
        raise CertificateFormatError(
            f"{what}: {len(raw) - stream.tell()} trailing bytes after the CBOR item"
        )
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CertificateFormatError(f"{what}: expected an integer, got {type(value).__name__}")
    return value


def _bytes(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise CertificateFormatError(f"{what}: expected a byte string, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise CertificateFormatError(f"{what}: expected {length} bytes, got {len(value)}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CertificateFormatError(f"{what}: expected a text string, got {type(value).__name__}")
    return value


def _map(value: object, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise CertificateFormatError(f"{what}: expected a CBOR map, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class CoseKey:
    """A COSE_Key as DICE uses it: P-256 (EC2, ``y`` set) or X25519 (OKP, ``y`` None).

    Public keys only: nothing here is secret.
    """

    kty: int
    kid: bytes
    alg: int
    key_ops: tuple[int, ...]
    crv: int
    x: bytes
    y: bytes | None = None

    def encode(self) -> bytes:
        """The CBOR bytes, labels in canonical order ``1, 2, 3, 4, -1, -2[, -3]``."""
        items: dict[int, object] = {
            KTY: self.kty,
            KID: self.kid,
            ALG: self.alg,
            KEY_OPS: list(self.key_ops),
            CRV: self.crv,
            X: self.x,
        }
        if self.y is not None:
            items[Y] = self.y
        return cbor2.dumps(items)

    @classmethod
    def decode(cls, data: bytes, what: str = "COSE_Key") -> CoseKey:
        """Parse a P-256 (EC2) or X25519 (OKP) COSE_Key; :class:`CertificateFormatError` otherwise.

        Every label of the DICE encoding must be present (``-3`` exactly for
        EC2), no other label may be, coordinates are 32 bytes and a P-256
        point must lie on the curve. Label order is not checked.
        """
        return cls.from_map(cbor_decode(data, what), what)

    @classmethod
    def from_map(cls, value: object, what: str = "COSE_Key") -> CoseKey:
        """The key from an already decoded CBOR map (rules as :meth:`decode`)."""
        items = _map(value, what)
        kty = _int(items.get(KTY), f"{what} kty (1)")
        if kty == KTY_EC2:
            allowed = {KTY, KID, ALG, KEY_OPS, CRV, X, Y}
        elif kty == KTY_OKP:
            allowed = {KTY, KID, ALG, KEY_OPS, CRV, X}
        else:
            raise CertificateFormatError(f"{what}: unsupported key type {kty} (expected 1 or 2)")
        labels = set(items)
        if labels != allowed:
            extra = sorted(str(label) for label in labels - allowed)
            missing = sorted(str(label) for label in allowed - labels)
            detail = "; ".join(
                part
                for part in (
                    f"missing labels {', '.join(missing)}" if missing else "",
                    f"unexpected labels {', '.join(extra)}" if extra else "",
                )
                if part
            )
            raise CertificateFormatError(f"{what}: {detail}")
        kid = _bytes(items[KID], f"{what} kid (2)")
        alg = _int(items[ALG], f"{what} alg (3)")
        ops_value = items[KEY_OPS]
        if not isinstance(ops_value, list):
            raise CertificateFormatError(f"{what} key_ops (4): expected an array")
        key_ops = tuple(_int(op, f"{what} key_ops (4) entry") for op in ops_value)
        crv = _int(items[CRV], f"{what} crv (-1)")
        x = _bytes(items[X], f"{what} x (-2)", COORDINATE_LENGTH)
        if kty == KTY_EC2:
            if crv != CRV_P256:
                raise CertificateFormatError(f"{what}: EC2 curve {crv} is not P-256 (1)")
            y = _bytes(items[Y], f"{what} y (-3)", COORDINATE_LENGTH)
            key = cls(kty, kid, alg, key_ops, crv, x, y)
            key.p256_public_key(what)  # on the curve
            return key
        if crv != CRV_X25519:
            raise CertificateFormatError(f"{what}: OKP curve {crv} is not X25519 (4)")
        return cls(kty, kid, alg, key_ops, crv, x, None)

    def raw_public_key(self) -> bytes:
        """The bytes the key id is derived from: ``04 || x || y`` (EC2) or ``x`` (OKP)."""
        if self.y is None:
            return self.x
        return b"\x04" + self.x + self.y

    def p256_public_key(self, what: str = "COSE_Key") -> ec.EllipticCurvePublicKey:
        """The P-256 public key; :class:`CertificateFormatError` if this is not one."""
        if self.kty != KTY_EC2 or self.crv != CRV_P256 or self.y is None:
            raise CertificateFormatError(f"{what}: not a P-256 (EC2) key")
        try:
            return p256.load_public_key(self.raw_public_key(), what)
        except InvalidPublicKeyError as exc:
            raise CertificateFormatError(str(exc)) from None


def p256_cose_key(public_key: p256.PublicKey) -> CoseKey:
    """The DICE COSE_Key of a P-256 public key (65-byte SEC1 point or key object)."""
    raw = p256.public_key_bytes(p256.load_public_key(public_key, "P-256 public key"))
    return CoseKey(
        kty=KTY_EC2,
        kid=key_id(raw),
        alg=ALG_ES256,
        key_ops=(KEY_OP_VERIFY,),
        crv=CRV_P256,
        x=raw[1:33],
        y=raw[33:],
    )


def x25519_cose_key(raw32: bytes) -> CoseKey:
    """The DICE COSE_Key (KEM) of a 32-byte X25519 public key."""
    raw = bytes(raw32)
    if len(raw) != COORDINATE_LENGTH:
        raise ValueError(f"X25519 public key: expected {COORDINATE_LENGTH} bytes, got {len(raw)}")
    return CoseKey(
        kty=KTY_OKP,
        kid=key_id(raw),
        alg=ALG_ECDH_ES_A256KW,
        key_ops=(KEY_OP_WRAP_KEY,),
        crv=CRV_X25519,
        x=raw,
    )


@dataclass(frozen=True)
class Certificate:
    """A parsed DICE certificate; ``raw`` is the exact input, the rest is decoded from it."""

    raw: bytes = field(repr=False)
    protected: bytes
    unprotected: dict[Any, Any]
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    issuer: str
    subject: str
    subject_public_key: CoseKey
    key_usage: bytes
    event_sha256: bytes | None
    claims: dict[int, Any] = field(repr=False)
    claim_order: tuple[int, ...]

    def sig_structure(self) -> bytes:
        """The bytes signed: ``["Signature1", protected, h'', payload]``."""
        return sig_structure(self.protected, self.payload)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """COSE ``Sig_structure`` for COSE_Sign1 with empty external AAD."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def parse_certificate(data: bytes, what: str = "certificate") -> Certificate:
    """Parse an untagged COSE_Sign1 DICE certificate (module rules).

    Checks the structure only — ES256 protected header, a 64-byte signature,
    text ``iss``/``sub``, a COSE_Key subject key, a key-usage byte string, an
    optional EVENT claim holding a 32-byte SHA-256 — not the signature, the
    key id or the chaining. Raises :class:`CertificateFormatError` naming
    ``what`` and the field at fault.
    """
    top = cbor_decode(data, what)
    if not isinstance(top, list) or len(top) != 4:
        raise CertificateFormatError(f"{what}: not a COSE_Sign1 array of 4 items")
    protected = _bytes(top[0], f"{what} protected header")
    unprotected = _map(top[1], f"{what} unprotected header")
    payload = _bytes(top[2], f"{what} payload")
    sig = _bytes(top[3], f"{what} signature", signature.SIGNATURE_LENGTH)
    header = _map(cbor_decode(protected, f"{what} protected header"), f"{what} protected header")
    if header.get(1) != ALG_ES256:
        raise CertificateFormatError(f"{what}: protected header algorithm is not ES256 (-7)")
    claims = _map(cbor_decode(payload, f"{what} payload"), f"{what} claims")
    for label in claims:
        _int(label, f"{what} claim label")
    issuer = _text(claims.get(ISS), f"{what} iss (1)")
    subject = _text(claims.get(SUB), f"{what} sub (2)")
    key_bytes = _bytes(claims.get(SUBJECT_PUBLIC_KEY_ID), f"{what} subject public key")
    subject_key = CoseKey.decode(key_bytes, f"{what} subject public key")
    key_usage = _bytes(claims.get(KEY_USAGE_ID), f"{what} key usage")
    event_sha256: bytes | None = None
    if EVENT_ID in claims:
        event = _map(claims[EVENT_ID], f"{what} event claim")
        event_sha256 = _bytes(event.get(SHA2_256_ID), f"{what} event SHA-256", EVENT_DIGEST_LENGTH)
    return Certificate(
        raw=bytes(data),
        protected=protected,
        unprotected=unprotected,
        payload=payload,
        signature=sig,
        issuer=issuer,
        subject=subject,
        subject_public_key=subject_key,
        key_usage=key_usage,
        event_sha256=event_sha256,
        claims=claims,
        claim_order=tuple(claims),
    )


def verify_certificate(
    cert: Certificate, issuer_key: CoseKey | p256.PublicKey, what: str = "certificate"
) -> None:
    """Check ``cert``'s ES256 signature with the issuer's P-256 key; return only if valid.

    ``issuer_key`` is the issuer's COSE_Key, 65-byte SEC1 point or key
    object. A key that is not P-256 raises :class:`CertificateFormatError`;
    a signature that does not verify (including ``r``/``s`` out of range)
    raises :class:`CertificateSignatureError`.
    """
    if isinstance(issuer_key, CoseKey):
        public = issuer_key.p256_public_key(f"{what} issuer key")
    else:
        try:
            public = p256.load_public_key(issuer_key, f"{what} issuer key")
        except InvalidPublicKeyError as exc:
            raise CertificateFormatError(str(exc)) from None
    try:
        signature.verify(public, cert.sig_structure(), cert.signature)
    except (MalformedSignatureError, SignatureMismatchError):
        pass
    else:
        return
    raise CertificateSignatureError(
        f"{what} (subject {cert.subject}): signature does not verify with the issuer's key"
    )


def event_claim(event_sha256: bytes) -> dict[int, bytes]:
    """The EVENT claim value ``{-4670572: event_sha256}``."""
    return {SHA2_256_ID: event_sha256}


def certificate_payload(
    *,
    issuer_id: str,
    subject_key: CoseKey,
    event_sha256: bytes | None,
    extra_claims: Mapping[int, object] | None = None,
    subject_id: str | None = None,
    key_usage: bytes = KEY_CERT_SIGN,
) -> bytes:
    """The CWT claims bytes of a certificate, in the reference's order (module rules).

    Claims: ``iss = issuer_id``, ``sub = subject_id`` (default:
    ``hex(key_id(subject_key.raw_public_key()))``), the subject COSE_Key,
    ``key_usage``, the EVENT claim if ``event_sha256`` is given, then
    ``extra_claims`` in their order. A digest that is not 32 bytes or an
    extra label repeating an earlier one is a programming error
    (:class:`ValueError`).
    """
    if event_sha256 is not None and len(event_sha256) != EVENT_DIGEST_LENGTH:
        raise ValueError(f"event SHA-256: expected {EVENT_DIGEST_LENGTH} bytes")
    claims: dict[int, object] = {
        ISS: issuer_id,
        SUB: subject_id if subject_id is not None else key_id_hex(subject_key.raw_public_key()),
        SUBJECT_PUBLIC_KEY_ID: subject_key.encode(),
        KEY_USAGE_ID: bytes(key_usage),
    }
    if event_sha256 is not None:
        claims[EVENT_ID] = event_claim(bytes(event_sha256))
    for label, value in (extra_claims or {}).items():
        if label in claims:
            raise ValueError(f"extra claim {label} repeats a standard claim")
        claims[label] = value
    return cbor2.dumps(claims)


def encode_sign1(payload: bytes, sig: bytes) -> bytes:
    """The untagged COSE_Sign1 bytes ``[h'a10126', {4: "AsymmetricECDSA256"}, payload, sig]``."""
    return cbor2.dumps([PROTECTED_ES256, {4: UNPROTECTED_KID}, payload, sig])


def issue_certificate(
    *,
    issuer_private_key: p256.PrivateKey,
    issuer_id: str,
    subject_key: CoseKey,
    event_sha256: bytes | None,
    extra_claims: Mapping[int, object] | None = None,
    subject_id: str | None = None,
    key_usage: bytes = KEY_CERT_SIGN,
) -> bytes:
    """A certificate for ``subject_key`` signed by ``issuer_private_key``, in the reference's bytes.

    The payload is :func:`certificate_payload` of the other arguments; the
    ES256 signature over the Sig_structure is deterministic (RFC 6979). A
    bad key raises :class:`hats.protocol.crypto_errors.InvalidPrivateKeyError`.
    """
    payload = certificate_payload(
        issuer_id=issuer_id,
        subject_key=subject_key,
        event_sha256=event_sha256,
        extra_claims=extra_claims,
        subject_id=subject_id,
        key_usage=key_usage,
    )
    sig = signature.sign(issuer_private_key, sig_structure(PROTECTED_ES256, payload))
    return encode_sign1(payload, sig)


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data`` (the digest of an encoded event)."""
    return hashlib.sha256(data).digest()
