"""Errors of the TVS secure channel: keys, handshake, Crypter and signatures.

Every failure of :mod:`hats.protocol.p256`, :mod:`hats.protocol.handshake`,
:mod:`hats.protocol.crypter` and :mod:`hats.protocol.signature` caused by its
input (a key from the configuration, a message from the peer) is a
:class:`ChannelError`, with one subclass per kind of failure. Where the
reference implementation panics on malformed input (spec wire-protocol §8.6),
we raise one of these instead.

Rules for messages:

* they never contain key material, plaintext, ciphertext or any part of one:
  only lengths, counters and the *name* of the value at fault (for example
  "responder static public key");
* they are one line;
* exceptions are raised outside ``except`` blocks (or ``from None``) so that
  no library exception holding secret values is chained to them.

:class:`ValueError` and :class:`TypeError` are not used for input problems:
they mean a bug in the caller, for instance a session key or handshake hash
of the wrong size, which only our own code produces.
"""

from __future__ import annotations

from hats.errors import HatsError


class ChannelError(HatsError):
    """The base of every failure of the TVS secure channel."""


# --- keys --------------------------------------------------------------------


class InvalidKeyError(ChannelError):
    """A P-256 key given by the caller (configuration) is unusable."""


class InvalidPublicKeyError(InvalidKeyError):
    """A public key has the wrong length or encoding, or is not a point on P-256."""


class InvalidPrivateKeyError(InvalidKeyError):
    """A private key is not 32 bytes, is not in 1..n-1, or is not a P-256 key."""


# --- handshake ---------------------------------------------------------------


class HandshakeError(ChannelError):
    """The handshake failed."""


class HandshakeMessageError(HandshakeError):
    """A handshake message is malformed: wrong length, or its ephemeral key is not a point."""


class HandshakeDecryptionError(HandshakeError):
    """A handshake message does not authenticate.

    Either it was modified in transit, or the two sides do not agree on the
    static keys (the prologue, the ``es``/``ss`` terms or ``DH(s_r, S_i)``).
    """


class HandshakeStateError(HandshakeError):
    """A handshake step was called out of order, twice, or after a failure."""


# --- Crypter -----------------------------------------------------------------


class CrypterError(ChannelError):
    """A transport message (after the handshake) could not be sealed or opened."""


class CrypterDecryptionError(CrypterError):
    """A transport message does not authenticate (modified, replayed, reordered or wrong key)."""


class CrypterPaddingError(CrypterError):
    """An authenticated transport message has impossible padding (empty, or pad length too big)."""


class CrypterCounterExhaustedError(CrypterError):
    """A direction's message counter has passed its limit (2**24): the session must end."""


class PlaintextTooLongError(CrypterError):
    """A plaintext is longer than the Crypter's limit (2**28 bytes)."""


# --- signatures --------------------------------------------------------------


class SignatureError(ChannelError):
    """An ECDSA signature over the handshake hash (or another message) is not acceptable."""


class MalformedSignatureError(SignatureError):
    """A raw signature is not 64 bytes, or ``r`` or ``s`` is not in 1..n-1."""


class SignatureMismatchError(SignatureError):
    """A well-formed signature does not verify for this key and message."""
