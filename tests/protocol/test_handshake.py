"""The TVS handshake (spec wire-protocol §4.1-4.5, §4.8, §4.9, §8.4, §8.6)."""

from __future__ import annotations

import hashlib
import hmac
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.errors import HatsError, LocalProtocolError
from hats.protocol import p256
from hats.protocol.channel_errors import (
    ChannelError,
    HandshakeDecryptionError,
    HandshakeError,
    HandshakeMessageError,
    HandshakeStateError,
)
from hats.protocol.crypto_errors import CryptoError, InvalidPrivateKeyError, InvalidPublicKeyError
from hats.protocol.handshake import (
    HANDSHAKE_MESSAGE_LENGTH,
    PROTOCOL_NAME,
    HandshakeInitiator,
    HandshakeResult,
    Role,
    SymmetricState,
    handshake_nonce,
    hkdf2,
    respond,
)
from suite_support import assert_no_key_material

N = p256.CURVE_ORDER

# --- §4.9 (b): the conformance transcript -----------------------------------

S_R = bytes.fromhex(
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)
s_R = (1).to_bytes(32, "big")
s_I = bytes.fromhex("f1af8f26497c24e3944709baccd6b6f4c9326fd902317189f4b2c4adfe2e6af9")
S_I = bytes.fromhex(
    "04a99c16a302716404b075086c8c125ea93d0822330f8a46675c8f7e5760478024"
    "811211845d43e6addae5280660ba3b5ba0f78834b79ec9449b626a725728b76d"
)
E_I_PRIVATE = b"\x11" * 32
E_R_PRIVATE = b"\x22" * 32
MSG1 = bytes.fromhex(
    "040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed"
    "194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794"
    "1717569b08e1b576779c74bb23175589"
)
MSG2 = bytes.fromhex(
    "04d65a93977caa3d1b081852ff57a79e465f1660577304baead505dd3a48589cf3"
    "50185e895372df6221ea3a137557e473fddb6755f05bd507c3c533fce9c91285"
    "816e05e4e138dcaca13a1e3e53b2448c"
)
H = bytes.fromhex("4daebbd62aa019e293815b8f23e3b2b4a83f4bd62ae068a9506b21b9d3e04816")
K1 = bytes.fromhex("5fa8443271ab13e9786dc081400405ede03b87edfe78076364324ada3840e969")
K2 = bytes.fromhex("4f47d795fb9447d5081d64ef8e5943fdd4c0d54a0a9f8e819338794d5c566b16")
HELLO = bytes.fromhex(
    "63a8c5827008818b34c04edddee79b0268a79f96cedb0acd308e1a0aa03ec413"
    "7d13f747ae8edf35f688bcbc53a09c89"
)

scalars = st.integers(min_value=1, max_value=N - 1).map(lambda d: d.to_bytes(32, "big"))
FAST = settings(deadline=None, max_examples=50)


def public(private: bytes) -> bytes:
    return p256.public_key_bytes(p256.load_private_key(private, "test key"))


def vector_initiator() -> HandshakeInitiator:
    return HandshakeInitiator(S_R, s_I, ephemeral_private_key=E_I_PRIVATE)


def handshake(
    s_i: bytes, s_r: bytes, e_i: bytes | None = None, e_r: bytes | None = None
) -> tuple[HandshakeResult, HandshakeResult]:
    initiator = HandshakeInitiator(public(s_r), s_i, ephemeral_private_key=e_i)
    response = respond(
        s_r, public(s_i), initiator.build_initial_message(), ephemeral_private_key=e_r
    )
    return initiator.process_response(response.message), response.result


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- §4.9 (a): symmetric-state primitives ------------------------------------


def test_vector_a_mix_hash() -> None:
    state = SymmetricState(b"Noise_NK_P256_AESGCM_SHA256")
    state.mix_hash(b"mixHash")
    assert state.handshake_hash.hex() == (
        "04d999779401b40a318f8729c99bec79cc15ec375f4a0bb3de1a00965b61d666"
    )


