"""ECDSA P-256/SHA-256 raw r||s signatures over the handshake hash (spec wire-protocol §4.7)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.protocol import p256
from hats.protocol.crypto_errors import (
    CryptoError,
    InvalidPrivateKeyError,
    InvalidPublicKeyError,
    MalformedSignatureError,
    SignatureError,
    SignatureMismatchError,
)
from hats.protocol.handshake import HandshakeInitiator, respond
from hats.protocol.signature import (
    SIGNATURE_LENGTH,
    decode_signature,
    encode_signature,
    sign,
    sign_handshake_hash,
    verify,
    verify_handshake_hash,
)
from suite_support import assert_no_key_material

N = p256.CURVE_ORDER

# RFC 6979 appendix A.2.5: P-256, SHA-256, deterministic nonces.
RFC_KEY = bytes.fromhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
RFC_PUBLIC = bytes.fromhex(
    "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
    "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
)
RFC_SAMPLE = bytes.fromhex(
    "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
    "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
)
RFC_TEST = bytes.fromhex(
    "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367"
    "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083"
)

# The application signing key of the reference's evidence_v1_genoa test data (§4.9).
INSTANCE_KEY = bytes.fromhex("be828103ab28b93a5d91592d69374541d6e7decd287ef7df1f990a87f231cb8c")
HANDSHAKE_HASH = bytes.fromhex("4daebbd62aa019e293815b8f23e3b2b4a83f4bd62ae068a9506b21b9d3e04816")

scalars = st.integers(min_value=1, max_value=N - 1).map(lambda d: d.to_bytes(32, "big"))


def public(private: bytes) -> bytes:
    return p256.public_key_bytes(p256.load_private_key(private, "test key"))


def high_s(signature: bytes) -> bytes:
    """The other valid signature: (r, n - s)."""
    r, s = decode_signature(signature)
    return encode_signature(r, N - s)


# --- known answers ------------------------------------------------------------


def test_rfc6979_vectors() -> None:
    assert public(RFC_KEY) == RFC_PUBLIC
    assert sign(RFC_KEY, b"sample") == RFC_SAMPLE
    assert sign(RFC_KEY, b"test") == RFC_TEST
    verify(RFC_PUBLIC, b"sample", RFC_SAMPLE)
    verify(RFC_PUBLIC, b"test", RFC_TEST)


def test_high_s_is_accepted() -> None:
    # The RFC's "sample" signature is itself high-S; its low-S twin verifies too.
    assert decode_signature(RFC_SAMPLE)[1] > N // 2
    verify(RFC_PUBLIC, b"sample", high_s(RFC_SAMPLE))
    assert decode_signature(RFC_TEST)[1] < N // 2
    verify(RFC_PUBLIC, b"test", high_s(RFC_TEST))


def test_handshake_hash_is_signed_as_a_message() -> None:
    """The digest signed is SHA256(h): a verifier given SHA256(h) prehashed agrees."""
    signature = sign_handshake_hash(INSTANCE_KEY, HANDSHAKE_HASH)
    assert len(signature) == SIGNATURE_LENGTH
    r, s = decode_signature(signature)
    key = p256.load_public_key(public(INSTANCE_KEY), "test key")
    digest = hashlib.sha256(HANDSHAKE_HASH).digest()
    key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    verify_handshake_hash(public(INSTANCE_KEY), HANDSHAKE_HASH, signature)


def test_signing_is_deterministic() -> None:
    assert sign(INSTANCE_KEY, HANDSHAKE_HASH) == sign(INSTANCE_KEY, HANDSHAKE_HASH)
    assert sign(INSTANCE_KEY, HANDSHAKE_HASH) != sign(INSTANCE_KEY, HANDSHAKE_HASH[::-1])


def test_der_signatures_from_another_signer_verify() -> None:
    key = ec.derive_private_key(int.from_bytes(INSTANCE_KEY, "big"), ec.SECP256R1())
    der = key.sign(HANDSHAKE_HASH, ec.ECDSA(hashes.SHA256()))  # random nonce
    verify_handshake_hash(
        public(INSTANCE_KEY), HANDSHAKE_HASH, encode_signature(*decode_dss_signature(der))
    )


def test_short_r_and_s_are_left_padded() -> None:
    found = {"r": False, "s": False}
    for counter in range(4000):
        message = counter.to_bytes(4, "big")
        signature = sign(INSTANCE_KEY, message)
        assert len(signature) == SIGNATURE_LENGTH
        r, s = decode_signature(signature)
        for name, value in (("r", r), ("s", s)):
            if value < 1 << 248 and not found[name]:
                found[name] = True
                verify(public(INSTANCE_KEY), message, signature)
        if all(found.values()):
            break
    assert all(found.values())


def test_compressed_verifying_key_is_accepted() -> None:
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), RFC_PUBLIC)
    compressed = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    verify(compressed, b"test", RFC_TEST)
    verify(point, b"test", RFC_TEST)


# --- properties -----------------------------------------------------------------


@settings(deadline=None, max_examples=50)
@given(key=scalars, message=st.binary(max_size=200))
def test_sign_then_verify(key: bytes, message: bytes) -> None:
    signature = sign(key, message)
    assert len(signature) == SIGNATURE_LENGTH
    verify(public(key), message, signature)
    verify(public(key), message, high_s(signature))


@settings(deadline=None, max_examples=50)
@given(bit=st.integers(min_value=0, max_value=SIGNATURE_LENGTH * 8 - 1))
def test_any_flipped_bit_fails(bit: int) -> None:
    signature = bytearray(sign(INSTANCE_KEY, HANDSHAKE_HASH))
    signature[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        verify_handshake_hash(public(INSTANCE_KEY), HANDSHAKE_HASH, bytes(signature))


@settings(deadline=None, max_examples=30)
@given(key=scalars, other=scalars)
def test_wrong_key_fails(key: bytes, other: bytes) -> None:
    if key == other:
        return
    with pytest.raises(SignatureMismatchError, match="does not match"):
        verify_handshake_hash(
            public(other), HANDSHAKE_HASH, sign_handshake_hash(key, HANDSHAKE_HASH)
        )


def test_wrong_message_fails() -> None:
    with pytest.raises(SignatureMismatchError):
        verify(RFC_PUBLIC, b"test", RFC_SAMPLE)


# --- malformed signatures and keys ---------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 63, 65, 70, 72, 128])
def test_signature_length(length: int) -> None:
    with pytest.raises(MalformedSignatureError, match=f"is {length} bytes, expected 64"):
        verify(RFC_PUBLIC, b"test", (RFC_TEST * 3)[:length])


@pytest.mark.parametrize(
    ("r", "s", "name"),
    [(0, 1, "r"), (1, 0, "s"), (N, 1, "r"), (1, N, "s"), (2**256 - 1, 1, "r"), (1, N + 5, "s")],
)
def test_r_and_s_must_be_in_range(r: int, s: int, name: str) -> None:
    with pytest.raises(MalformedSignatureError, match=f"{name} is not in 1..n-1"):
        verify(RFC_PUBLIC, b"test", encode_signature(r, s))


def test_der_signature_is_not_raw() -> None:
    key = ec.derive_private_key(int.from_bytes(RFC_KEY, "big"), ec.SECP256R1())
    der = key.sign(b"test", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    assert len(der) != SIGNATURE_LENGTH
    with pytest.raises(MalformedSignatureError):
        verify(RFC_PUBLIC, b"test", der)


@pytest.mark.parametrize(
    "key", [b"", RFC_PUBLIC[:64], b"\x04" + bytes(64), RFC_PUBLIC[:33], b"\x05" + RFC_PUBLIC[1:33]]
)
def test_bad_verifying_keys(key: bytes) -> None:
    with pytest.raises(InvalidPublicKeyError, match="verifying public key"):
        verify(key, b"test", RFC_TEST)


@pytest.mark.parametrize("key", [bytes(32), N.to_bytes(32, "big"), RFC_KEY[:31]])
def test_bad_signing_keys(key: bytes) -> None:
    with pytest.raises(InvalidPrivateKeyError, match="signing private key"):
        sign(key, b"test")


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_handshake_hash_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=f"handshake hash is {size} bytes"):
        sign_handshake_hash(INSTANCE_KEY, bytes(size))
    with pytest.raises(ValueError, match=f"handshake hash is {size} bytes"):
        verify_handshake_hash(public(INSTANCE_KEY), bytes(size), RFC_TEST)


def test_errors_contain_no_key_material() -> None:
    texts = []
    for call in (
        lambda: verify(RFC_PUBLIC, b"test", RFC_SAMPLE),
        lambda: verify(RFC_PUBLIC, b"test", encode_signature(0, 1)),
        lambda: verify(RFC_PUBLIC[:64], b"test", RFC_TEST),
        lambda: sign(b"\xff" * 32, b"test"),
    ):
        with pytest.raises(CryptoError) as info:
            call()
        assert info.value.__cause__ is None
        assert info.value.__context__ is None
        texts.append(str(info.value))
    for text in texts:
        assert_no_key_material(text)


# --- with the handshake ------------------------------------------------------------


def test_the_tvs_checks_the_orchestrators_proof() -> None:
    """§7.1 step 4: the initiator signs its h; the responder verifies against its own h."""
    tvs_key, client_key = (7).to_bytes(32, "big"), (11).to_bytes(32, "big")
    initiator = HandshakeInitiator(public(tvs_key), client_key)
    response = respond(tvs_key, public(client_key), initiator.build_initial_message())
    result = initiator.process_response(response.message)
    proof = sign_handshake_hash(INSTANCE_KEY, result.handshake_hash)
    verify_handshake_hash(public(INSTANCE_KEY), response.result.handshake_hash, proof)
    # A proof from another session does not transfer.
    other = respond(
        tvs_key,
        public(client_key),
        HandshakeInitiator(public(tvs_key), client_key).build_initial_message(),
    )
    with pytest.raises(SignatureMismatchError):
        verify_handshake_hash(public(INSTANCE_KEY), other.result.handshake_hash, proof)
