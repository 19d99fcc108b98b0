"""Errors of the TVS secure channel: handshake and Crypter.

Every failure of :mod:`hats.protocol.handshake` and :mod:`hats.protocol.crypter`
caused by its input (a message from the peer) is a :class:`ChannelError`, with
one subclass per kind of failure. Where the reference implementation panics on
malformed input (spec wire-protocol §8.6), we raise one of these instead. Bad
P-256 keys and signatures (:mod:`hats.protocol.p256`,
:mod:`hats.protocol.signature`) raise :mod:`hats.protocol.crypto_errors`'
:class:`CryptoError` subclasses instead (re-exported here). Calling a
handshake step out of order is our bug: :class:`HandshakeStateError`, a
:class:`~hats.errors.LocalProtocolError`, not a :class:`ChannelError`.

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

from hats.errors import HatsError, LocalProtocolError

# P-256 key and signature errors are not the channel's (COSE and DICE raise them
# too); they live in hats.protocol.crypto_errors and are re-exported here by name.
from hats.protocol.crypto_errors import CryptoError as CryptoError
from hats.protocol.crypto_errors import InvalidKeyError as InvalidKeyError
from hats.protocol.crypto_errors import InvalidPrivateKeyError as InvalidPrivateKeyError
from hats.protocol.crypto_errors import InvalidPublicKeyError as InvalidPublicKeyError
from hats.protocol.crypto_errors import MalformedSignatureError as MalformedSignatureError
from hats.protocol.crypto_errors import SignatureError as SignatureError
from hats.protocol.crypto_errors import SignatureMismatchError as SignatureMismatchError


class ChannelError(HatsError):
    """The base of every failure of the TVS secure channel."""


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


class HandshakeStateError(LocalProtocolError):
    """A handshake step was called out of order, twice, or after a failure.

    Our own code's bug, never the peer's or the user's: a
    :class:`~hats.errors.LocalProtocolError`, so no handler of
    :class:`ChannelError` (or :class:`~hats.errors.HatsError`) hides it.
    """


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
