"""The TVS handshake ("Noise KK", but not standard KK), as pure classes (spec wire-protocol §4).

The orchestrator is the **initiator** (:class:`HandshakeInitiator`), the TVS
the **responder** (:func:`respond`). Both build on :class:`SymmetricState`
and share the code that absorbs each message, so the two sides cannot drift
apart. Nothing here does I/O; ephemeral keys are random unless injected
(tests inject them to reproduce the spec's vectors).

Keys: ``s_i``/``S_i`` the initiator's static pair (the launcher's
``tvs_authentication_key``), ``s_r``/``S_r`` the responder's static pair
(a TVS key; ``S_r`` is in ``tvs_public_keys.txt``), ``e_i``/``E_i`` and
``e_r``/``E_r`` the ephemerals. Points are 65-byte uncompressed SEC1; ``DH``
is the x-coordinate of the product (:mod:`hats.protocol.p256`).

Message 1 (initiator → responder), §4.3::

    prologue = S_r || S_i
    MixHash(prologue); MixHash(prologue)          # twice
    MixHash(E_i); MixKey(E_i)                     # the ephemeral is also mixed into the key
    MixKey(DH(e_i, S_r))                          # "es"
    MixKey(SHA256(S_i || S_r))                    # "ss": a hash of public keys, not a DH
    msg1 = E_i || EncryptAndHash(b"")             # 65 + 16 = 81 bytes

Message 2 (responder → initiator), §4.4 and §4.5::

    MixHash(E_r); MixKey(E_r)
    MixKey(DH(e_r, E_i))                          # "ee"
    MixKey(DH(s_r, S_i))                          # static-static ("se" in the reference's code)
    msg2 = E_r || EncryptAndHash(b"")             # 81 bytes
    (k1, k2) = Split()                            # k1: initiator→responder, k2: responder→initiator

Both sides end with the same handshake hash ``h`` (signed by the
orchestrator, §4.7) and build a :class:`~hats.protocol.crypter.Crypter`. The
deviations from standard Noise KK (§4.8) are deliberate and must stay: the
reference TVS and orchestrator only interoperate with exactly this.

Validation, stricter than the reference only where the reference panics or
fails later anyway (so the set of accepted messages is the same):

* static keys are checked when the objects are made: scalars in 1..n-1,
  points of 65 bytes on the curve (:class:`InvalidPrivateKeyError`,
  :class:`InvalidPublicKeyError`);
* a handshake message must be exactly 81 bytes and start with a point on
  the curve (:class:`HandshakeMessageError`). The reference takes
  ``msg[0:65]`` (panicking on the initiator side if it is shorter) and
  decrypts the rest, so a shorter message fails to authenticate and a longer
  one carries a non-empty payload, which it rejects (the initiator with a
  panic, §8.6). With exactly 16 bytes after the point, the payload of an
  authenticated message is necessarily empty;
* a message that does not authenticate raises
  :class:`HandshakeDecryptionError` (tampering, or the sides disagree on a
  static key).

Errors never contain key material; the ``repr`` of every object here hides
keys and chaining state.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hats.protocol import p256
from hats.protocol.channel_errors import (
    HandshakeDecryptionError,
    HandshakeMessageError,
    HandshakeStateError,
)
from hats.protocol.crypter import Crypter
from hats.protocol.crypto_errors import InvalidPublicKeyError

PROTOCOL_NAME = b"Noise_KK_P256_AESGCM_SHA256"
"""The protocol name that initialises ``ck`` and ``h`` (27 bytes)."""

HASH_LENGTH = 32
"""Bytes in ``h``, ``ck`` and every key (SHA-256)."""

TAG_LENGTH = 16
"""Bytes in an AES-GCM tag: the whole ciphertext of an empty handshake payload."""

HANDSHAKE_MESSAGE_LENGTH = p256.PUBLIC_KEY_LENGTH + TAG_LENGTH
"""Bytes in each handshake message: an ephemeral point and the tag of an empty payload (81)."""

_MAX_HANDSHAKE_NONCE = 2**32 - 1


def _sha256(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """``HKDF2(ck, ikm)``: RFC 5869 HKDF-SHA256, salt ``ck``, empty info, 64 bytes, split in two."""
    output = HKDF(
        algorithm=hashes.SHA256(), length=2 * HASH_LENGTH, salt=chaining_key, info=b""
    ).derive(input_key_material)
    return output[:HASH_LENGTH], output[HASH_LENGTH:]


def handshake_nonce(counter: int) -> bytes:
    """The handshake nonce for ``counter``: ``BE32(n) || 00 * 8`` (§4.2; transport differs)."""
    return counter.to_bytes(4, "big") + bytes(8)


class SymmetricState:
    """The handshake's symmetric state ``(ck, h, k, n)`` (§4.2).

    * ``__init__(name)``: ``ck = h = name`` zero-padded to 32 bytes (not
      hashed), ``k = 0^32``, ``n = 0``. Names longer than 32 bytes are not
      supported (:class:`ValueError`): the spec defines only the padded case.
    * :meth:`mix_hash`: ``h = SHA256(h || data)``.
    * :meth:`mix_key`: ``(ck, k) = HKDF2(ck, ikm)``; ``n = 0``.
    * :meth:`encrypt_and_hash`: ``c = AES-GCM(k).seal(nonce(n), p, aad=h)``,
      ``n += 1``, ``MixHash(c)``. Always encrypts, even before the first
      ``MixKey`` (``k`` is then all zeros).
    * :meth:`decrypt_and_hash`: ``MixHash(c)`` and open ``c`` with the ``h``
      from before that. On failure it raises
      :class:`HandshakeDecryptionError`; the state is then spoiled and must be
      discarded (``h`` has already absorbed ``c``).
    * :meth:`split`: ``HKDF2(ck, b"")``.

    The ``repr`` hides ``ck`` and ``k``.
    """

    __slots__ = ("_ck", "_h", "_k", "_n")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        if len(protocol_name) > HASH_LENGTH:
            raise ValueError(
                f"protocol name of {len(protocol_name)} bytes is longer than {HASH_LENGTH}"
            )
        initial = protocol_name.ljust(HASH_LENGTH, b"\x00")
        self._ck = initial
        self._h = initial
        self._k = bytes(HASH_LENGTH)
        self._n = 0

    def __repr__(self) -> str:
        return f"SymmetricState(n={self._n})"

    @property
    def handshake_hash(self) -> bytes:
        """The current ``h`` (after the last message: the handshake hash of §4.7)."""
        return self._h

    def mix_hash(self, data: bytes) -> None:
        """``h = SHA256(h || data)``."""
        self._h = _sha256(self._h, data)

    def mix_key(self, input_key_material: bytes) -> None:
        """``(ck, k) = HKDF2(ck, ikm)`` and ``n = 0``."""
        self._ck, self._k = hkdf2(self._ck, input_key_material)
        self._n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Seal ``plaintext`` with ``k``, the next nonce and ``aad = h``; mix the ciphertext."""
        ciphertext = AESGCM(self._k).encrypt(self._next_nonce(), plaintext, self._h)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Mix ``ciphertext`` into ``h``; open it with ``k``, the next nonce and the old ``h``."""
        associated_data = self._h
        self.mix_hash(ciphertext)
        try:
            plaintext = AESGCM(self._k).decrypt(self._next_nonce(), ciphertext, associated_data)
        except InvalidTag:
            plaintext = None
        if plaintext is None:
            raise HandshakeDecryptionError(
                "handshake message does not authenticate (modified in transit, "
                "or the two sides disagree on a static key)"
            )
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """``(k1, k2) = HKDF2(ck, b"")``: the initiator→responder and responder→initiator keys."""
        return hkdf2(self._ck, b"")

    def _next_nonce(self) -> bytes:
        if self._n > _MAX_HANDSHAKE_NONCE:  # unreachable in §4: every seal follows a MixKey
            raise HandshakeStateError("handshake nonce counter exhausted")
        nonce = handshake_nonce(self._n)
        self._n += 1
        return nonce


class Role(enum.Enum):
    """Which side of the handshake an object belongs to."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """The two transport keys from ``Split()``; the ``repr`` hides them."""

    initiator_to_responder: bytes
    """``k1``: seals initiator → responder messages (message 3)."""
    responder_to_initiator: bytes
    """``k2``: seals responder → initiator messages (message 4)."""

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"


@dataclass(frozen=True, repr=False)
class HandshakeResult:
    """What a completed handshake gives one side.

    ``crypter`` is built once, with the keys in the right directions for
    ``role``; use only this one (a second Crypter on the same keys would reuse
    nonces).
    """

    role: Role
    handshake_hash: bytes
    """The final ``h`` (32 bytes): equal on both sides; the orchestrator signs it (§4.7)."""
    keys: SessionKeys
    crypter: Crypter = field(init=False)

    def __post_init__(self) -> None:
        k1, k2 = self.keys.initiator_to_responder, self.keys.responder_to_initiator
        if self.role is Role.INITIATOR:
            crypter = Crypter(read_key=k2, write_key=k1)
        else:
            crypter = Crypter(read_key=k1, write_key=k2)
        object.__setattr__(self, "crypter", crypter)

    def __repr__(self) -> str:
        return f"HandshakeResult(role={self.role.value}, crypter={self.crypter!r})"


@dataclass(frozen=True, repr=False)
class HandshakeResponse:
    """The responder's output: message 2 (to send back) and its side's result."""

    message: bytes
    """Message 2: ``E_r || tag``, 81 bytes."""
    result: HandshakeResult

    def __repr__(self) -> str:
        return f"HandshakeResponse(message=<{len(self.message)} bytes>, result={self.result!r})"


def _check_message(message: bytes, number: int) -> tuple[bytes, bytes]:
    """Split a handshake message into (ephemeral point, ciphertext), checking its length."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"handshake message {number}: expected bytes, got {type(message).__name__}")
    data = bytes(message)
    if len(data) != HANDSHAKE_MESSAGE_LENGTH:
        raise HandshakeMessageError(
            f"handshake message {number} is {len(data)} bytes, expected {HANDSHAKE_MESSAGE_LENGTH}"
        )
    return data[: p256.PUBLIC_KEY_LENGTH], data[p256.PUBLIC_KEY_LENGTH :]


