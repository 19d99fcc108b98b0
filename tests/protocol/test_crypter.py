"""The post-handshake Crypter (spec wire-protocol §4.6, §4.9 (b))."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.protocol.channel_errors import (
    CrypterCounterExhaustedError,
    CrypterDecryptionError,
    CrypterError,
    CrypterPaddingError,
    PlaintextTooLongError,
)
from hats.protocol.crypter import (
    MAX_COUNTER,
    MAX_PLAINTEXT_LENGTH,
    Crypter,
    pad,
    transport_nonce,
    unpad,
)
from suite_support import assert_no_key_material

K1 = bytes.fromhex("5fa8443271ab13e9786dc081400405ede03b87edfe78076364324ada3840e969")
K2 = bytes.fromhex("4f47d795fb9447d5081d64ef8e5943fdd4c0d54a0a9f8e819338794d5c566b16")
HELLO = bytes.fromhex(
    "63a8c5827008818b34c04edddee79b0268a79f96cedb0acd308e1a0aa03ec413"
    "7d13f747ae8edf35f688bcbc53a09c89"
)


def pair() -> tuple[Crypter, Crypter]:
    """(initiator, responder) Crypters on the §4.9 (b) keys."""
    return Crypter(read_key=K2, write_key=K1), Crypter(read_key=K1, write_key=K2)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def seal(key: bytes, counter: int, padded: bytes) -> bytes:
    """A transport message sealed by hand: what any peer holding the key could send."""
    return AESGCM(key).encrypt(transport_nonce(counter), padded, b"")


# --- vectors and layout ---------------------------------------------------------


def test_vector_b_hello() -> None:
    initiator, responder = pair()
    assert initiator.encrypt(b"hello") == HELLO
    assert responder.decrypt(HELLO) == b"hello"


def test_empty_plaintext_is_48_bytes() -> None:
    initiator, responder = pair()
    ciphertext = initiator.encrypt(b"")
    assert len(ciphertext) == 48
    assert responder.decrypt(ciphertext) == b""


@pytest.mark.parametrize("size", [*range(0, 70), 95, 96, 97, 1000, 4095, 4096])
def test_ciphertext_length(size: int) -> None:
    initiator, _ = pair()
    padded = -(-(size + 1) // 32) * 32  # roundup(size + 1, 32)
    assert len(initiator.encrypt(bytes(size))) == padded + 16


def test_padding_layout() -> None:
    assert pad(b"hello") == b"hello" + bytes(26) + bytes([26])
    assert pad(b"") == bytes(31) + b"\x1f"
    assert pad(b"x" * 31) == b"x" * 31 + b"\x00"
    assert pad(b"x" * 32) == b"x" * 32 + bytes(31) + b"\x1f"
    assert unpad(pad(b"hello")) == b"hello"


def test_nonce_puts_the_counter_last() -> None:
    assert transport_nonce(0) == bytes(12)
    assert transport_nonce(1) == bytes(8) + b"\x00\x00\x00\x01"
    assert transport_nonce(MAX_COUNTER) == bytes(8) + b"\x01\x00\x00\x00"


def test_messages_use_consecutive_counters() -> None:
    initiator, _ = pair()
    for counter in range(3):
        message = f"message {counter}".encode()
        assert initiator.encrypt(message) == seal(K1, counter, pad(message))
    assert initiator.write_counter == 3
    # A message sealed with the handshake's nonce layout (counter first) does not open.
    handshake_style = AESGCM(K1).encrypt(b"\x00\x00\x00\x01" + bytes(8), pad(b"m"), b"")
    _, responder = pair()
    assert responder.decrypt(seal(K1, 0, pad(b"m"))) == b"m"
    with pytest.raises(CrypterDecryptionError):
        responder.decrypt(handshake_style)


# --- round trips --------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.binary(max_size=2048), min_size=1, max_size=8))
def test_round_trips_in_both_directions(messages: list[bytes]) -> None:
    initiator, responder = pair()
    for message in messages:
        assert responder.decrypt(initiator.encrypt(message)) == message
        assert initiator.decrypt(responder.encrypt(message[::-1])) == message[::-1]
    assert initiator.write_counter == initiator.read_counter == len(messages)
    assert responder.write_counter == responder.read_counter == len(messages)


@settings(deadline=None, max_examples=20)
@given(st.integers(min_value=0, max_value=1 << 20))
def test_round_trips_any_size(size: int) -> None:
    initiator, responder = pair()
    message = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    assert responder.decrypt(initiator.encrypt(message)) == message


def test_round_trip_at_the_plaintext_limit() -> None:
    initiator, responder = pair()
    message = b"\x5a" * MAX_PLAINTEXT_LENGTH
    ciphertext = initiator.encrypt(message)
    assert len(ciphertext) == MAX_PLAINTEXT_LENGTH + 32 + 16
    assert responder.decrypt(ciphertext) == message


def test_plaintext_over_the_limit_is_refused() -> None:
    initiator, _ = pair()
    with pytest.raises(PlaintextTooLongError, match="268435457 bytes exceeds the limit"):
        initiator.encrypt(bytes(MAX_PLAINTEXT_LENGTH + 1))
    assert initiator.write_counter == 0


# --- counter limit ------------------------------------------------------------


def test_write_counter_limit() -> None:
    initiator, responder = pair()
    initiator._write_counter = MAX_COUNTER  # reaching it honestly takes 2**24 messages
    ciphertext = initiator.encrypt(b"last")
    assert ciphertext == seal(K1, MAX_COUNTER, pad(b"last"))
    assert initiator.write_counter == MAX_COUNTER + 1
    with pytest.raises(CrypterCounterExhaustedError, match="write counter has passed its limit"):
        initiator.encrypt(b"one too many")
    assert initiator.write_counter == MAX_COUNTER + 1
    responder._read_counter = MAX_COUNTER
    assert responder.decrypt(ciphertext) == b"last"
    with pytest.raises(CrypterCounterExhaustedError, match="read counter has passed its limit"):
        responder.decrypt(ciphertext)
    assert responder.read_counter == MAX_COUNTER + 1


# --- failures -------------------------------------------------------------------


@settings(deadline=None)
@given(st.data())
def test_any_flipped_bit_fails(data: st.DataObject) -> None:
    initiator, responder = pair()
    message = data.draw(st.binary(max_size=100))
    ciphertext = initiator.encrypt(message)
    bit = data.draw(st.integers(min_value=0, max_value=len(ciphertext) * 8 - 1))
    with pytest.raises(CrypterDecryptionError, match="transport message #0"):
        responder.decrypt(flip(ciphertext, bit))


@pytest.mark.parametrize("length", [0, 1, 15, 16, 47])
def test_truncated_ciphertext_fails(length: int) -> None:
    initiator, responder = pair()
    with pytest.raises(CrypterDecryptionError):
        responder.decrypt(initiator.encrypt(b"hello")[:length])


def test_replay_and_reordering_fail() -> None:
    initiator, responder = pair()
    first, second = initiator.encrypt(b"one"), initiator.encrypt(b"two")
    with pytest.raises(CrypterDecryptionError):
        responder.decrypt(second)
    # The failed attempt used up counter 0: the session cannot recover.
    assert responder.read_counter == 1
    with pytest.raises(CrypterDecryptionError):
        responder.decrypt(first)
    _, fresh = pair()
    assert fresh.decrypt(first) == b"one"
    with pytest.raises(CrypterDecryptionError):
        fresh.decrypt(first)


def test_own_messages_do_not_open() -> None:
    initiator, _ = pair()
    with pytest.raises(CrypterDecryptionError):
        initiator.decrypt(initiator.encrypt(b"to myself"))


def test_padding_bytes_are_not_checked() -> None:
    # Like the reference: only the last byte matters.
    _, responder = pair()
    assert responder.decrypt(seal(K1, 0, b"hi" + b"\xff" * 29 + bytes([29]))) == b"hi"


def test_payload_need_not_be_a_multiple_of_32() -> None:
    _, responder = pair()
    assert responder.decrypt(seal(K1, 0, b"abc" + b"\x00")) == b"abc"
    _, responder = pair()
    assert responder.decrypt(seal(K1, 0, b"abc" + b"\x7f\x02")) == b"ab"


def test_empty_payload_is_refused() -> None:
    _, responder = pair()
    with pytest.raises(CrypterPaddingError, match="empty"):
        responder.decrypt(seal(K1, 0, b""))


@pytest.mark.parametrize("padded", [b"\x01", b"\x05" * 5, b"a" * 31 + b"\x20", b"\xff" * 200])
def test_padding_longer_than_the_payload_is_refused(padded: bytes) -> None:
    _, responder = pair()
    with pytest.raises(CrypterPaddingError, match="does not fit"):
        responder.decrypt(seal(K1, 0, padded))


def test_largest_valid_padding_byte() -> None:
    _, responder = pair()
    assert responder.decrypt(seal(K1, 0, b"\x00" * 5 + b"\x05")) == b""


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_keys_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=f"expected 32 bytes, got {size}"):
        Crypter(read_key=bytes(size), write_key=K1)
    with pytest.raises(ValueError, match=f"expected 32 bytes, got {size}"):
        Crypter(read_key=K1, write_key=bytes(size))


def test_errors_and_repr_contain_no_key_material() -> None:
    initiator, responder = pair()
    texts = [repr(initiator)]
    for call in (
        lambda: responder.decrypt(b"\x00" * 48),
        lambda: Crypter(read_key=K2, write_key=K1).decrypt(seal(K2, 0, b"")),
        lambda: initiator.encrypt(bytes(MAX_PLAINTEXT_LENGTH + 1)),
    ):
        with pytest.raises(CrypterError) as info:
            call()
        assert info.value.__cause__ is None
        assert info.value.__context__ is None
        texts.append(str(info.value))
    assert texts[0] == "Crypter(read_counter=0, write_counter=0)"
    for text in texts:
        assert_no_key_material(text)