def test_vector_a_encrypt_and_hash() -> None:
    # From a freshly initialised state (not continuing the MixHash vector).
    state = SymmetricState(b"Noise_NK_P256_AESGCM_SHA256")
    state.mix_key(b"encryptAndHash")
    ciphertext = state.encrypt_and_hash(b"plaintext")
    assert ciphertext.hex() == "fdf1564256dcee03b5babe81df599ec4273c95e4269d747764"
    assert state.handshake_hash.hex() == (
        "1cf5b0af5f3365d715e9137382a5fd139a56e25bea8ecdbf3018f42af7432a75"
    )
    # And the other side opens it with the same state.
    peer = SymmetricState(b"Noise_NK_P256_AESGCM_SHA256")
    peer.mix_key(b"encryptAndHash")
    assert peer.decrypt_and_hash(ciphertext) == b"plaintext"
    assert peer.handshake_hash == state.handshake_hash


def test_initial_state_is_the_padded_name_not_its_hash() -> None:
    state = SymmetricState()
    assert state.handshake_hash == PROTOCOL_NAME + bytes(5)
    assert len(PROTOCOL_NAME) == 27


def test_protocol_name_longer_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 32"):
        SymmetricState(b"N" * 33)


def test_hkdf2_is_the_noise_hmac_hkdf() -> None:
    # Independent model: Noise's HKDF(ck, ikm) with HMAC-SHA256.
    ck, ikm = bytes(range(32)), b"input key material"
    temp = hmac.digest(ck, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    assert hkdf2(ck, ikm) == (out1, out2)
    temp = hmac.digest(ck, b"", "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    assert hkdf2(ck, b"")[0] == out1


def test_handshake_nonce_puts_the_counter_first() -> None:
    assert handshake_nonce(0) == bytes(12)
    assert handshake_nonce(1) == b"\x00\x00\x00\x01" + bytes(8)
    assert handshake_nonce(0x01020304) == b"\x01\x02\x03\x04" + bytes(8)


# --- §4.9 (b): the full transcript, byte for byte ----------------------------


def test_vector_b_static_keys() -> None:
    assert public(s_R) == S_R
    assert public(s_I) == S_I
    initiator = vector_initiator()
    assert initiator.initiator_static_public_key == S_I
    assert initiator.responder_static_public_key == S_R


def test_vector_b_message1() -> None:
    assert vector_initiator().build_initial_message() == MSG1


def test_vector_b_responder() -> None:
    response = respond(s_R, S_I, MSG1, ephemeral_private_key=E_R_PRIVATE)
    assert response.message == MSG2
    assert response.result.role is Role.RESPONDER
    assert response.result.handshake_hash == H
    assert response.result.keys.initiator_to_responder == K1
    assert response.result.keys.responder_to_initiator == K2


def test_vector_b_initiator() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    result = initiator.process_response(MSG2)
    assert result.role is Role.INITIATOR
    assert result.handshake_hash == H
    assert result.keys.initiator_to_responder == K1
    assert result.keys.responder_to_initiator == K2


def test_vector_b_transport_message() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    result = initiator.process_response(MSG2)
    assert result.crypter.encrypt(b"hello") == HELLO
    responder = respond(s_R, S_I, MSG1, ephemeral_private_key=E_R_PRIVATE).result
    assert responder.crypter.decrypt(HELLO) == b"hello"


def test_vector_b_with_key_objects() -> None:
    def key(private: bytes) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())

    initiator = HandshakeInitiator(
        key(s_R).public_key(), key(s_I), ephemeral_private_key=key(E_I_PRIVATE)
    )
    assert initiator.build_initial_message() == MSG1
    response = respond(
        key(s_R), key(s_I).public_key(), MSG1, ephemeral_private_key=key(E_R_PRIVATE)
    )
    assert response.message == MSG2
    assert initiator.process_response(MSG2).handshake_hash == H


def test_vector_b_matches_an_independent_model() -> None:
    """Message 1 rebuilt from §4.2-4.3 with stdlib hashing and a hand-written HKDF."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def hkdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        prk = hmac.digest(ck, ikm, "sha256")
        t1 = hmac.digest(prk, b"\x01", "sha256")
        return t1, hmac.digest(prk, t1 + b"\x02", "sha256")

    e_i = ec.derive_private_key(int.from_bytes(E_I_PRIVATE, "big"), ec.SECP256R1())
    e_pub = p256.public_key_bytes(e_i)
    ck = h = PROTOCOL_NAME.ljust(32, b"\x00")
    for data in (S_R + S_I, S_R + S_I, e_pub):
        h = hashlib.sha256(h + data).digest()
    s_r_point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), S_R)
    for ikm in (e_pub, e_i.exchange(ec.ECDH(), s_r_point), hashlib.sha256(S_I + S_R).digest()):
        ck, k = hkdf(ck, ikm)
    tag = AESGCM(k).encrypt(bytes(12), b"", h)
    assert e_pub + tag == MSG1


# --- properties ---------------------------------------------------------------


@FAST
@given(s_i=scalars, s_r=scalars, e_i=scalars, e_r=scalars)
def test_both_sides_agree(s_i: bytes, s_r: bytes, e_i: bytes, e_r: bytes) -> None:
    initiator, responder = handshake(s_i, s_r, e_i, e_r)
    assert initiator.handshake_hash == responder.handshake_hash
    assert len(initiator.handshake_hash) == 32
    assert initiator.keys.initiator_to_responder == responder.keys.initiator_to_responder
    assert initiator.keys.responder_to_initiator == responder.keys.responder_to_initiator
    assert initiator.keys.initiator_to_responder != initiator.keys.responder_to_initiator
    assert responder.crypter.decrypt(initiator.crypter.encrypt(b"request")) == b"request"
    assert initiator.crypter.decrypt(responder.crypter.encrypt(b"response")) == b"response"


def test_fresh_ephemerals_by_default() -> None:
    first = HandshakeInitiator(S_R, s_I).build_initial_message()
    second = HandshakeInitiator(S_R, s_I).build_initial_message()
    assert first != second
    assert len(first) == len(second) == HANDSHAKE_MESSAGE_LENGTH
    one = respond(s_R, S_I, first)
    two = respond(s_R, S_I, first)
    assert one.message != two.message
    assert one.result.handshake_hash != two.result.handshake_hash


@FAST
@given(bit=st.integers(min_value=0, max_value=HANDSHAKE_MESSAGE_LENGTH * 8 - 1))
def test_any_flipped_bit_in_message1_fails(bit: int) -> None:
    with pytest.raises((HandshakeMessageError, HandshakeDecryptionError)):
        respond(s_R, S_I, flip(MSG1, bit), ephemeral_private_key=E_R_PRIVATE)


@FAST
@given(bit=st.integers(min_value=0, max_value=HANDSHAKE_MESSAGE_LENGTH * 8 - 1))
def test_any_flipped_bit_in_message2_fails(bit: int) -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    with pytest.raises((HandshakeMessageError, HandshakeDecryptionError)):
        initiator.process_response(flip(MSG2, bit))


@FAST
@given(s_i=scalars, s_r=scalars, wrong=scalars)
def test_initiator_with_the_wrong_responder_key_fails(s_i: bytes, s_r: bytes, wrong: bytes) -> None:
    if wrong == s_r:
        return
    initiator = HandshakeInitiator(public(wrong), s_i)
    with pytest.raises(HandshakeDecryptionError):
        respond(s_r, public(s_i), initiator.build_initial_message())


@FAST
@given(s_i=scalars, s_r=scalars, wrong=scalars)
def test_responder_expecting_another_initiator_fails(s_i: bytes, s_r: bytes, wrong: bytes) -> None:
    if wrong == s_i:
        return
    initiator = HandshakeInitiator(public(s_r), s_i)
    with pytest.raises(HandshakeDecryptionError):
        respond(s_r, public(wrong), initiator.build_initial_message())


@FAST
@given(s_i=scalars, s_r=scalars, wrong=scalars)
def test_responder_with_the_wrong_private_key_fails(s_i: bytes, s_r: bytes, wrong: bytes) -> None:
    if wrong == s_r:
        return
    initiator = HandshakeInitiator(public(s_r), s_i)
    with pytest.raises(HandshakeDecryptionError):
        respond(wrong, public(s_i), initiator.build_initial_message())


def test_message1_is_not_authenticated_by_the_initiator_static_key() -> None:
    """§4.8.3 / §8.4: anyone who knows S_i can get message 2, but not the session keys."""
    attacker_key = (12345).to_bytes(32, "big")
    forger = HandshakeInitiator(S_R, attacker_key, ephemeral_private_key=E_I_PRIVATE)
    forger._initiator_static_bytes = S_I  # claim the victim's public key in the prologue
    message1 = forger.build_initial_message()
    response = respond(s_R, S_I, message1)  # accepted: no DH with s_i in message 1
    with pytest.raises(HandshakeDecryptionError):
        forger.process_response(response.message)  # DH(s_i, S_r) is missing


# --- malformed messages (§8.6: the reference panics on some) -----------------

BAD_LENGTHS = [0, 1, 64, 65, 66, 80, 82, 97, 162]


@pytest.mark.parametrize("length", BAD_LENGTHS)
def test_message1_of_wrong_length(length: int) -> None:
    message = (MSG1 * 2)[:length]
    with pytest.raises(HandshakeMessageError, match=f"message 1 is {length} bytes, expected 81"):
        respond(s_R, S_I, message)


@pytest.mark.parametrize("length", BAD_LENGTHS)
def test_message2_of_wrong_length(length: int) -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    with pytest.raises(HandshakeMessageError, match=f"message 2 is {length} bytes, expected 81"):
        initiator.process_response((MSG2 * 2)[:length])


@pytest.mark.parametrize(
    "point",
    [
        b"\x04" + bytes(64),  # not on the curve
        b"\x04" + S_R[1:33] + bytes(32),  # X of a point, wrong Y
        b"\x05" + S_R[1:],  # bad prefix
        b"\x06" + S_R[1:],  # hybrid form is not accepted
        S_R[:33] + bytes(32),  # compressed point padded to 65 bytes
    ],
    ids=["zeros", "wrong-y", "prefix-05", "hybrid-06", "compressed-padded"],
)
def test_ephemeral_not_a_point(point: bytes) -> None:
    with pytest.raises(HandshakeMessageError, match="message 1: its ephemeral public key"):
        respond(s_R, S_I, point + MSG1[65:])
    initiator = vector_initiator()
    initiator.build_initial_message()
    with pytest.raises(HandshakeMessageError, match="message 2: its ephemeral public key"):
        initiator.process_response(point + MSG2[65:])


def test_message_accepts_bytes_likes_and_refuses_other_types() -> None:
    bytes_like = cast(bytes, bytearray(MSG1))  # a bytes-like on purpose
    assert respond(s_R, S_I, bytes_like, ephemeral_private_key=E_R_PRIVATE).message == MSG2
    with pytest.raises(TypeError):
        respond(s_R, S_I, MSG1.hex())  # type: ignore[arg-type]


# --- key validation -----------------------------------------------------------

BAD_PUBLIC_KEYS = [
    (b"", "expected 65 bytes, got 0"),
    (S_R[:64], "expected 65 bytes, got 64"),
    (S_R + b"\x00", "expected 65 bytes, got 66"),
    (S_R[:33], "expected 65 bytes, got 33"),  # compressed: not on the handshake path
    (b"\x05" + S_R[1:], "a 65-byte point must start with 0x04"),
    (b"\x04" + bytes(64), "not a point on P-256"),
    (S_R[:64] + bytes([S_R[64] ^ 1]), "not a point on P-256"),
]
BAD_PRIVATE_KEYS = [
    (b"", "expected 32 bytes, got 0"),
    (s_I[:31], "expected 32 bytes, got 31"),
    (s_I + b"\x00", "expected 32 bytes, got 33"),
    (bytes(32), "the scalar is not in 1..n-1"),
    (N.to_bytes(32, "big"), "the scalar is not in 1..n-1"),
    ((N + 1).to_bytes(32, "big"), "the scalar is not in 1..n-1"),
    (b"\xff" * 32, "the scalar is not in 1..n-1"),
]


@pytest.mark.parametrize(("key", "message"), BAD_PUBLIC_KEYS, ids=range(len(BAD_PUBLIC_KEYS)))
def test_bad_public_keys(key: bytes, message: str) -> None:
    with pytest.raises(InvalidPublicKeyError, match=f"responder static public key: {message}"):
        HandshakeInitiator(key, s_I)
    with pytest.raises(InvalidPublicKeyError, match=f"initiator static public key: {message}"):
        respond(s_R, key, MSG1)


@pytest.mark.parametrize(("key", "message"), BAD_PRIVATE_KEYS, ids=range(len(BAD_PRIVATE_KEYS)))
def test_bad_private_keys(key: bytes, message: str) -> None:
    with pytest.raises(InvalidPrivateKeyError, match=f"initiator static private key: {message}"):
        HandshakeInitiator(S_R, key)
    with pytest.raises(InvalidPrivateKeyError, match=f"initiator ephemeral private key: {message}"):
        HandshakeInitiator(S_R, s_I, ephemeral_private_key=key)
    with pytest.raises(InvalidPrivateKeyError, match=f"responder static private key: {message}"):
        respond(key, S_I, MSG1)
    with pytest.raises(InvalidPrivateKeyError, match=f"responder ephemeral private key: {message}"):
        respond(s_R, S_I, MSG1, ephemeral_private_key=key)


def test_keys_on_other_curves_are_refused() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidPrivateKeyError, match="not a P-256 key"):
        HandshakeInitiator(S_R, other)
    with pytest.raises(InvalidPublicKeyError, match="not a P-256 key"):
        HandshakeInitiator(other.public_key(), s_I)
    with pytest.raises(InvalidPrivateKeyError, match="not a P-256 key"):
        respond(other, S_I, MSG1)


def test_the_largest_scalar_is_accepted() -> None:
    largest = (N - 1).to_bytes(32, "big")
    initiator, responder = handshake(largest, largest, largest, largest)
    assert initiator.handshake_hash == responder.handshake_hash


# --- state machine -----------------------------------------------------------


def test_process_response_before_message1() -> None:
    with pytest.raises(HandshakeStateError, match="process_response called in state 'new'"):
        vector_initiator().process_response(MSG2)


def test_message1_only_once() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    with pytest.raises(HandshakeStateError, match="build_initial_message"):
        initiator.build_initial_message()


def test_response_only_once() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    initiator.process_response(MSG2)
    with pytest.raises(HandshakeStateError, match="state 'done'"):
        initiator.process_response(MSG2)


def test_a_failed_initiator_is_spent() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    with pytest.raises(HandshakeDecryptionError):
        initiator.process_response(flip(MSG2, 80 * 8))
    with pytest.raises(HandshakeStateError, match="state 'failed'"):
        initiator.process_response(MSG2)


def test_crypter_is_built_once_per_result() -> None:
    initiator = vector_initiator()
    initiator.build_initial_message()
    result = initiator.process_response(MSG2)
    assert result.crypter is result.crypter
    result.crypter.encrypt(b"")
    assert result.crypter.write_counter == 1


# --- errors and reprs never show keys ----------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(HandshakeMessageError, HandshakeError)
    assert issubclass(HandshakeDecryptionError, HandshakeError)
    assert issubclass(HandshakeError, ChannelError)
    assert issubclass(ChannelError, HatsError)
    # Key errors are not the channel's: COSE and DICE raise them too.
    assert issubclass(InvalidPrivateKeyError, CryptoError)
    assert not issubclass(InvalidPrivateKeyError, ChannelError)
    assert issubclass(CryptoError, HatsError)
    # Calling a step out of order is our bug: never caught as a user or peer error.
    assert issubclass(HandshakeStateError, LocalProtocolError)
    assert not issubclass(HandshakeStateError, HatsError)


def test_error_messages_and_reprs_contain_no_key_material() -> None:
    texts: list[str] = []
    for call in (
        lambda: HandshakeInitiator(S_R[:64], s_I),
        lambda: HandshakeInitiator(b"\x04" + bytes(64), s_I),
        lambda: HandshakeInitiator(S_R, b"\xff" * 32),
        lambda: respond(s_R, S_I, flip(MSG1, 600)),
        lambda: respond(s_R, S_I, MSG1[:70]),
        lambda: respond(s_R, S_I, b"\x04" + bytes(64) + MSG1[65:]),
        lambda: respond(s_R, S_R, MSG1),
    ):
        with pytest.raises((ChannelError, CryptoError)) as info:
            call()
        texts.append(str(info.value))
        assert info.value.__cause__ is None
        assert "\n" not in str(info.value)
    initiator = vector_initiator()
    texts.append(repr(initiator))
    initiator.build_initial_message()
    result = initiator.process_response(MSG2)
    response = respond(s_R, S_I, MSG1, ephemeral_private_key=E_R_PRIVATE)
    state = SymmetricState()
    state.mix_key(b"secret")
    texts += [repr(result), repr(result.keys), repr(response), repr(state), repr(initiator)]
    for text in texts:
        assert_no_key_material(text)