def _load_ephemeral(point: bytes, number: int) -> ec.EllipticCurvePublicKey:
    """The peer's ephemeral public key from message ``number``."""
    try:
        return p256.load_public_key(point, "ephemeral public key")
    except InvalidPublicKeyError:
        pass
    raise HandshakeMessageError(
        f"handshake message {number}: its ephemeral public key is not an uncompressed P-256 point"
    )


def _absorb_message1(
    state: SymmetricState,
    responder_static: bytes,
    initiator_static: bytes,
    initiator_ephemeral: bytes,
    es: bytes,
) -> None:
    """Everything of §4.3/§4.4 before the empty payload, given ``es`` from either side."""
    prologue = responder_static + initiator_static
    state.mix_hash(prologue)
    state.mix_hash(prologue)
    state.mix_hash(initiator_ephemeral)
    state.mix_key(initiator_ephemeral)
    state.mix_key(es)
    state.mix_key(_sha256(initiator_static, responder_static))


def _absorb_message2(
    state: SymmetricState, responder_ephemeral: bytes, ee: bytes, static_static: bytes
) -> None:
    """Everything of §4.4/§4.5 for message 2 before the empty payload."""
    state.mix_hash(responder_ephemeral)
    state.mix_key(responder_ephemeral)
    state.mix_key(ee)
    state.mix_key(static_static)


