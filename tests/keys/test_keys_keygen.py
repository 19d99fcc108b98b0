"""hats.keys.keygen: key pairs, range checks, and never echoing private keys."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.errors import HatsError
from hats.keys.keygen import (
    P256_ORDER,
    PrivateKeyError,
    generate_key_pair,
    insecure_key_label,
    private_key_from_hex,
    public_key_from_private,
    small_multiple,
)

G1_HEX = (
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)


def test_generated_pair_is_consistent() -> None:
    private, public = generate_key_pair()
    assert len(private) == 32 and len(public) == 65 and public[0] == 4
    assert 1 <= int.from_bytes(private, "big") < P256_ORDER
    assert public_key_from_private(private) == public
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)


def test_generated_pairs_differ() -> None:
    assert generate_key_pair()[0] != generate_key_pair()[0]


def test_one_is_the_generator() -> None:
    assert public_key_from_private((1).to_bytes(32, "big")).hex() == G1_HEX


def test_order_matches_cryptography() -> None:
    # n·G is the point at infinity: n-1 is valid and (n-1)·G = -G.
    minus_g = public_key_from_private((P256_ORDER - 1).to_bytes(32, "big"))
    g = bytes.fromhex(G1_HEX)
    assert minus_g[:33] == g[:33] and minus_g[33:] != g[33:]


@pytest.mark.parametrize(
    ("private", "fragment"),
    [
        (bytes(32), "out of range"),
        (P256_ORDER.to_bytes(32, "big"), "out of range"),
        (b"\xff" * 32, "out of range"),
        (b"\x01" * 31, "must be 32 bytes, got 31"),
        (b"\x01" * 33, "must be 32 bytes, got 33"),
    ],
)
def test_bad_private_keys(private: bytes, fragment: str) -> None:
    with pytest.raises(PrivateKeyError) as info:
        public_key_from_private(private)
    assert fragment in str(info.value)
    assert isinstance(info.value, HatsError)
    assert private.hex() not in str(info.value)


def test_private_key_from_hex() -> None:
    text = "00" * 31 + "02"
    assert private_key_from_hex(f"  {text}\n") == bytes.fromhex(text)
    assert private_key_from_hex("0x" + text.upper()) == bytes.fromhex(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("zz" * 32, "not hex"),
        ("12" * 31, "64 hex digits, got 62"),
        ("00" * 32, "out of range"),
        ("ab" * 20 + " " + "ab" * 12, "not hex"),
    ],
)
def test_bad_private_key_hex(text: str, fragment: str) -> None:
    with pytest.raises(PrivateKeyError) as info:
        private_key_from_hex(text)
    assert fragment in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFxXg \t\n", max_size=80))
def test_private_key_text_is_never_echoed(text: str) -> None:
    try:
        private_key_from_hex(text)
    except PrivateKeyError as exc:
        message = str(exc)
        assert not re.search(r"[0-9a-fA-F]{8,}", message), message
        stripped = text.strip()
        if len(stripped) >= 8:
            assert stripped not in message


def test_small_multiples_and_labels() -> None:
    for k in (1, 2, 3):
        public = public_key_from_private(k.to_bytes(32, "big"))
        assert small_multiple(public) == k
        assert insecure_key_label(public) == f"test key {k}·G"
        assert insecure_key_label(public, "*") == f"test key {k}*G"
    four = public_key_from_private((4).to_bytes(32, "big"))
    assert small_multiple(four) is None
    assert insecure_key_label(four) is None
    assert insecure_key_label(generate_key_pair()[1]) is None
