"""Secret sharing: the vocabulary shared by the XOR and Shamir splitters.

A secret travels from the TVSes to the orchestrator in shares: each TVS holds
one share of every secret and sends it as the UTF-8 bytes of a JSON document
in ``Secret.private_key`` (spec wire-protocol §5). The orchestrator recovers the
secret from the shares of all TVSes. Two splitters exist:

* :class:`~hats.protocol.xor.XorSharing` (n-of-n): the XOR of all shares;
* :class:`~hats.protocol.shamir.ShamirSharing` (t-of-n): Shamir's scheme over
  the 512-bit prime field, the secret prefixed with the label ``"hats"``.

Both satisfy :class:`SecretSplitter`. The share formats live in
:mod:`hats.protocol.share_format`.

Every failure is a :class:`SecretSharingError`; there is one subclass per kind
of failure. Messages name the share at fault by its 1-based position in the
list given to ``recover`` and never contain a secret, a share or any part of
one (no values, no JSON text). Exceptions are raised outside ``except`` blocks
so that no parser exception (whose attributes hold the share text) is chained
to them.

Randomness comes from :func:`secrets.token_bytes` unless a :data:`RandomBytes`
callable is injected (tests use a seeded one to get deterministic shares).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Protocol

from hats.errors import HatsError

RandomBytes = Callable[[int], bytes]
"""A source of randomness: called with ``n``, returns ``n`` random bytes."""


def random_bytes(rng: RandomBytes | None, size: int) -> bytes:
    """``size`` bytes from ``rng`` (default :func:`secrets.token_bytes`), length checked.

    A source that returns the wrong number of bytes is a programming error and
    raises :class:`ValueError`.
    """
    data = (rng or secrets.token_bytes)(size)
    if len(data) != size:
        raise ValueError(f"random source returned {len(data)} bytes, expected {size}")
    return data


class SecretSplitter(Protocol):
    """What the orchestrator needs from a splitter (XOR or Shamir)."""

    def split(self, secret: bytes) -> list[bytes]:
        """Split ``secret`` into share documents (UTF-8 JSON bytes), one per TVS."""
        ...

    def recover(self, shares: Sequence[bytes]) -> bytes:
        """Recover the secret from share documents, or raise a :class:`SecretSharingError`."""
        ...


class SecretSharingError(HatsError):
    """Splitting a secret or recovering it from shares failed."""


class SharingParametersError(SecretSharingError):
    """The splitter's parameters (number of shares, threshold) are not allowed."""


class SecretTooLongError(SecretSharingError):
    """The secret does not fit the Shamir field (more than 60 bytes)."""


class EmptySecretError(SecretSharingError):
    """Shamir sharing cannot carry an empty secret (the reference cannot recover one)."""


class ShareFormatError(SecretSharingError):
    """A share document is not a well-formed share (base of the three format errors)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"share {position}: {message}")
        self.position = position
        """1-based position of the share in the list given to ``recover``, if known."""


class ShareNotUtf8Error(ShareFormatError):
    """A share document is not valid UTF-8."""


class ShareNotJsonError(ShareFormatError):
    """A share document is valid UTF-8 but not a JSON document."""


class MalformedShareError(ShareFormatError):
    """A share document is JSON but not a share of the expected kind.

    Not an object; a missing, duplicated or unknown field; a value that is not
    an array of integers 0-255 (or, for Shamir, not the minimal big-endian
    encoding of a field element); an index that is not an integer in
    ``[1, P)``.
    """


class ShareCountError(SecretSharingError):
    """Too few shares for Shamir recovery, or not exactly ``n`` shares for XOR recovery."""


class ShareLengthMismatchError(SecretSharingError):
    """XOR shares of different lengths: they cannot belong to one secret."""


class DuplicateShareIndexError(SecretSharingError):
    """Two Shamir shares carry the same index."""


class InconsistentSharesError(SecretSharingError):
    """The Shamir shares beyond the threshold do not lie on the polynomial of the others.

    At least one share is corrupted or belongs to another secret.
    """


class LabelMismatchError(SecretSharingError):
    """The value recovered from Shamir shares does not start with the ``"hats"`` label.

    The shares are corrupted, belong to different secrets, or are fewer
    distinct points than the polynomial's degree needs.
    """