def _result(state: SymmetricState, role: Role) -> HandshakeResult:
    k1, k2 = state.split()
    return HandshakeResult(
        role=role,
        handshake_hash=state.handshake_hash,
        keys=SessionKeys(initiator_to_responder=k1, responder_to_initiator=k2),
    )


class _InitiatorStep(enum.Enum):
    NEW = "new"
    SENT = "message 1 built"
    DONE = "done"
    FAILED = "failed"


class HandshakeInitiator:
    """The orchestrator's side: build message 1, then process message 2 (§4.3, §4.5).

    Usage::

        initiator = HandshakeInitiator(tvs_public_key, tvs_authentication_key)
        msg1 = initiator.build_initial_message()      # send, with S_r and S_i
        result = initiator.process_response(msg2)     # result.crypter, result.handshake_hash

    The keys are checked here (:class:`InvalidPublicKeyError`,
    :class:`InvalidPrivateKeyError`). ``ephemeral_private_key`` is for tests
    only; by default a fresh random ephemeral is made for every initiator.
    An initiator serves one handshake: calling a step out of order, twice, or
    after a failed :meth:`process_response` raises
    :class:`HandshakeStateError` (a failed state is spoiled).
    """

    def __init__(
        self,
        responder_static_public_key: p256.PublicKey,
        initiator_static_private_key: p256.PrivateKey,
        *,
        ephemeral_private_key: p256.PrivateKey | None = None,
    ) -> None:
        responder_static = p256.load_public_key(
            responder_static_public_key, "responder static public key"
        )
        self._s_i = p256.load_private_key(
            initiator_static_private_key, "initiator static private key"
        )
        self._e_i = (
            p256.generate_private_key()
            if ephemeral_private_key is None
            else p256.load_private_key(ephemeral_private_key, "initiator ephemeral private key")
        )
        self._responder_static = responder_static
        self._responder_static_bytes = p256.public_key_bytes(responder_static)
        self._initiator_static_bytes = p256.public_key_bytes(self._s_i)
        self._state = SymmetricState()
        self._step = _InitiatorStep.NEW

    def __repr__(self) -> str:
        return f"HandshakeInitiator(step={self._step.value!r})"

    @property
    def initiator_static_public_key(self) -> bytes:
        """``S_i``, 65 bytes: the ``client_public_key`` of ``InitSessionRequest``."""
        return self._initiator_static_bytes

    @property
    def responder_static_public_key(self) -> bytes:
        """``S_r``, 65 bytes: the ``tvs_public_key`` of ``InitSessionRequest``."""
        return self._responder_static_bytes

    def build_initial_message(self) -> bytes:
        """Message 1: ``E_i || EncryptAndHash(b"")``, 81 bytes (§4.3). Only once."""
        self._require(_InitiatorStep.NEW, "build_initial_message")
        e_i_public = p256.public_key_bytes(self._e_i)
        _absorb_message1(
            self._state,
            self._responder_static_bytes,
            self._initiator_static_bytes,
            e_i_public,
            p256.dh(self._e_i, self._responder_static),
        )
        message = e_i_public + self._state.encrypt_and_hash(b"")
        self._step = _InitiatorStep.SENT
        return message

    def process_response(self, message: bytes) -> HandshakeResult:
        """Process message 2 (§4.5) and return this side's :class:`HandshakeResult`.

        Raises :class:`HandshakeMessageError` if ``message`` is not 81 bytes
        starting with a point on P-256 and :class:`HandshakeDecryptionError`
        if it does not authenticate; after either, this initiator is spent.
        """
        self._require(_InitiatorStep.SENT, "process_response")
        self._step = _InitiatorStep.FAILED
        e_r_bytes, ciphertext = _check_message(message, 2)
        e_r = _load_ephemeral(e_r_bytes, 2)
        _absorb_message2(
            self._state,
            e_r_bytes,
            p256.dh(self._e_i, e_r),
            p256.dh(self._s_i, self._responder_static),
        )
        self._state.decrypt_and_hash(ciphertext)  # 16 bytes: the payload is empty
        self._step = _InitiatorStep.DONE
        return _result(self._state, Role.INITIATOR)

    def _require(self, step: _InitiatorStep, method: str) -> None:
        if self._step is not step:
            raise HandshakeStateError(
                f"handshake initiator: {method} called in state {self._step.value!r}"
            )


