"""Private-key wrapping (``hats_secret`` AES-256-GCM, 15-byte nonce): format and key order."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from hats.errors import HatsError
from hats.protocol.key_wrapping import (
    SECRET_AD,
    WRAPPING_KEY_LENGTH,
    WRAPPING_NONCE_LENGTH,
    WRAPPING_OVERHEAD,
    WRAPPING_TAG_LENGTH,
    KeyWrappingError,
    PrivateKeyWrappingKeys,
    UnwrapError,
    WrappedSecretTooShortError,
    WrappingKeyLengthError,
    unwrap_secret,
    unwrap_secret_with_key,
    wrap_secret,
)
from hats.protocol.secret_sharing import SecretTooLongError
from hats.protocol.shamir import ShamirSharing
from hats.protocol.xor import XorSharing

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
KEY_C = bytes(range(64, 96))
NONCE = bytes(range(15))


def fixed(data: bytes) -> Callable[[int], bytes]:
    def source(size: int) -> bytes:
        assert size == len(data)
        return data

    return source


# --- an independent AES-GCM (NIST SP 800-38D) for arbitrary nonce lengths ---------------------


def _gf_multiply(x: int, y: int) -> int:
    result = 0
    for bit in range(127, -1, -1):
        if (x >> bit) & 1:
            result ^= y
        y = (y >> 1) ^ (0xE1 << 120) if y & 1 else y >> 1
    return result


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for offset in range(0, len(data), 16):
        y = _gf_multiply(y ^ int.from_bytes(data[offset : offset + 16], "big"), h)
    return y


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def oracle_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """ciphertext || tag, from AES-ECB and the GCM definition (no AEAD library)."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = int.from_bytes(ecb.update(bytes(16)), "big")
    if len(nonce) == 12:
        j0 = nonce + b"\x00\x00\x00\x01"
    else:
        j0 = _ghash(h, _pad(nonce) + (8 * len(nonce)).to_bytes(16, "big")).to_bytes(16, "big")
    counter = int.from_bytes(j0, "big")
    ciphertext = b""
    for offset in range(0, len(plaintext), 16):
        counter = (counter & ~0xFFFFFFFF) | ((counter + 1) & 0xFFFFFFFF)
        stream = ecb.update(counter.to_bytes(16, "big"))
        ciphertext += bytes(
            a ^ b for a, b in zip(plaintext[offset : offset + 16], stream, strict=False)
        )
    lengths = (8 * len(ad)).to_bytes(8, "big") + (8 * len(ciphertext)).to_bytes(8, "big")
    s = _ghash(h, _pad(ad) + _pad(ciphertext) + lengths).to_bytes(16, "big")
    tag = bytes(a ^ b for a, b in zip(ecb.update(j0), s, strict=True))
    return ciphertext + tag


