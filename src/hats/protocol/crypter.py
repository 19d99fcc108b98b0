"""The post-handshake ``Crypter``: transport messages 3 and 4 (spec wire-protocol §4.6).

After the handshake each side holds two 32-byte AES-256-GCM keys, one per
direction (``k1`` initiator→responder, ``k2`` responder→initiator), and one
message counter per direction, both starting at 0. The rules:

* **Nonce** (12 bytes) = ``00 * 8 || BE32(counter)``: the counter is in the
  *last* four bytes — the handshake's nonces (§4.2) put it in the first four.
  Taking a nonce increments that direction's counter, whether or not the
  message then authenticates: a failed ``decrypt`` still uses up its counter
  value (the session is over anyway; see below).
* **Counter limit**: a counter greater than ``2**24`` when a message is to be
  sealed or opened raises :class:`CrypterCounterExhaustedError`, so each
  direction carries at most ``2**24 + 1`` messages (counters 0..2**24). The
  counter does not move on this error.
* **Plaintext limit**: ``encrypt`` of more than ``2**28`` bytes raises
  :class:`PlaintextTooLongError` before any counter moves. ``decrypt`` has no
  limit of its own, like the reference.
* **Padding**: a plaintext of ``m`` bytes is padded to
  ``L = roundup(m + 1, 32)`` bytes: ``pt || 00 * (L - m - 1) || byte(L - m - 1)``;
  the last byte says how many padding bytes precede it (0..31). The output
  is ``AES-256-GCM(write_key).seal(nonce, padded, aad = b"")``, i.e. the
  ciphertext followed by the 16-byte tag. An empty plaintext gives 48 bytes.
* **Unpadding**: after opening, ``p`` must be non-empty and ``p[-1] < len(p)``
  (else :class:`CrypterPaddingError`); the plaintext is
  ``p[0 : len(p) - p[-1] - 1]``. As in the reference, the padding bytes
  themselves are *not* checked to be zero, and the length of ``p`` need not
  be a multiple of 32 — so we accept exactly what the reference accepts.

In the TVS protocol each session uses counter 0 exactly once in each
direction (message 3: initiator write #0; message 4: responder write #0).
Because counters are implicit, a replayed, dropped or reordered message fails
to authenticate (:class:`CrypterDecryptionError`).

A :class:`Crypter` is a pure, stateful object: it never does I/O and its
``repr`` shows the counters only, never the keys.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hats.protocol.channel_errors import (
    CrypterCounterExhaustedError,
    CrypterDecryptionError,
    CrypterPaddingError,
    PlaintextTooLongError,
)

KEY_LENGTH = 32
"""Bytes in a direction key (AES-256)."""

TAG_LENGTH = 16
"""Bytes in the AES-GCM tag appended to every ciphertext."""

NONCE_LENGTH = 12
"""Bytes in an AES-GCM nonce."""

PADDING_BLOCK = 32
"""Padded plaintexts are a multiple of this many bytes."""

MAX_PLAINTEXT_LENGTH = 2**28
"""The longest plaintext ``encrypt`` accepts, in bytes (256 MiB)."""

MAX_COUNTER = 2**24
"""The last usable counter value: a counter greater than this raises."""


def transport_nonce(counter: int) -> bytes:
    """The transport nonce for ``counter``: ``00 * 8 || BE32(counter)`` (§4.6)."""
    return bytes(8) + counter.to_bytes(4, "big")


def pad(plaintext: bytes) -> bytes:
    """``plaintext`` padded to a multiple of 32 bytes, the last byte giving the pad length."""
    pad_length = -(len(plaintext) + 1) % PADDING_BLOCK
    return b"".join((plaintext, bytes(pad_length), bytes((pad_length,))))


def unpad(padded: bytes) -> bytes:
    """The plaintext inside ``padded`` (the padding bytes are not checked, as in the reference).

    Raises :class:`CrypterPaddingError` if ``padded`` is empty or its last byte
    is not less than its length.
    """
    if not padded:
        raise CrypterPaddingError("transport message: the decrypted payload is empty (no padding)")
    pad_length = padded[-1]
    if pad_length >= len(padded):
        raise CrypterPaddingError(
            f"transport message: padding length {pad_length} does not fit in "
            f"{len(padded)} decrypted bytes"
        )
    return padded[: len(padded) - pad_length - 1]


def _check_key(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{what}: expected bytes, got {type(key).__name__}")
    if len(key) != KEY_LENGTH:
        raise ValueError(f"{what}: expected {KEY_LENGTH} bytes, got {len(key)}")
    return bytes(key)


class Crypter:
    """Seals and opens transport messages of one session (§4.6).

    ``read_key`` opens what the peer sends, ``write_key`` seals what we send.
    The initiator uses ``read_key = k2, write_key = k1``; the responder
    ``read_key = k1, write_key = k2`` (see
    :class:`hats.protocol.handshake.HandshakeResult`, which builds the right
    one). Keys of the wrong size are a programming error (:class:`ValueError`).
    """

    __slots__ = ("_read", "_read_counter", "_write", "_write_counter")

    def __init__(self, read_key: bytes, write_key: bytes) -> None:
        self._read = AESGCM(_check_key(read_key, "read key"))
        self._write = AESGCM(_check_key(write_key, "write key"))
        self._read_counter = 0
        self._write_counter = 0

    def __repr__(self) -> str:
        return f"Crypter(read_counter={self._read_counter}, write_counter={self._write_counter})"

    @property
    def read_counter(self) -> int:
        """The counter of the next message ``decrypt`` will open."""
        return self._read_counter

    @property
    def write_counter(self) -> int:
        """The counter of the next message ``encrypt`` will seal."""
        return self._write_counter

    def encrypt(self, plaintext: bytes) -> bytes:
        """Pad and seal ``plaintext`` with the write key and the next write counter.

        Returns ``len(pad(plaintext)) + 16`` bytes. Raises
        :class:`PlaintextTooLongError` for more than ``2**28`` bytes and
        :class:`CrypterCounterExhaustedError` past the counter limit; neither
        moves the counter.
        """
        if len(plaintext) > MAX_PLAINTEXT_LENGTH:
            raise PlaintextTooLongError(
                f"transport message: plaintext of {len(plaintext)} bytes exceeds the limit "
                f"of {MAX_PLAINTEXT_LENGTH}"
            )
        nonce = self._next_nonce("write")
        return self._write.encrypt(nonce, pad(plaintext), b"")

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Open ``ciphertext`` with the read key and the next read counter, and unpad it.

        Raises :class:`CrypterDecryptionError` if it does not authenticate (the
        read counter is used up all the same), :class:`CrypterPaddingError` if
        the authenticated payload has impossible padding, and
        :class:`CrypterCounterExhaustedError` past the counter limit.
        """
        nonce = self._next_nonce("read")
        try:
            padded = self._read.decrypt(nonce, ciphertext, b"")
        except InvalidTag:
            padded = None
        if padded is None:
            raise CrypterDecryptionError(
                f"transport message #{self._read_counter - 1} ({len(ciphertext)} bytes) "
                "does not authenticate"
            )
        return unpad(padded)

    def _next_nonce(self, direction: str) -> bytes:
        counter = self._write_counter if direction == "write" else self._read_counter
        if counter > MAX_COUNTER:
            raise CrypterCounterExhaustedError(
                f"transport {direction} counter has passed its limit of {MAX_COUNTER}; "
                "start a new session"
            )
        if direction == "write":
            self._write_counter = counter + 1
        else:
            self._read_counter = counter + 1
        return transport_nonce(counter)