def respond(
    responder_static_private_key: p256.PrivateKey,
    initiator_static_public_key: p256.PublicKey,
    message: bytes,
    *,
    ephemeral_private_key: p256.PrivateKey | None = None,
) -> HandshakeResponse:
    """The TVS's side (§4.4): process message 1 and build message 2.

    ``responder_static_private_key`` is the TVS key selected by the request's
    ``tvs_public_key`` (the caller checks that selection, spec §7.1 step 2:
    ``S_r`` in the prologue is this key's public point, which equals the
    request's bytes); ``initiator_static_public_key`` is the request's
    ``client_public_key``, already known to be registered (§7.1 step 3).
    ``ephemeral_private_key`` is for tests only.

    Raises :class:`InvalidPrivateKeyError`/:class:`InvalidPublicKeyError` for
    bad static keys, :class:`HandshakeMessageError` if ``message`` is not 81
    bytes starting with a point on P-256, and
    :class:`HandshakeDecryptionError` if it does not authenticate (the TVS
    answers all of these with ``Invalid handshake.``).
    """
    s_r = p256.load_private_key(responder_static_private_key, "responder static private key")
    initiator_static = p256.load_public_key(
        initiator_static_public_key, "initiator static public key"
    )
    e_r = (
        p256.generate_private_key()
        if ephemeral_private_key is None
        else p256.load_private_key(ephemeral_private_key, "responder ephemeral private key")
    )
    e_i_bytes, ciphertext = _check_message(message, 1)
    e_i = _load_ephemeral(e_i_bytes, 1)
    s_r_public = p256.public_key_bytes(s_r)
    s_i_public = p256.public_key_bytes(initiator_static)

    state = SymmetricState()
    _absorb_message1(state, s_r_public, s_i_public, e_i_bytes, p256.dh(s_r, e_i))
    state.decrypt_and_hash(ciphertext)  # 16 bytes: the payload is empty

    e_r_bytes = p256.public_key_bytes(e_r)
    _absorb_message2(state, e_r_bytes, p256.dh(e_r, e_i), p256.dh(s_r, initiator_static))
    response = e_r_bytes + state.encrypt_and_hash(b"")
    return HandshakeResponse(message=response, result=_result(state, Role.RESPONDER))
