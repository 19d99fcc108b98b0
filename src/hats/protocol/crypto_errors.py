"""Errors of P-256 keys and ECDSA signatures, wherever they are used.

The TVS channel (:mod:`hats.protocol.handshake`, :mod:`hats.protocol.signature`),
COSE (:mod:`hats.attestation.cose`) and DICE (:mod:`hats.attestation.dice`) all
load P-256 keys through :mod:`hats.protocol.p256` and check ECDSA signatures, so
these errors are not the channel's: they are a :class:`CryptoError`, not a
:class:`~hats.protocol.channel_errors.ChannelError`.
(:mod:`hats.protocol.channel_errors` still re-exports them by name.)

The message rules are the channel's: one line, never any key material,
signature or message bytes — only lengths and the *name* of the value at
fault; raised outside ``except`` blocks (or ``from None``).
"""

from __future__ import annotations

from hats.errors import HatsError


class CryptoError(HatsError):
    """The base of every P-256 key or ECDSA signature failure."""


# --- keys --------------------------------------------------------------------


class InvalidKeyError(CryptoError):
    """A P-256 key given by the caller (configuration, evidence) is unusable."""


class InvalidPublicKeyError(InvalidKeyError):
    """A public key has the wrong length or encoding, or is not a point on P-256."""


class InvalidPrivateKeyError(InvalidKeyError):
    """A private key is not 32 bytes, is not in 1..n-1, or is not a P-256 key."""


# --- signatures --------------------------------------------------------------


class SignatureError(CryptoError):
    """An ECDSA signature over the handshake hash (or another message) is not acceptable."""


class MalformedSignatureError(SignatureError):
    """A raw signature is not 64 bytes, or ``r`` or ``s`` is not in 1..n-1."""


class SignatureMismatchError(SignatureError):
    """A well-formed signature does not verify for this key and message."""