# McGrew & Viega, "The Galois/Counter Mode of Operation", AES-256 test cases 16 (96-bit IV)
# and 18 (60-byte IV), ciphertext || tag.
GCM_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
GCM_PLAINTEXT = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_AD = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_VECTORS = [
    (
        "cafebabefacedbaddecaf888",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
    (
        "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
        "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
        "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf4"
        "0fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f"
        "a44a8266ee1c8eb0c8b5d4cf5ae9f19a",
    ),
]


@pytest.mark.parametrize(("nonce", "expected"), GCM_VECTORS)
def test_oracle_and_library_match_published_gcm_vectors(nonce: str, expected: str) -> None:
    iv = bytes.fromhex(nonce)
    assert oracle_gcm_encrypt(GCM_KEY, iv, GCM_PLAINTEXT, GCM_AD).hex() == expected
    assert AESGCM(GCM_KEY).encrypt(iv, GCM_PLAINTEXT, GCM_AD).hex() == expected


# --- the hats_secret format --------------------------------------------------------------------

# wrap_secret(KEY_A, b"secret") with the nonce 000102…0e, checked against the oracle below.
WRAPPED_SECRET_KAT = bytes.fromhex(
    "000102030405060708090a0b0c0d0e" + "e61c5685a2b5" + "ec06defd4d052244b0ca4b9d1c5f5454"
)


def test_constants() -> None:
    assert SECRET_AD == b"hats_secret"
    assert (WRAPPING_KEY_LENGTH, WRAPPING_NONCE_LENGTH, WRAPPING_TAG_LENGTH) == (32, 15, 16)
    assert WRAPPING_OVERHEAD == 31


def test_known_answer() -> None:
    expected = NONCE + oracle_gcm_encrypt(KEY_A, NONCE, b"secret", b"hats_secret")
    assert expected == WRAPPED_SECRET_KAT
    assert wrap_secret(KEY_A, b"secret", rng=fixed(NONCE)) == WRAPPED_SECRET_KAT
    assert unwrap_secret(PrivateKeyWrappingKeys(KEY_A), WRAPPED_SECRET_KAT) == b"secret"


@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=15, max_size=15),
    secret=st.binary(max_size=100),
)
def test_format_matches_the_oracle(key: bytes, nonce: bytes, secret: bytes) -> None:
    wrapped = wrap_secret(key, secret, rng=fixed(nonce))
    assert wrapped == nonce + oracle_gcm_encrypt(key, nonce, secret, b"hats_secret")
    assert len(wrapped) == len(secret) + 31
    assert unwrap_secret(PrivateKeyWrappingKeys(key), wrapped) == secret


def test_fresh_nonce_by_default() -> None:
    first = wrap_secret(KEY_A, b"secret")
    second = wrap_secret(KEY_A, b"secret")
    assert first[:15] != second[:15]
    keys = PrivateKeyWrappingKeys(KEY_A)
    assert unwrap_secret(keys, first) == unwrap_secret(keys, second) == b"secret"


def test_empty_secret() -> None:
    wrapped = wrap_secret(KEY_A, b"")
    assert len(wrapped) == 31
    assert unwrap_secret(PrivateKeyWrappingKeys(KEY_A), wrapped) == b""


# --- key order: primary, then active -----------------------------------------------------------


def test_primary_then_active_in_order() -> None:
    keys = PrivateKeyWrappingKeys(KEY_A, [KEY_B, KEY_C])
    assert keys.candidates == (KEY_A, KEY_B, KEY_C)
    for number, key in enumerate((KEY_A, KEY_B, KEY_C)):
        wrapped = wrap_secret(key, b"k" * 32)
        assert unwrap_secret_with_key(keys, wrapped) == (number, b"k" * 32)
        assert unwrap_secret(keys, wrapped) == b"k" * 32


def test_primary_wins_over_an_identical_active_key() -> None:
    keys = PrivateKeyWrappingKeys(KEY_A, [KEY_B, KEY_A])
    assert unwrap_secret_with_key(keys, wrap_secret(KEY_A, b"x"))[0] == 0


def test_no_key_fits() -> None:
    wrapped = wrap_secret(KEY_C, b"k" * 32)
    with pytest.raises(UnwrapError, match="tried the primary key\\)"):
        unwrap_secret(PrivateKeyWrappingKeys(KEY_A), wrapped)
    with pytest.raises(UnwrapError, match="tried the primary key and 1 active key\\)"):
        unwrap_secret(PrivateKeyWrappingKeys(KEY_A, [KEY_B]), wrapped)
    with pytest.raises(UnwrapError, match="and 2 active keys") as info:
        unwrap_secret(PrivateKeyWrappingKeys(KEY_A, [KEY_B, KEY_B]), wrapped)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


@given(
    secret=st.binary(max_size=64),
    offset=st.integers(0, 200),
    mask=st.integers(1, 255),
)
def test_any_corruption_is_detected(secret: bytes, offset: int, mask: int) -> None:
    wrapped = bytearray(wrap_secret(KEY_A, secret))
    wrapped[offset % len(wrapped)] ^= mask
    with pytest.raises(UnwrapError):
        unwrap_secret(PrivateKeyWrappingKeys(KEY_A, [KEY_B]), bytes(wrapped))


def test_truncated_and_extended_blobs_fail() -> None:
    wrapped = wrap_secret(KEY_A, b"secret")
    keys = PrivateKeyWrappingKeys(KEY_A)
    with pytest.raises(UnwrapError):
        unwrap_secret(keys, wrapped[:-1])
    with pytest.raises(UnwrapError):
        unwrap_secret(keys, wrapped + b"\x00")


def test_other_formats_are_not_accepted() -> None:
    keys = PrivateKeyWrappingKeys(KEY_A)
    # another associated data
    other_ad = NONCE + AESGCM(KEY_A).encrypt(NONCE, b"secret", b"other")
    # the key-gen tool's --wrap format: 12 zero-byte nonce, AAD of 16 zero bytes
    key_gen = bytes(12) + AESGCM(KEY_A).encrypt(bytes(12), b"s" * 32, bytes(16))
    # a 12-byte nonce with the right associated data
    short_nonce = NONCE[:12] + AESGCM(KEY_A).encrypt(NONCE[:12], b"s" * 32, SECRET_AD)
    for blob in (other_ad, key_gen, short_nonce):
        with pytest.raises(UnwrapError):
            unwrap_secret(keys, blob)


@pytest.mark.parametrize("size", [0, 1, 30])
def test_too_short(size: int) -> None:
    with pytest.raises(WrappedSecretTooShortError, match=f"is {size} bytes, shorter than"):
        unwrap_secret(PrivateKeyWrappingKeys(KEY_A), bytes(size))


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_key_lengths(size: int) -> None:
    key = b"\x5a" * size
    with pytest.raises(WrappingKeyLengthError, match=f"the primary wrapping key is {size} bytes"):
        PrivateKeyWrappingKeys(key)
    with pytest.raises(WrappingKeyLengthError, match=f"active wrapping key 2 is {size} bytes"):
        PrivateKeyWrappingKeys(KEY_A, [KEY_B, key])
    with pytest.raises(WrappingKeyLengthError, match=f"the wrapping key is {size} bytes") as info:
        wrap_secret(key, b"secret")
    assert "5a5a" not in str(info.value)


def test_keys_value_semantics_and_repr() -> None:
    keys = PrivateKeyWrappingKeys(KEY_A, (KEY_B, KEY_C))
    assert keys.primary == KEY_A
    assert keys.active == (KEY_B, KEY_C)
    assert keys == PrivateKeyWrappingKeys(bytearray(KEY_A), [KEY_B, KEY_C])  # type: ignore[arg-type]
    assert keys != PrivateKeyWrappingKeys(KEY_A, [KEY_C, KEY_B])
    assert hash(keys) == hash(PrivateKeyWrappingKeys(KEY_A, [KEY_B, KEY_C]))
    assert repr(keys) == "PrivateKeyWrappingKeys(primary=<hidden>, active=<2 keys>)"
    assert KEY_A.hex() not in repr(keys) and str(KEY_A) not in repr(keys)


def test_errors_are_hats_errors() -> None:
    for kind in (WrappingKeyLengthError, WrappedSecretTooShortError, UnwrapError):
        assert issubclass(kind, KeyWrappingError)
    assert issubclass(KeyWrappingError, HatsError)


# --- with secret sharing -----------------------------------------------------------------------


def test_wrapped_key_travels_in_xor_shares_only() -> None:
    """A wrapped 32-byte key is 63 bytes: XOR carries it, Shamir (at most 60) refuses it."""
    private_key = random.Random(1).randbytes(32)
    wrapped = wrap_secret(KEY_B, private_key)
    assert len(wrapped) == 63
    with pytest.raises(SecretTooLongError):
        ShamirSharing(3, 2).split(wrapped)
    shares = XorSharing(2).split(wrapped)
    keys = PrivateKeyWrappingKeys(KEY_A, [KEY_B])
    assert unwrap_secret_with_key(keys, XorSharing(2).recover(shares)) == (1, private_key)
